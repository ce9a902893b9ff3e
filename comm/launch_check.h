#pragma once
// Does what the launcher started match what MPI sees? The classic mistakes, each caught before any training:
//  - `srun` without `--mpi=pmix` (Debian's Open MPI supports only PMIx): every task initialises MPI alone and is a
//    world of one rank, so a 4-task job trains 4 unrelated models;
//  - a launcher that reports another world size than MPI's.
// GPUs are checked where they are chosen: runtime/device/device_selection.h (none visible, no CUDA in LibTorch) and
// the NCCL bootstrap (two ranks of a node on one GPU, by UUID: comm/gpu_sharing.h). Counting ranks against visible
// devices here would refuse a valid layout: one GPU per task (srun --gpus-per-task=1) shows each rank one device.

#include <functional>
#include <string>

#include "comm/topology.h"

namespace dtrain::comm {

// Reads an environment variable (nullptr if unset); std::getenv in production, a table in tests.
using EnvironmentLookup = std::function<const char*(const char*)>;

// "" when the launch is consistent, else one line naming the problem and the fix.
std::string check_launch(const Topology& topology, const EnvironmentLookup& environment);

// The CUDA devices this process can see (0 without the CUDA runtime, or if it cannot be loaded).
int visible_cuda_devices();

}  // namespace dtrain::comm
