// current_stream (comm/nccl_communicator.h) in a CUDA build of LibTorch: tensors are produced and consumed on
// LibTorch's current stream of the calling thread (set with c10::cuda::CUDAStreamGuard), so NCCL operations order
// against that stream, as ProcessGroupNCCL does.

#include <c10/cuda/CUDAStream.h>

#include "comm/nccl_communicator.h"

namespace dtrain::comm {

cudaStream_t current_stream(int device) {
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
}

}  // namespace dtrain::comm
