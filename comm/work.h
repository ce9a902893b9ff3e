#pragma once
// The handle every asynchronous operation returns. Backends implement how completion is observed (a condition
// variable fed by the MPI communication thread, a CUDA event for NCCL); the contract is the same for all of them.

#include <chrono>
#include <memory>
#include <string>

#include "comm/types.h"

namespace dtrain::comm {

class CommProgress;

enum class WorkStatus { kPending, kSucceeded, kFailed };

class Work {
 public:
  // `progress` is the record of the communicator that issued the operation (for the watchdog's reports).
  Work(OpInfo info, std::chrono::milliseconds default_timeout, std::shared_ptr<CommProgress> progress);
  virtual ~Work() = default;
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  const OpInfo& info() const { return info_; }
  const CommProgress& progress() const { return *progress_; }

  // Where the operation stands now; never blocks.
  virtual WorkStatus status() = 0;

  // Blocks until the operation has finished. Throws CommError if it failed, or if the watchdog found the ranks
  // deadlocked on it (Note [Watchdog]). If it has not finished within `timeout`, the communicator is aborted (so that
  // no rank waits forever on a peer that is gone) and CommTimeout is thrown, naming the ranks that have not arrived.
  void wait(std::chrono::milliseconds timeout);

  // wait() with the communicator's timeout (CommOptions::timeout).
  void wait() { wait(default_timeout_); }

  // Ends every wait on this operation with a CommError carrying `reason`, and makes the communicator unusable. For the
  // watchdog, once it has proven that the operation can never finish.
  virtual void abandon(const std::string& reason) = 0;

  // When the backend saw the operation finish (for timelines); only meaningful once status() is not kPending.
  std::chrono::steady_clock::time_point finished_at() const { return finished_at_; }

 protected:
  // The backend's wait: returns once finished, throws CommError on failure and CommTimeout after `timeout`.
  virtual void wait_until_finished(std::chrono::milliseconds timeout) = 0;
  // Backends call this before they publish the final status, so a caller that saw the status sees the time too.
  void set_finished_now() { finished_at_ = std::chrono::steady_clock::now(); }

 private:
  std::chrono::steady_clock::time_point finished_at_{};
  OpInfo info_;
  std::chrono::milliseconds default_timeout_;
  std::shared_ptr<CommProgress> progress_;
};

using WorkPtr = std::shared_ptr<Work>;

}  // namespace dtrain::comm
