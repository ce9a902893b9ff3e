#pragma once
// The NCCL backend: collectives and point-to-point on raw CUDA device pointers (Buffer with DeviceKind::kCuda), so it
// needs the CUDA runtime and NCCL but not a CUDA build of LibTorch. Bootstrapped over MPI: rank 0 makes the
// ncclUniqueId and broadcasts it with MPI, every rank calls ncclCommInitRank on its device. Each communicator has its
// own CUDA stream; each operation first waits for the input stream (set_input_stream) so its buffers are ready, and
// records an event that its Work polls. A timeout or a NCCL error aborts the communicator (ncclCommAbort), so no rank
// stays blocked in a kernel waiting for a peer that is gone.
// NCCL has no tags: sends and receives between a pair of ranks match in issue order; tags are still range-checked.
// A send and a receive between the same two ranks in opposite directions must not both be large and unmatched.

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <functional>
#include <memory>
#include <string>

#include "comm/communicator.h"

namespace dtrain::comm {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap` (duplicated for the cross-rank call checks). `device` is this rank's CUDA device,
  // usually its local rank (see make_world_communicator).
  static std::unique_ptr<NcclCommunicator> create(MPI_Comm bootstrap, int device, CommOptions options = {});
  ~NcclCommunicator() override;

  Backend backend() const override { return Backend::kNccl; }
  int max_tag() const override;
  MPI_Comm mpi_group() const override;
  int device_index() const;
  cudaStream_t stream() const;
  // Later operations wait for the work already queued on `stream` (default: the legacy default stream).
  void set_input_stream(cudaStream_t stream);
  // Aborts the NCCL communicator; later calls fail with `reason`.
  void abort(const std::string& reason);

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
  // Verifies the call across ranks (collectives), orders the communicator stream after the input stream, enqueues
  // `call` and returns a Work that polls an event recorded after it.
  WorkPtr launch(const OpInfo& info, bool collective,
                 const std::function<ncclResult_t(ncclComm_t, cudaStream_t)>& call);

  std::shared_ptr<State> state_;
};

}  // namespace dtrain::comm
