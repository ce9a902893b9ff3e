#include "comm/watchdog_comm_id.h"

#include <fmt/format.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "comm/mpi_check.h"

namespace dtrain::comm {

namespace {

// Each process's next id exceeds every id it has agreed to, so the ids it holds are distinct.
std::atomic<std::uint64_t> g_next_comm_id{1};

}  // namespace

std::shared_ptr<CommProgress> make_comm_progress(MPI_Comm comm, const std::string& name) {
  const std::string context = fmt::format("agreeing on an id for communicator '{}'", name);
  std::uint64_t id = g_next_comm_id.load();
  DTRAIN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &id, 1, MPI_UINT64_T, MPI_MAX, comm), context);
  std::uint64_t next = g_next_comm_id.load();
  while (next <= id && !g_next_comm_id.compare_exchange_weak(next, id + 1)) {
  }
  int rank = 0;
  int size = 0;
  DTRAIN_MPI_CHECK(MPI_Comm_rank(comm, &rank), context);
  DTRAIN_MPI_CHECK(MPI_Comm_size(comm, &size), context);
  MPI_Group group = MPI_GROUP_NULL;
  MPI_Group world = MPI_GROUP_NULL;
  DTRAIN_MPI_CHECK(MPI_Comm_group(comm, &group), context);
  DTRAIN_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world), context);
  std::vector<int> ranks(static_cast<std::size_t>(size));
  std::vector<int> world_ranks(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) ranks[static_cast<std::size_t>(r)] = r;
  DTRAIN_MPI_CHECK(MPI_Group_translate_ranks(group, size, ranks.data(), world, world_ranks.data()), context);
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  return std::make_shared<CommProgress>(id, name, rank, std::move(world_ranks));
}

}  // namespace dtrain::comm
