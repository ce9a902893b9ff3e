#include "comm/call_verifier.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <vector>

#include "comm/error.h"
#include "comm/mpi_check.h"

namespace dtrain::comm {

namespace {

constexpr int kFields = 6;
using Fingerprint = std::array<std::int64_t, kFields>;

Fingerprint fingerprint_of(const OpInfo& info) {
  const bool reduces = info.type == OpType::kAllreduce || info.type == OpType::kReduceScatter;
  return {static_cast<std::int64_t>(info.type),
          static_cast<std::int64_t>(info.seq),
          static_cast<std::int64_t>(info.dtype),
          static_cast<std::int64_t>(info.count),
          reduces ? static_cast<std::int64_t>(info.op) : -1,
          info.type == OpType::kBroadcast ? info.peer : -1};
}

OpInfo info_of(const Fingerprint& f) {
  OpInfo info;
  info.type = static_cast<OpType>(f[0]);
  info.seq = static_cast<std::uint64_t>(f[1]);
  info.dtype = static_cast<DataType>(f[2]);
  info.count = static_cast<std::size_t>(f[3]);
  info.op = f[4] < 0 ? ReduceOp::kSum : static_cast<ReduceOp>(f[4]);
  info.peer = static_cast<int>(f[5]);
  return info;
}

// "rank 3" or "ranks 0,2-3"
std::string format_ranks(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (std::size_t i = 0; i < ranks.size();) {
    std::size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (i > 0) out += ",";
    out += j == i ? std::to_string(ranks[i]) : fmt::format("{}-{}", ranks[i], ranks[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace

void verify_same_call(MPI_Comm comm, const OpInfo& info, const std::string& where) {
  const Fingerprint mine = fingerprint_of(info);
  // min and max of every field in one allreduce: max(x) = -min(-x).
  std::array<std::int64_t, 2 * kFields> bounds;
  for (int i = 0; i < kFields; ++i) {
    bounds[i] = mine[i];
    bounds[kFields + i] = -mine[i];
  }
  auto context = [&] { return fmt::format("verifying {} on {}", info.describe(), where); };
  DTRAIN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, bounds.data(), 2 * kFields, MPI_INT64_T, MPI_MIN, comm), context());
  bool same = true;
  for (int i = 0; i < kFields; ++i) same = same && bounds[i] == -bounds[kFields + i];
  if (same) return;

  // Every rank saw the mismatch, so every rank takes part in this gather and reports the same message.
  int size = 0;
  DTRAIN_MPI_CHECK(MPI_Comm_size(comm, &size), context());
  std::vector<Fingerprint> all(static_cast<std::size_t>(size));
  DTRAIN_MPI_CHECK(MPI_Allgather(mine.data(), kFields, MPI_INT64_T, all.data(), kFields, MPI_INT64_T, comm), context());
  std::map<Fingerprint, std::vector<int>> ranks_by_call;
  for (int r = 0; r < size; ++r) ranks_by_call[all[static_cast<std::size_t>(r)]].push_back(r);
  std::vector<std::pair<int, std::string>> parts;  // ordered by the first rank of each group
  for (const auto& [call, ranks] : ranks_by_call) {
    parts.emplace_back(ranks.front(), fmt::format("{} called {}", format_ranks(ranks), info_of(call).describe()));
  }
  std::sort(parts.begin(), parts.end());
  std::string calls;
  for (const auto& part : parts) calls += (calls.empty() ? "" : "; ") + part.second;
  throw CommError(fmt::format("collective mismatch on {}: {}", where, calls));
}

}  // namespace dtrain::comm
