// current_stream (comm/nccl_communicator.h) where LibTorch has no CUDA: CUDA work issued without a stream (kernels,
// cudaMemcpy) goes to the legacy default stream, so that is what NCCL operations order against.

#include "comm/nccl_communicator.h"

namespace dtrain::comm {

cudaStream_t current_stream(int /*device*/) {
  return cudaStreamLegacy;
}

}  // namespace dtrain::comm
