#pragma once
// A new communicator's record for the watchdog (comm/progress.h), with what the watchdogs need to talk about it
// across ranks: an id that is the same on every member, and each member's MPI_COMM_WORLD rank.

#include <mpi.h>

#include <memory>
#include <string>

#include "comm/progress.h"

namespace dtrain::comm {

// Collective over `comm`.
std::shared_ptr<CommProgress> make_comm_progress(MPI_Comm comm, const std::string& name);

}  // namespace dtrain::comm
