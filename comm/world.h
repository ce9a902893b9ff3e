#pragma once
// The one call a program makes to get its world communicator, whatever the backend.

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/topology.h"

namespace dtrain::comm {

// Collective over MPI_COMM_WORLD. kMpi: a CPU communicator. kNccl: a NCCL communicator on CUDA device
// topology.local_rank modulo the visible devices (an error if two ranks of a node would share a GPU, or if dtrain was
// built without NCCL).
std::unique_ptr<Communicator> make_world_communicator(Backend backend, const Topology& topology,
                                                      CommOptions options = {});

}  // namespace dtrain::comm
