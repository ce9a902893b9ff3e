#include "comm/world.h"

#include <fmt/format.h>

#include <algorithm>

#include "comm/error.h"
#include "comm/launch_check.h"
#include "comm/mpi_communicator.h"
#ifdef DTRAIN_WITH_NCCL
#include "comm/nccl_communicator.h"
#endif

namespace dtrain::comm {

std::unique_ptr<Communicator> make_world_communicator(Backend backend, const Topology& topology, CommOptions options) {
  if (backend == Backend::kMpi) return MpiCommunicator::create(MPI_COMM_WORLD, std::move(options));
#ifdef DTRAIN_WITH_NCCL
  return NcclCommunicator::create(MPI_COMM_WORLD, topology.local_rank, std::move(options));
#else
  (void)topology;
  throw CommError(
      "the NCCL backend was requested but this dtrain was built without it (configure with "
      "-DDTRAIN_WITH_NCCL=ON where CUDA and NCCL are installed)");
#endif
}

std::string device_label(Backend backend, const Topology& topology) {
  if (backend == Backend::kMpi) return "cpu";
  // The device NcclCommunicator::create takes: the local rank modulo the devices this rank sees.
  return fmt::format("cuda:{}", topology.local_rank % std::max(1, visible_cuda_devices()));
}

}  // namespace dtrain::comm
