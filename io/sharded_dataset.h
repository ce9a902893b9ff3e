#pragma once
// Reads samples of a sharded dataset by global index. Not thread-safe, and Debian's HDF5 is not either: one thread
// (the prefetcher's) makes every HDF5 call of a process.
// Reads are chunk-aware: the requested indices are sorted, duplicates read once, and each shard's share becomes one
// H5Dread of a union of hyperslabs (one per contiguous run), so HDF5 reads each chunk once.
// Note [Collective reads]: with ReadOptions::collective every rank opens the shards together through MPI-IO and every
// read() is collective: each rank must call read() the same number of times with the same dataset (the sampler's
// equal step counts give that); a rank that needs nothing from a shard still joins that shard's read with an empty
// selection.

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/manifest.h"

namespace dtrain::io {

struct ReadOptions {
  bool collective = false;
  MPI_Comm comm = MPI_COMM_NULL;  // collective mode: the ranks that read together (duplicated internally)
  bool verify_checksums = false;  // read every shard once at open and compare its CRC-32s with the manifest
};

class ShardedDataset {
 public:
  // Opens `folder` and checks every shard against the manifest (present, readable, the datasets named in `datasets`
  // with the manifest's dtype and shape and the shard's sample count). Throws DataError naming the file and the
  // problem; in collective mode every rank throws if any rank finds a problem.
  ShardedDataset(const std::string& folder, const std::vector<std::string>& datasets, ReadOptions options = {});
  ~ShardedDataset();
  ShardedDataset(const ShardedDataset&) = delete;
  ShardedDataset& operator=(const ShardedDataset&) = delete;

  const Manifest& manifest() const;
  // Samples `indices` (any order, repeats allowed) of `dataset` into `out`, which holds indices.size() samples.
  void read(const std::string& dataset, const std::vector<std::int64_t>& indices, void* out);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dtrain::io
