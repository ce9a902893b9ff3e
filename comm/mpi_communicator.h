#pragma once
// The MPI backend. Open MPI does not progress a posted nonblocking collective while the caller computes, so each
// communicator owns a communication thread that runs its operations in issue order: collectives as blocking calls
// (which progress at full speed while the caller's thread computes), point-to-point as MPI_Isend/MPI_Irecv polled
// until done, so that sends and receives in both directions never deadlock. See Note [MPI communication thread].

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>

#include "comm/communicator.h"

namespace dtrain::comm {

class MpiWork;
struct OpContext;

class MpiCommunicator final : public Communicator {
 public:
  // A communicator over the ranks of `parent` (duplicated, so dtrain's traffic never mixes with the caller's).
  // Collective over `parent`. MPI must be initialized with MPI_THREAD_MULTIPLE (comm/mpi_environment.h).
  static std::unique_ptr<MpiCommunicator> create(MPI_Comm parent, CommOptions options = {});
  ~MpiCommunicator() override;

  Backend backend() const override { return Backend::kMpi; }
  int max_tag() const override { return max_tag_; }
  MPI_Comm mpi_group() const override;

 protected:
  WorkPtr do_allreduce(const Buffer& buffer, const OpInfo& info) override;
  WorkPtr do_broadcast(const Buffer& buffer, const OpInfo& info) override;
  WorkPtr do_allgather(const Buffer& output, const Buffer& input, const OpInfo& info) override;
  WorkPtr do_reduce_scatter(const Buffer& output, const Buffer& input, const OpInfo& info) override;
  WorkPtr do_send(const Buffer& buffer, const OpInfo& info) override;
  WorkPtr do_recv(const Buffer& buffer, const OpInfo& info) override;
  WorkPtr do_barrier(const OpInfo& info) override;
  std::unique_ptr<Communicator> do_split(int color, int key, CommOptions options, const OpInfo& info) override;
  DeviceKind device() const override { return DeviceKind::kCpu; }
  void check_usable() const override;

 private:
  class Engine;
  // Takes ownership of `comm`.
  static std::unique_ptr<MpiCommunicator> adopt(MPI_Comm comm, CommOptions options);
  MpiCommunicator(MPI_Comm comm, int rank, int size, int max_tag, CommOptions options,
                  std::shared_ptr<CommProgress> progress);
  std::shared_ptr<MpiWork> new_work(const OpInfo& info);
  // Queues `body` after the cross-rank call check; `body` gets the MPI communicator and what names the op in errors.
  WorkPtr enqueue_collective(const OpInfo& info, std::function<void(MPI_Comm, const OpContext&)> body);

  std::shared_ptr<Engine> engine_;
  int max_tag_ = 32767;
};

}  // namespace dtrain::comm
