#include "comm/world.h"

#include "comm/error.h"
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

}  // namespace dtrain::comm
