#pragma once
// DTRAIN_MPI_CHECK wraps every MPI call: on failure it throws CommError with the caller's context (operation, rank,
// sizes), the MPI function's name and MPI's own error text. Communicators use MPI_ERRORS_RETURN so that errors reach
// this macro instead of aborting inside MPI.

#include <mpi.h>

#include <string>

namespace dtrain::comm {

// Throws CommError: "<context>: <call> failed: <MPI error string>".
[[noreturn]] void throw_mpi_error(int code, const char* call, const std::string& context);

}  // namespace dtrain::comm

// `context` is any expression convertible to std::string; it is evaluated only when the call fails.
#define DTRAIN_MPI_CHECK(call, context)                                  \
  do {                                                                   \
    const int dtrain_mpi_rc_ = (call);                                   \
    if (dtrain_mpi_rc_ != MPI_SUCCESS) {                                 \
      ::dtrain::comm::throw_mpi_error(dtrain_mpi_rc_, #call, (context)); \
    }                                                                    \
  } while (0)
