#include "io/checksum.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>

namespace dtrain::io {

std::string crc32_hex(const void* data, std::size_t size) {
  const auto* bytes = static_cast<const Bytef*>(data);
  uLong crc = crc32(0L, Z_NULL, 0);
  for (std::size_t done = 0; done < size;) {  // zlib takes uInt lengths
    const auto n = static_cast<uInt>(std::min<std::size_t>(size - done, std::size_t{1} << 30));
    crc = crc32(crc, bytes + done, n);
    done += n;
  }
  return fmt::format("{:08x}", crc);
}

}  // namespace dtrain::io
