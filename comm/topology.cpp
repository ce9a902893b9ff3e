#include "comm/topology.h"

#include <fmt/format.h>

#include <vector>

#include "comm/mpi_check.h"

namespace dtrain::comm {

namespace {

constexpr int kNameLength = 128;

// A fixed-width, NUL-padded copy of `text`, for gathering strings with a plain MPI_Gather.
std::vector<char> fixed_width(const std::string& text) {
  std::vector<char> out(kNameLength, '\0');
  text.copy(out.data(), kNameLength - 1);
  return out;
}

}  // namespace

Topology Topology::discover(MPI_Comm world) {
  const std::string context = "discovering the rank topology";
  Topology t;
  DTRAIN_MPI_CHECK(MPI_Comm_rank(world, &t.world_rank), context);
  DTRAIN_MPI_CHECK(MPI_Comm_size(world, &t.world_size), context);

  MPI_Comm node = MPI_COMM_NULL;
  DTRAIN_MPI_CHECK(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, t.world_rank, MPI_INFO_NULL, &node), context);
  DTRAIN_MPI_CHECK(MPI_Comm_rank(node, &t.local_rank), context);
  DTRAIN_MPI_CHECK(MPI_Comm_size(node, &t.local_size), context);

  // Node leaders (local rank 0) count themselves in world-rank order; each node learns its index from its leader.
  const int is_leader = t.local_rank == 0 ? 1 : 0;
  int leaders_before = 0;
  DTRAIN_MPI_CHECK(MPI_Exscan(&is_leader, &leaders_before, 1, MPI_INT, MPI_SUM, world), context);
  if (t.world_rank == 0) leaders_before = 0;  // MPI_Exscan leaves rank 0's result undefined
  t.node_index = leaders_before;
  DTRAIN_MPI_CHECK(MPI_Bcast(&t.node_index, 1, MPI_INT, 0, node), context);
  DTRAIN_MPI_CHECK(MPI_Allreduce(&is_leader, &t.node_count, 1, MPI_INT, MPI_SUM, world), context);
  DTRAIN_MPI_CHECK(MPI_Comm_free(&node), context);

  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  DTRAIN_MPI_CHECK(MPI_Get_processor_name(name, &length), context);
  t.hostname.assign(name, static_cast<std::size_t>(length));
  return t;
}

std::string format_rank_table(const Topology& topology, const std::string& device, MPI_Comm world) {
  const std::string context = "gathering the rank table";
  const int fields[3] = {topology.local_rank, topology.local_size, topology.node_index};
  const std::vector<char> host = fixed_width(topology.hostname);
  const std::vector<char> dev = fixed_width(device);
  const bool root = topology.world_rank == 0;
  const auto n = static_cast<std::size_t>(topology.world_size);
  std::vector<int> all_fields(root ? 3 * n : 0);
  std::vector<char> all_hosts(root ? kNameLength * n : 0);
  std::vector<char> all_devices(root ? kNameLength * n : 0);
  DTRAIN_MPI_CHECK(MPI_Gather(fields, 3, MPI_INT, all_fields.data(), 3, MPI_INT, 0, world), context);
  DTRAIN_MPI_CHECK(MPI_Gather(host.data(), kNameLength, MPI_CHAR, all_hosts.data(), kNameLength, MPI_CHAR, 0, world),
                   context);
  DTRAIN_MPI_CHECK(MPI_Gather(dev.data(), kNameLength, MPI_CHAR, all_devices.data(), kNameLength, MPI_CHAR, 0, world),
                   context);
  if (!root) return {};

  std::string table = fmt::format("{:>6}  {:<24}  {:>4}  {:>10}  {:>10}  {}\n", "rank", "host", "node", "local rank",
                                  "local size", "device");
  for (std::size_t r = 0; r < n; ++r) {
    table +=
        fmt::format("{:>6}  {:<24}  {:>4}  {:>10}  {:>10}  {}\n", r, &all_hosts[r * kNameLength], all_fields[3 * r + 2],
                    all_fields[3 * r], all_fields[3 * r + 1], &all_devices[r * kNameLength]);
  }
  return table;
}

}  // namespace dtrain::comm
