// The launch checks against fake environments: srun without PMIx, a world-size mismatch.

#include "comm/launch_check.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace dtrain::comm {
namespace {

EnvironmentLookup fake(std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](const char* name) -> const char* {
    const auto it = variables.find(name);
    return it == variables.end() ? nullptr : it->second.c_str();
  };
}

Topology world(int size, int local_size) {
  Topology t;
  t.world_size = size;
  t.local_size = local_size;
  t.hostname = "node7";
  t.node_index = 3;
  return t;
}

TEST(LaunchCheck, ConsistentLaunchesPass) {
  EXPECT_EQ(check_launch(world(4, 4), fake({})), "");
  EXPECT_EQ(check_launch(world(4, 4), fake({{"SLURM_NTASKS", "4"}, {"SLURM_STEP_ID", "0"}})), "");
  // mpirun inside an allocation: SLURM_NTASKS describes the allocation, mpirun's size is the truth.
  EXPECT_EQ(
      check_launch(world(2, 2), fake({{"SLURM_NTASKS", "8"}, {"SLURM_STEP_ID", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}})),
      "");
  EXPECT_EQ(check_launch(world(8, 4), fake({})), "");  // one GPU per task: GPUs are checked by the NCCL bootstrap
}

TEST(LaunchCheck, SrunWithoutPmixIsNamedWithTheFix) {
  EXPECT_EQ(check_launch(world(1, 1), fake({{"SLURM_NTASKS", "4"}, {"SLURM_STEP_ID", "0"}})),
            "srun started 4 tasks, but each one is an MPI world of its own (1 rank): launch with `srun --mpi=pmix` "
            "(or set MpiDefault=pmix in slurm.conf)");
}

TEST(LaunchCheck, LauncherAndMpiDisagreeingOnTheWorldSize) {
  EXPECT_EQ(check_launch(world(2, 2), fake({{"OMPI_COMM_WORLD_SIZE", "4"}})),
            "mpirun started 4 processes (OMPI_COMM_WORLD_SIZE), but MPI_COMM_WORLD has 2 ranks");
}

}  // namespace
}  // namespace dtrain::comm
