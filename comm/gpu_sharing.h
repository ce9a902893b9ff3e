#pragma once
// Which ranks of a node would share a GPU? NCCL needs a GPU of its own per rank; the NCCL bootstrap
// (comm/nccl_communicator.cpp) compares the UUIDs the ranks of a node report and refuses a shared one with this
// message, before any NCCL call. A pure function, so that it is tested with made-up UUID lists on machines without
// GPUs.

#include <string>
#include <vector>

namespace dtrain::comm {

struct RankGpu {
  int rank = 0;      // in the communicator being created
  int device = 0;    // CUDA device index as this rank sees it
  std::string uuid;  // "GPU-xxxxxxxx-..."
};

// "GPU-6f2b0c1d-..." as nvidia-smi prints a GPU's UUID (its 16 bytes as CUDA reports them).
std::string format_gpu_uuid(const char (&bytes)[16]);

// "" if every rank of `node` has a GPU of its own, else one line naming the first two ranks (lowest ranks first) that
// would share a GPU, the GPU's UUID and each rank's device index.
std::string shared_gpu_problem(const std::vector<RankGpu>& node);

}  // namespace dtrain::comm
