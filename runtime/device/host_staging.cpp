#include "runtime/device/host_staging.h"

#include <ATen/ATen.h>

namespace dtrain::runtime {

bool needs_host_staging(const comm::Communicator& comm, const at::Tensor& tensor) {
  return tensor.is_cuda() && comm.backend() == comm::Backend::kMpi;
}

at::Tensor staging_buffer(const at::Tensor& tensor, c10::ScalarType dtype) {
  return at::empty(tensor.sizes(), at::TensorOptions().dtype(dtype).device(at::kCPU).pinned_memory(true));
}

void broadcast_in_place(comm::Communicator& comm, const at::Tensor& tensor, int root) {
  if (!needs_host_staging(comm, tensor)) {
    comm.broadcast(tensor, root)->wait();
    return;
  }
  at::Tensor host = staging_buffer(tensor, tensor.scalar_type());
  host.copy_(tensor);
  comm.broadcast(host, root)->wait();
  tensor.copy_(host);
}

}  // namespace dtrain::runtime
