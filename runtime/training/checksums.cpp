#include "runtime/training/checksums.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <xxhash.h>

namespace dtrain::runtime {

namespace {

std::string checksum_text(XXH64_hash_t hash) {
  return fmt::format("{:016x}", static_cast<unsigned long long>(hash));
}

}  // namespace

std::string checksum_of(const at::Tensor& tensor) {
  const at::Tensor bytes = tensor.detach().cpu().contiguous();
  return checksum_text(XXH3_64bits(bytes.data_ptr(), static_cast<std::size_t>(bytes.nbytes())));
}

std::string checksum_of(const std::string& bytes) {
  return checksum_text(XXH3_64bits(bytes.data(), bytes.size()));
}

}  // namespace dtrain::runtime
