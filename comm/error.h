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

}  // namespace dtrain::comm
