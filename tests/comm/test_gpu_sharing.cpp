// Two ranks of a node on one GPU, found from made-up UUID lists (the NCCL bootstrap's check, without GPUs).

#include "comm/gpu_sharing.h"

#include <gtest/gtest.h>

namespace dtrain::comm {
namespace {

TEST(GpuSharing, RanksWithGpusOfTheirOwnPass) {
  EXPECT_EQ(shared_gpu_problem({}), "");
  EXPECT_EQ(shared_gpu_problem({{0, 0, "GPU-a"}, {1, 1, "GPU-b"}, {2, 2, "GPU-c"}}), "");
  // One GPU per task: every rank sees device 0, but each a different GPU.
  EXPECT_EQ(shared_gpu_problem({{4, 0, "GPU-a"}, {5, 0, "GPU-b"}}), "");
}

TEST(GpuSharing, TheLowestPairOnOneGpuIsNamedWithItsUuid) {
  const std::string expected =
      "ranks 1 and 3 of this node would both use GPU GPU-b (their device 1 and 1); NCCL needs a GPU of its own for "
      "each rank: start as many ranks per node as there are GPUs, give each task its own GPU (srun "
      "--gpus-per-task=1 or CUDA_VISIBLE_DEVICES), or share GPUs with --backend mpi";
  // Four ranks on two GPUs (local rank modulo 2): 0 and 2 share GPU-a, 1 and 3 share GPU-b; reported order is by
  // rank whatever order the reports arrive in, and 0-2 comes first.
  EXPECT_EQ(shared_gpu_problem({{3, 1, "GPU-b"}, {1, 1, "GPU-b"}}), expected);
  EXPECT_NE(shared_gpu_problem({{3, 1, "GPU-b"}, {2, 0, "GPU-a"}, {1, 1, "GPU-b"}, {0, 0, "GPU-a"}})
                .find("ranks 0 and 2 of this node would both use GPU GPU-a (their device 0 and 0)"),
            std::string::npos);
}

TEST(GpuSharing, UuidsAreFormattedAsNvidiaSmiPrintsThem) {
  const char bytes[16] = {'\x6f', '\x2b', '\x0c', '\x1d', '\x00', '\xff', '\x10', '\x20',
                          '\x30', '\x40', '\x50', '\x60', '\x70', '\x80', '\x90', '\xa0'};
  EXPECT_EQ(format_gpu_uuid(bytes), "GPU-6f2b0c1d-00ff-1020-3040-5060708090a0");
}

}  // namespace
}  // namespace dtrain::comm
