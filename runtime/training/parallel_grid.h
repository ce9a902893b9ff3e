#pragma once
// Data parallelism x pipeline parallelism: R = dp x pp ranks. World rank r holds stage r % pp of replica r / pp, so
// the stages of one pipeline sit on consecutive ranks (usually one node, where the frequent activation transfers are
// cheapest) and the replicas of one stage, which allreduce its gradients once per step, span the nodes.
// Each group has its data communicator (the run's backend) and its control plane (MPI on host memory, the same ranks
// in the same order; Note [Control plane and data plane]).

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/control_plane.h"

namespace dtrain::runtime {

struct ParallelGrid {
  int stages = 1;    // pp
  int replicas = 1;  // dp
  int stage = 0;
  int replica = 0;
  std::unique_ptr<comm::ControlPlane> world_control;  // every rank: metrics, evaluation sums, stop agreement
  std::unique_ptr<comm::Communicator> pipeline;       // this replica's stages; its rank is the stage
  std::unique_ptr<comm::Communicator> data;           // this stage in every replica; its rank is the replica
  std::unique_ptr<comm::ControlPlane> pipeline_control;
  std::unique_ptr<comm::ControlPlane> data_control;

  // "stage 1/2 of replica 0/2"
  std::string describe() const;
};

// Collective over `world`. Throws std::invalid_argument if the world size is not a multiple of `stages`.
ParallelGrid make_parallel_grid(comm::Communicator& world, int stages);

}  // namespace dtrain::runtime
