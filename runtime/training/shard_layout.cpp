#include "runtime/training/shard_layout.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

namespace dtrain::runtime {

std::int64_t ShardLayout::shard_numel(std::size_t bucket) const {
  return (numel.at(bucket) + ranks - 1) / ranks;
}

bool ShardLayout::same_buckets(const ShardLayout& other) const {
  return sharded() == other.sharded() && plan == other.plan && parameters == other.parameters && numel == other.numel;
}

std::string ShardLayout::describe() const {
  std::vector<std::int64_t> shards;
  for (std::size_t b = 0; b < numel.size(); ++b) shards.push_back(shard_numel(b));
  return fmt::format("{} ranks, {}bucket plan {:016x}, shards of {} elements", ranks,
                     parameters ? "a bucket per block (--zero-stage 3), " : "", plan, fmt::join(shards, ", "));
}

std::vector<ShardPiece> pieces_of(const ShardLayout& from, const ShardLayout& to, int rank, std::size_t bucket) {
  const std::int64_t old_shard = from.shard_numel(bucket);
  const std::int64_t new_shard = to.shard_numel(bucket);
  // The new shard's elements that hold values; the rest is padding, zero in every cut.
  const std::int64_t begin = std::min(rank * new_shard, to.numel[bucket]);
  const std::int64_t end = std::min(begin + new_shard, to.numel[bucket]);
  std::vector<ShardPiece> pieces;
  for (std::int64_t at = begin; at < end;) {
    const int from_rank = static_cast<int>(at / old_shard);
    const std::int64_t from_offset = at - from_rank * old_shard;
    const std::int64_t numel = std::min(end - at, old_shard - from_offset);
    pieces.push_back({from_rank, from_offset, at - begin, numel});
    at += numel;
  }
  return pieces;
}

std::vector<int> source_ranks(const ShardLayout& from, const ShardLayout& to, int rank) {
  std::set<int> ranks;
  for (std::size_t b = 0; b < to.numel.size(); ++b) {
    for (const ShardPiece& piece : pieces_of(from, to, rank, b)) ranks.insert(piece.from_rank);
  }
  return {ranks.begin(), ranks.end()};
}

}  // namespace dtrain::runtime
