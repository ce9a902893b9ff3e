#pragma once
// Checksums of what a checkpoint holds (Note [Verified checkpoints], runtime/training/checkpoint.h): XXH3-64 from
// xxHash, as 16 hex digits. A tensor's checksum covers its bytes in row-major order, wherever it lives.

#include <ATen/core/Tensor.h>

#include <string>

namespace dtrain::runtime {

std::string checksum_of(const at::Tensor& tensor);
std::string checksum_of(const std::string& bytes);

}  // namespace dtrain::runtime
