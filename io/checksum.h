#pragma once

#include <cstddef>
#include <string>

namespace dtrain::io {

// CRC-32 (zlib's) of `size` bytes, as 8 lowercase hex digits: the checksum the manifest keeps per dataset and shard.
std::string crc32_hex(const void* data, std::size_t size);

}  // namespace dtrain::io
