#pragma once
// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed: a magic number giving the element type and
// the number of dimensions, big-endian dimension sizes, then the elements.

#include <cstdint>
#include <string>
#include <vector>

namespace dtrain::io {

struct IdxFile {
  std::vector<std::int64_t> dims;   // dims[0] is the number of samples
  std::vector<unsigned char> data;  // unsigned bytes (the only element type Fashion-MNIST uses)
};

// Throws DataError naming the file: unreadable, not IDX, not unsigned-byte elements, or shorter than its header says.
IdxFile read_idx(const std::string& path);

}  // namespace dtrain::io
