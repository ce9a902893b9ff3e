#include "comm/cuda_check.h"

#include <fmt/format.h>

#include <string_view>

#include "comm/error.h"

namespace dtrain::comm {

namespace {

std::string_view function_name(const char* call) {
  std::string_view name(call);
  return name.substr(0, name.find('('));
}

}  // namespace

void throw_cuda_error(cudaError_t code, const char* call, const std::string& context) {
  throw CommError(fmt::format("{}: {} failed: {} ({})", context, function_name(call), cudaGetErrorString(code),
                              cudaGetErrorName(code)));
}

void throw_nccl_error(ncclResult_t code, const char* call, const std::string& context) {
  // ncclGetErrorString names only the kind of error; ncclGetLastError has NCCL's account of this one (which peer,
  // which resource).
  const char* last = ncclGetLastError(nullptr);
  const std::string detail = last != nullptr && *last != '\0' ? fmt::format(": {}", last) : std::string();
  throw CommError(fmt::format("{}: {} failed: {}{} (NCCL {}.{}.{}; set NCCL_DEBUG=WARN for NCCL's own account)",
                              context, function_name(call), ncclGetErrorString(code), detail, NCCL_MAJOR, NCCL_MINOR,
                              NCCL_PATCH));
}

}  // namespace dtrain::comm
