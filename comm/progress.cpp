#include "comm/progress.h"

#include <array>

#include "comm/hash.h"

namespace dtrain::comm {

namespace {

// FNV-1a over the fields that must agree across ranks, chained onto the history so far.
std::uint64_t fold(std::uint64_t history, const OpInfo& info) {
  const std::array<std::uint64_t, 6> fields = {
      static_cast<std::uint64_t>(info.type),
      static_cast<std::uint64_t>(info.dtype),
      static_cast<std::uint64_t>(info.count),
      static_cast<std::uint64_t>(info.op),
      static_cast<std::uint64_t>(info.type == OpType::kBroadcast ? info.peer : -1),
      info.seq};
  return fnv1a(fields.data(), sizeof fields, history ^ kFnvOffsetBasis);
}

}  // namespace

CommProgress::CommProgress(std::uint64_t id, std::string name, int rank, std::vector<int> world_ranks)
    : id_(id), name_(std::move(name)), rank_(rank), world_ranks_(std::move(world_ranks)) {}

void CommProgress::issued(OpInfo& info) {
  std::lock_guard<std::mutex> lock(mutex_);
  switch (info.type) {
    case OpType::kSend:
      info.peer_seq = sends_to_[info.peer]++;
      return;
    case OpType::kRecv:
      info.peer_seq = recvs_from_[info.peer]++;
      return;
    default:
      totals_.collectives = info.seq + 1;
      totals_.history = fold(totals_.history, info);
      totals_.last_collective = info.describe();
  }
}

ProgressSnapshot CommProgress::snapshot(int about) const {
  std::lock_guard<std::mutex> lock(mutex_);
  ProgressSnapshot out = totals_;
  if (auto it = sends_to_.find(about); it != sends_to_.end()) out.sends_to = it->second;
  if (auto it = recvs_from_.find(about); it != recvs_from_.end()) out.recvs_from = it->second;
  return out;
}

}  // namespace dtrain::comm
