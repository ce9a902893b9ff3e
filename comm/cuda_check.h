#pragma once
// DTRAIN_CUDA_CHECK and DTRAIN_NCCL_CHECK: like DTRAIN_MPI_CHECK (comm/mpi_check.h), they throw CommError with the
// caller's context, the failing function's name and the library's own error text. Only built with DTRAIN_WITH_NCCL.

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

namespace dtrain::comm {

[[noreturn]] void throw_cuda_error(cudaError_t code, const char* call, const std::string& context);
[[noreturn]] void throw_nccl_error(ncclResult_t code, const char* call, const std::string& context);

}  // namespace dtrain::comm

#define DTRAIN_CUDA_CHECK(call, context)                                   \
  do {                                                                     \
    const cudaError_t dtrain_cuda_rc_ = (call);                            \
    if (dtrain_cuda_rc_ != cudaSuccess) {                                  \
      ::dtrain::comm::throw_cuda_error(dtrain_cuda_rc_, #call, (context)); \
    }                                                                      \
  } while (0)

#define DTRAIN_NCCL_CHECK(call, context)                                   \
  do {                                                                     \
    const ncclResult_t dtrain_nccl_rc_ = (call);                           \
    if (dtrain_nccl_rc_ != ncclSuccess) {                                  \
      ::dtrain::comm::throw_nccl_error(dtrain_nccl_rc_, #call, (context)); \
    }                                                                      \
  } while (0)
