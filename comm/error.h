#pragma once
// Errors raised by the communication layer. Every message names the communicator, the rank and the operation, so a
// failure on one of many ranks can be traced without a debugger.

#include <stdexcept>
#include <string>

namespace dtrain::comm {

// A collective or point-to-point operation failed, a call was invalid, or ranks disagreed about a call.
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An operation did not finish within its deadline. The communicator is aborted: later calls on it fail at once.
class CommTimeout : public CommError {
 public:
  using CommError::CommError;
};

// Note [Agreed errors]
// Raised on every rank of a control plane at the same point, with the same message, once the ranks have agreed that
// some of them failed (ControlPlane::raise_if_any_failed). When the plane spans the whole job, every rank can stop
// cleanly, without MPI_Abort, and one rank prints the error once: nothing is lost in an abort and no line is printed
// N times (dtrain_main.cpp). A plane of only some ranks (one pipeline stage's replicas) still ends the job by abort,
// since the other ranks may be waiting for these in a collective.
class AgreedError : public std::runtime_error {
 public:
  AgreedError(const std::string& problem, int first_failed, int failed, int plane_size)
      : std::runtime_error(problem), first_failed_(first_failed), failed_(failed), plane_size_(plane_size) {}
  int plane_size() const { return plane_size_; }
  // Which ranks of the plane failed: "on rank 2", "on all 4 ranks", "on rank 0 and 2 other ranks" (defined in
  // control_plane.cpp, beside the call that raises it).
  std::string where() const;

 private:
  int first_failed_;
  int failed_;
  int plane_size_;
};

}  // namespace dtrain::comm
