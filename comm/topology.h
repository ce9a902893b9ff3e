#pragma once
// Where each rank runs. Everything is taken from MPI itself (a shared-memory split of the world communicator), never
// from launcher variables such as SLURM_PROCID, which are wrong under `mpirun` inside an sbatch allocation.

#include <mpi.h>

#include <string>

namespace dtrain::comm {

struct Topology {
  int world_rank = 0;
  int world_size = 1;
  int local_rank = 0;  // rank among the processes on this node
  int local_size = 1;
  int node_index = 0;  // nodes numbered in order of their lowest world rank
  int node_count = 1;
  std::string hostname;

  // Collective over `world`.
  static Topology discover(MPI_Comm world);
};

// Collective over `world`: the rank -> host -> local rank -> device table, one line per rank, returned on rank 0
// (empty elsewhere). `device` is this rank's device ("cpu", "cuda:1").
std::string format_rank_table(const Topology& topology, const std::string& device, MPI_Comm world);

}  // namespace dtrain::comm
