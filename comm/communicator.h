#pragma once
// Note [Communicator contract]
// A Communicator is a fixed group of ranks with one virtual per collective (as in PyTorch c10d). Every operation:
//  - is asynchronous: it returns a Work handle at once; wait() gives its result or a precise error;
//  - is checked on the calling rank before it is issued (sizes, dtypes, ranks, tags, device), and with
//    CommOptions::verify_calls every collective is also compared across ranks before it runs, so a rank that calls a
//    different collective, count, dtype or root gets a CommError naming each rank's call instead of a hang or wrong
//    data (comm/call_verifier.h);
//  - is recorded (CommProgress) for the watchdog, which names the ranks a stuck op waits for (Note [Watchdog]);
//  - completes in the order it was issued on that communicator: when wait() returns for an op, every op issued
//    earlier on the same communicator has finished too;
//  - must be issued in the same order on every rank for collectives (like MPI), and from one thread at a time.
// Buffers stay owned by the caller (or kept alive by Buffer::keepalive) until the op has finished.
// Sub-communicators (split) have their own queue and do not order against their parent.

#include <ATen/core/Tensor.h>
#include <mpi.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "comm/progress.h"
#include "comm/types.h"
#include "comm/work.h"

namespace dtrain::comm {

enum class Backend { kMpi, kNccl };
const char* to_string(Backend backend);

struct CommOptions {
  std::string name = "world";
  // Deadline of Work::wait() without an argument.
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
  // Compare every collective's kind, dtype, count, root and sequence number across ranks before running it.
  bool verify_calls = true;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& name() const { return options_.name; }
  const CommOptions& options() const { return options_; }
  virtual Backend backend() const = 0;
  // Largest tag send/recv accept.
  virtual int max_tag() const = 0;
  // The MPI communicator of the same ranks in the same order, which ControlPlane::for_group duplicates for the
  // control plane (Note [Control plane and data plane]). Never used for this communicator's own operations.
  virtual MPI_Comm mpi_group() const = 0;

  // In place: every rank ends with the reduction of all ranks' `buffer`. kAvg needs a floating-point dtype.
  WorkPtr allreduce(const Buffer& buffer, ReduceOp op);
  // `buffer` on every rank receives root's `buffer`.
  WorkPtr broadcast(const Buffer& buffer, int root);
  // output (size() * input.count elements) = concatenation of every rank's input, in rank order.
  // input may be this rank's slice of output (in place).
  WorkPtr allgather(const Buffer& output, const Buffer& input);
  // input (size() * output.count elements) is reduced across ranks; rank r receives slice r.
  WorkPtr reduce_scatter(const Buffer& output, const Buffer& input, ReduceOp op);
  // Point-to-point, matched by (peer, tag) in issue order. A recv whose count differs from the send fails.
  WorkPtr send(const Buffer& buffer, int dst, int tag);
  WorkPtr recv(const Buffer& buffer, int src, int tag);
  WorkPtr barrier();
  // Collective over this communicator: ranks with the same colour form a new communicator, ordered by (key, rank).
  // A negative colour takes no part and gets nullptr. Blocks until the new communicator exists.
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name = "");

  // The same operations on LibTorch tensors (contiguous, one of the dtypes above, on this backend's device).
  WorkPtr allreduce(const at::Tensor& tensor, ReduceOp op);
  WorkPtr broadcast(const at::Tensor& tensor, int root);
  WorkPtr allgather(const at::Tensor& output, const at::Tensor& input);
  WorkPtr reduce_scatter(const at::Tensor& output, const at::Tensor& input, ReduceOp op);
  WorkPtr send(const at::Tensor& tensor, int dst, int tag);
  WorkPtr recv(const at::Tensor& tensor, int src, int tag);

 protected:
  // `progress` is this communicator's record for the watchdog (Watchdog::track).
  Communicator(int rank, int size, CommOptions options, std::shared_ptr<CommProgress> progress);
  const std::shared_ptr<CommProgress>& progress() const { return progress_; }

  // One virtual per operation. Called with arguments already checked and `info` numbered, under issue_mutex_.
  virtual WorkPtr do_allreduce(const Buffer& buffer, const OpInfo& info) = 0;
  virtual WorkPtr do_broadcast(const Buffer& buffer, const OpInfo& info) = 0;
  virtual WorkPtr do_allgather(const Buffer& output, const Buffer& input, const OpInfo& info) = 0;
  virtual WorkPtr do_reduce_scatter(const Buffer& output, const Buffer& input, const OpInfo& info) = 0;
  virtual WorkPtr do_send(const Buffer& buffer, const OpInfo& info) = 0;
  virtual WorkPtr do_recv(const Buffer& buffer, const OpInfo& info) = 0;
  virtual WorkPtr do_barrier(const OpInfo& info) = 0;
  virtual std::unique_ptr<Communicator> do_split(int color, int key, CommOptions options, const OpInfo& info) = 0;

  // The device kind this backend's buffers must live on.
  virtual DeviceKind device() const = 0;
  // Throws if the communicator was aborted or failed earlier.
  virtual void check_usable() const = 0;

  // "communicator 'world' rank 1/4"
  std::string where() const;

 private:
  OpInfo next_collective(OpType type, const Buffer& buffer);
  OpInfo next_p2p(OpType type, const Buffer& buffer, int peer, int tag);
  void check_buffer(const Buffer& buffer, const OpInfo& info, const char* role) const;
  void check_rank(int peer, const OpInfo& info, const char* role) const;

  int rank_;
  int size_;
  CommOptions options_;
  std::mutex issue_mutex_;  // numbering and enqueueing are one step, so sequence numbers follow issue order
  std::uint64_t collective_seq_ = 0;
  std::uint64_t p2p_seq_ = 0;
  std::shared_ptr<CommProgress> progress_;
};

// Collective: `root`'s `text` on every rank (a path, an error message, a model description). Blocks until done.
std::string broadcast_string(Communicator& comm, const std::string& text, int root);

}  // namespace dtrain::comm
