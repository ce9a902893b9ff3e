#include "comm/launch_check.h"

#include <fmt/format.h>

#include <cstdlib>

#ifdef DTRAIN_WITH_NCCL
#include <cuda_runtime_api.h>
#endif

namespace dtrain::comm {

namespace {

int as_int(const char* text) {
  return text == nullptr ? 0 : std::atoi(text);
}

}  // namespace

std::string check_launch(const Topology& topology, const EnvironmentLookup& environment) {
  const int slurm_tasks = as_int(environment("SLURM_NTASKS"));
  const bool under_srun = environment("SLURM_STEP_ID") != nullptr && environment("OMPI_COMM_WORLD_SIZE") == nullptr;
  if (under_srun && slurm_tasks > 1 && topology.world_size == 1) {
    return fmt::format(
        "srun started {} tasks, but each one is an MPI world of its own (1 rank): launch with `srun --mpi=pmix` (or "
        "set MpiDefault=pmix in slurm.conf)",
        slurm_tasks);
  }
  const int mpirun_size = as_int(environment("OMPI_COMM_WORLD_SIZE"));
  if (mpirun_size > 0 && mpirun_size != topology.world_size) {
    return fmt::format("mpirun started {} processes (OMPI_COMM_WORLD_SIZE), but MPI_COMM_WORLD has {} ranks",
                       mpirun_size, topology.world_size);
  }
  return "";
}

int visible_cuda_devices() {
#ifdef DTRAIN_WITH_NCCL
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
#else
  return 0;
#endif
}

}  // namespace dtrain::comm
