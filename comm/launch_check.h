#pragma once
// Does what the launcher started match what MPI sees? The classic mistakes, each caught before any training:
//  - `srun` without `--mpi=pmix` (Debian's Open MPI supports only PMIx): every task initialises MPI alone and is a
//    world of one rank, so a 4-task job trains 4 unrelated models;
//  - a launcher that reports another world size than MPI's;
//  - more ranks on a node than visible GPUs with the NCCL backend (two ranks would share a device).

#include <functional>
#include <string>

#include "comm/topology.h"

namespace dtrain::comm {

enum class Backend;

// Reads an environment variable (nullptr if unset); std::getenv in production, a table in tests.
using EnvironmentLookup = std::function<const char*(const char*)>;

// "" when the launch is consistent, else one line naming the problem and the fix. `visible_gpus` is the CUDA device
// count of this node (only used for the NCCL backend).
std::string check_launch(const Topology& topology, Backend backend, int visible_gpus,
                         const EnvironmentLookup& environment);

// The CUDA devices this process can see (0 without CUDA, or if the runtime cannot be loaded); for check_launch.
int visible_cuda_devices();

}  // namespace dtrain::comm
