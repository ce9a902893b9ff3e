#pragma once
// How a sharded optimizer (Note [Optimizer shards]) cuts the flat space of the gradient buckets over the replicas:
// what a checkpoint of the shards records, and what a resume on another number of ranks cuts again.
// Note [Re-sharding]: the bucket plan (which parameters, in which order, in each bucket) does not depend on the world
// size; only the cut does. Bucket b of n elements is padded to R shards of ceil(n / R) elements, rank r holding
// elements [r * ceil(n / R), (r + 1) * ceil(n / R)). A checkpoint written by R ranks therefore resumes on R' ranks:
// each new rank's shard is the same elements of the same flat space, read from the old shards that cover them (at
// most ceil(R / R') + 1 of them per bucket); padding holds zeros in every cut. Element-wise optimizer state (SGD's
// momentum, Adam's moments) moves with its elements; a per-bucket step count is the same in every old shard.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dtrain::runtime {

struct ShardLayout {
  int ranks = 0;                    // 0: not sharded, every rank keeps the whole optimizer state
  std::uint64_t plan = 0;           // Reducer::plan_hash()
  bool parameters = false;          // ZeRO stage 3: the parameters are sharded too, a bucket per block
  std::vector<std::int64_t> numel;  // per bucket, padding excluded

  bool sharded() const { return ranks > 0; }
  std::int64_t shard_numel(std::size_t bucket) const;
  // The same buckets and the same kind of sharding: a checkpoint of one resumes into the other, re-cut if the
  // numbers of ranks differ.
  bool same_buckets(const ShardLayout& other) const;
  // "4 ranks, bucket plan 0123456789abcdef, shards of 12, 7 elements"
  std::string describe() const;
};

// Where new rank `rank`'s shard of bucket `bucket` under `to` comes from: runs of elements of the old shards of
// `from` (both layouts with the same buckets).
struct ShardPiece {
  int from_rank = 0;
  std::int64_t from_offset = 0;  // in the old shard
  std::int64_t to_offset = 0;    // in the new shard
  std::int64_t numel = 0;
};
std::vector<ShardPiece> pieces_of(const ShardLayout& from, const ShardLayout& to, int rank, std::size_t bucket);

// The old ranks whose shards new rank `rank` needs, over every bucket, in increasing order.
std::vector<int> source_ranks(const ShardLayout& from, const ShardLayout& to, int rank);

}  // namespace dtrain::runtime
