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

void allgather_in_place(comm::Communicator& comm, const at::Tensor& whole) {
  const std::int64_t slice = whole.numel() / comm.size();
  const bool staged = needs_host_staging(comm, whole);
  const at::Tensor wire = staged ? staging_buffer(whole, whole.scalar_type()) : whole;
  const at::Tensor own = wire.narrow(0, comm.rank() * slice, slice);
  if (staged) own.copy_(whole.narrow(0, comm.rank() * slice, slice));
  comm.allgather(wire, own)->wait();
  if (staged) whole.copy_(wire);
}

}  // namespace dtrain::runtime
