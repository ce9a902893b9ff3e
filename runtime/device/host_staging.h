#pragma once
// Note [Host staging]
// --backend mpi --device cuda: the MPI communicator moves host memory only (comm/mpi_communicator.h), so GPU tensors
// cross it through a host copy: the gradient buckets' wire tensor (runtime/data_parallel/reducer.cpp), the pipeline's
// activations and gradients (runtime/pipeline/pipeline_engine.cpp) and the start-up broadcasts. The copies are
// synchronous on the compute stream (a device-to-host copy waits for the kernels that produced the data, a
// host-to-device copy is queued before the kernels that read it), and the host side is pinned memory, so they run at
// the bus's speed. This is what lets several ranks share one GPU (NCCL refuses that) and works with an Open MPI that
// is not CUDA-aware, at the price of the copies; NCCL moves device memory itself and needs none of it.

#include <ATen/core/Tensor.h>

#include "comm/communicator.h"

namespace dtrain::runtime {

// True when `tensor` is on a GPU but `comm` moves host memory.
bool needs_host_staging(const comm::Communicator& comm, const at::Tensor& tensor);

// A pinned host tensor of `tensor`'s shape, in `dtype`: where a staged tensor travels.
at::Tensor staging_buffer(const at::Tensor& tensor, c10::ScalarType dtype);

// comm.broadcast(tensor, root), through a host copy when needs_host_staging. Blocks until `tensor` holds root's values.
void broadcast_in_place(comm::Communicator& comm, const at::Tensor& tensor, int root);

// `whole` holds size() equal slices; each rank's own slice is sent to every rank, in place, through a host copy when
// needs_host_staging. Blocks until `whole` holds every rank's slice.
void allgather_in_place(comm::Communicator& comm, const at::Tensor& whole);

}  // namespace dtrain::runtime
