#pragma once
// The NCCL backend: collectives and point-to-point on raw CUDA device pointers (Buffer with DeviceKind::kCuda), so it
// needs the CUDA runtime and NCCL but not a CUDA build of LibTorch.
//
// Bootstrap (over MPI): every rank takes device = its local rank modulo the devices it can see (so both "all GPUs
// visible to every task" and "one GPU per task" work); the ranks of a node compare their GPUs' UUIDs, so two ranks on
// one GPU get a clear error instead of NCCL's "Duplicate GPU detected"; all ranks agree that every rank passed these
// checks before rank 0's ncclUniqueId is broadcast (a rank that failed never leaves the others in MPI_Bcast). Init and
// split use NCCL's non-blocking mode and are aborted at the communicator's timeout instead of blocking forever.
//
// Streams: each operation orders itself after the work already queued on the issuing thread's current stream
// (current_stream below), runs on the communicator's own stream and records an end event there. Work::wait() makes
// the waiting thread's current stream wait on that event and returns without blocking the host; the communicator's
// monitor thread aborts it (ncclCommAbort) if an operation waited for has not finished by its deadline, so no stream
// waits forever on a peer that is gone. Readers on the host use wait_on_host. Buffers (Buffer::keepalive) are held
// until the GPU has finished the operation, even if its Work is dropped.
//
// NCCL has no tags: sends and receives between a pair of ranks match in issue order; tags are still range-checked.
// A send and a receive between the same two ranks in opposite directions must not both be large and unmatched.

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "comm/communicator.h"

namespace dtrain::comm {

// The stream the calling thread's CUDA work goes to on `device`: LibTorch's current CUDA stream where LibTorch has
// CUDA (comm/current_stream_torch.cpp), the legacy default stream otherwise (comm/current_stream_cuda.cpp).
cudaStream_t current_stream(int device);

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap` (duplicated for the cross-rank call checks). `local_rank` is this rank's index among
  // the ranks of its node (Topology::local_rank); the device is local_rank modulo the visible CUDA devices.
  static std::unique_ptr<NcclCommunicator> create(MPI_Comm bootstrap, int local_rank, CommOptions options = {});
  ~NcclCommunicator() override;

  Backend backend() const override { return Backend::kNccl; }
  int max_tag() const override;
  MPI_Comm mpi_group() const override;
  int device_index() const;
  // The communicator's own stream, on which its operations run.
  cudaStream_t stream() const;
  // Aborts the NCCL communicator; later calls fail with `reason`.
  void abort(const std::string& reason);

  // For readers on the host (a copy into host memory, a check of a result): blocks until `work`, an operation of a
  // NcclCommunicator, has finished on the GPU. Throws CommError if it failed, CommTimeout (after aborting the
  // communicator) if it has not finished within `timeout`.
  static void wait_on_host(Work& work, std::chrono::milliseconds timeout);

 protected:
  WorkPtr do_allreduce(const Buffer& buffer, const OpInfo& info) override;
  WorkPtr do_broadcast(const Buffer& buffer, const OpInfo& info) override;
  WorkPtr do_allgather(const Buffer& output, const Buffer& input, const OpInfo& info) override;
  WorkPtr do_reduce_scatter(const Buffer& output, const Buffer& input, const OpInfo& info) override;
  WorkPtr do_send(const Buffer& buffer, const OpInfo& info) override;
  WorkPtr do_recv(const Buffer& buffer, const OpInfo& info) override;
  WorkPtr do_barrier(const OpInfo& info) override;
  std::unique_ptr<Communicator> do_split(int color, int key, CommOptions options, const OpInfo& info) override;
  DeviceKind device() const override { return DeviceKind::kCuda; }
  void check_usable() const override;

 public:
  struct State;  // shared with the Work handles, which abort it on timeout

 private:
  NcclCommunicator(std::shared_ptr<State> state, int rank, int size, CommOptions options,
                   std::shared_ptr<CommProgress> progress);
  // Verifies the call across ranks (collectives), orders the communicator stream after the current stream, enqueues
  // `call`, records the end event and hands the buffers to the monitor until the event has passed.
  WorkPtr launch(const OpInfo& info, bool collective, std::initializer_list<const Buffer*> buffers,
                 const std::function<ncclResult_t(ncclComm_t, cudaStream_t)>& call);

  std::shared_ptr<State> state_;
};

}  // namespace dtrain::comm
