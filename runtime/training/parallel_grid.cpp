#include "runtime/training/parallel_grid.h"

#include <fmt/format.h>

#include <stdexcept>

namespace dtrain::runtime {

std::string ParallelGrid::describe() const {
  return fmt::format("stage {}/{} of replica {}/{}", stage, stages, replica, replicas);
}

ParallelGrid make_parallel_grid(comm::Communicator& world, int stages) {
  if (stages < 1 || world.size() % stages != 0) {
    throw std::invalid_argument(fmt::format(
        "--pipeline-stages {} does not divide the {} ranks of this run (ranks = pipeline stages x data-parallel "
        "replicas)",
        stages, world.size()));
  }
  ParallelGrid grid;
  grid.stages = stages;
  grid.replicas = world.size() / stages;
  grid.stage = world.rank() % stages;
  grid.replica = world.rank() / stages;
  const std::string pipeline = fmt::format("pipeline{}", grid.replica);
  const std::string data = fmt::format("stage{}-data", grid.stage);
  grid.pipeline = world.split(grid.replica, grid.stage, pipeline);
  grid.data = world.split(grid.stage, grid.replica, data);
  // The same colours and keys as the data communicators: rank r of each control plane is rank r of its group.
  grid.world_control = comm::ControlPlane::for_group(world);
  grid.pipeline_control = grid.world_control->split(grid.replica, grid.stage, pipeline + "-control");
  grid.data_control = grid.world_control->split(grid.stage, grid.replica, data + "-control");
  return grid;
}

}  // namespace dtrain::runtime
