#include "io/idx_file.h"

#include <fmt/format.h>
#include <zlib.h>

#include <memory>
#include <numeric>

#include "io/data_error.h"

namespace dtrain::io {

IdxFile read_idx(const std::string& path) {
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  if (!file) throw DataError(fmt::format("{}: cannot open", path));
  auto read_exactly = [&](void* out, std::size_t size, const char* what) {
    std::size_t done = 0;
    while (done < size) {
      const int n = gzread(file.get(), static_cast<char*>(out) + done,
                           static_cast<unsigned>(std::min<std::size_t>(size - done, 1u << 30)));
      if (n <= 0)
        throw DataError(fmt::format("{}: truncated while reading {} ({} of {} bytes)", path, what, done, size));
      done += static_cast<std::size_t>(n);
    }
  };
  unsigned char magic[4];
  read_exactly(magic, 4, "the magic number");
  if (magic[0] != 0 || magic[1] != 0) throw DataError(fmt::format("{}: not an IDX file (bad magic number)", path));
  if (magic[2] != 0x08) {
    throw DataError(fmt::format("{}: element type 0x{:02x} is not unsigned byte (0x08)", path, magic[2]));
  }
  IdxFile idx;
  for (int d = 0; d < magic[3]; ++d) {
    unsigned char be[4];
    read_exactly(be, 4, "the dimensions");
    idx.dims.push_back((std::int64_t{be[0]} << 24) | (be[1] << 16) | (be[2] << 8) | be[3]);
  }
  if (idx.dims.empty()) throw DataError(fmt::format("{}: has no dimensions", path));
  const std::int64_t count =
      std::accumulate(idx.dims.begin(), idx.dims.end(), std::int64_t{1}, std::multiplies<std::int64_t>());
  idx.data.resize(static_cast<std::size_t>(count));
  read_exactly(idx.data.data(), idx.data.size(), "the elements");
  return idx;
}

}  // namespace dtrain::io
