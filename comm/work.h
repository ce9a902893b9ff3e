#pragma once
// The handle every asynchronous operation returns. Backends implement how completion is observed (a condition
// variable fed by the MPI communication thread, a CUDA event for NCCL); the contract is the same for all of them.

#include <chrono>
#include <memory>

#include "comm/types.h"

namespace dtrain::comm {

enum class WorkStatus { kPending, kSucceeded, kFailed };
const char* to_string(WorkStatus status);

class Work {
 public:
  explicit Work(OpInfo info, std::chrono::milliseconds default_timeout)
      : info_(info), default_timeout_(default_timeout) {}
  virtual ~Work() = default;
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  const OpInfo& info() const { return info_; }

  // Where the operation stands now; never blocks.
  virtual WorkStatus status() = 0;

  // Blocks until the operation has finished. Throws CommError if it failed. If it has not finished within `timeout`,
  // the communicator is aborted (so that no rank waits forever on a peer that is gone) and CommTimeout is thrown.
  virtual void wait(std::chrono::milliseconds timeout) = 0;

  // wait() with the communicator's timeout (CommOptions::timeout).
  void wait() { wait(default_timeout_); }

  // When the backend saw the operation finish (for timelines); only meaningful once status() is not kPending.
  std::chrono::steady_clock::time_point finished_at() const { return finished_at_; }

 protected:
  // Backends call this before they publish the final status, so a caller that saw the status sees the time too.
  void set_finished_now() { finished_at_ = std::chrono::steady_clock::now(); }

 private:
  std::chrono::steady_clock::time_point finished_at_{};
  OpInfo info_;
  std::chrono::milliseconds default_timeout_;
};

using WorkPtr = std::shared_ptr<Work>;

}  // namespace dtrain::comm
