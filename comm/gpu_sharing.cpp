#include "comm/gpu_sharing.h"

#include <fmt/format.h>

namespace dtrain::comm {

std::string format_gpu_uuid(const char (&bytes)[16]) {
  std::string text = "GPU-";
  for (int i = 0; i < 16; ++i) {
    text += fmt::format("{:02x}", static_cast<unsigned char>(bytes[i]));
    if (i == 3 || i == 5 || i == 7 || i == 9) text += '-';
  }
  return text;
}

std::string shared_gpu_problem(const std::vector<RankGpu>& node) {
  const RankGpu* first = nullptr;
  const RankGpu* second = nullptr;
  for (std::size_t i = 0; i < node.size(); ++i) {
    for (std::size_t j = i + 1; j < node.size(); ++j) {
      if (node[i].uuid != node[j].uuid) continue;
      const RankGpu* low = node[i].rank < node[j].rank ? &node[i] : &node[j];
      const RankGpu* high = low == &node[i] ? &node[j] : &node[i];
      if (first == nullptr || low->rank < first->rank || (low->rank == first->rank && high->rank < second->rank)) {
        first = low;
        second = high;
      }
    }
  }
  if (first == nullptr) return "";
  return fmt::format(
      "ranks {} and {} of this node would both use GPU {} (their device {} and {}); NCCL needs a GPU of its own for "
      "each rank: start as many ranks per node as there are GPUs, give each task its own GPU (srun --gpus-per-task=1 "
      "or CUDA_VISIBLE_DEVICES), or share GPUs with --backend mpi",
      first->rank, second->rank, first->uuid, first->device, second->device);
}

}  // namespace dtrain::comm
