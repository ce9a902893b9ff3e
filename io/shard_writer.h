#pragma once
// Writes a sharded dataset: shard files of consecutive samples plus the manifest (docs/shard-format.md).
// Note [Atomic datasets]: each shard is written under a temporary name and renamed when complete; an existing manifest
// is removed before the first shard is written and the new one is written last, so an interrupted conversion never
// leaves a folder that looks like a complete dataset.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/manifest.h"

namespace dtrain::io {

struct ShardWriterOptions {
  std::int64_t samples_per_shard = 10000;
  std::int64_t chunk_samples = 64;  // compressed shards: HDF5 chunk length along the sample dimension
  int gzip_level = 0;               // 0: no compression (contiguous datasets), 1-9: deflate
};

// Fills `out` with samples [first, first + count) of dataset `dataset` (an index into the manifest's datasets), in
// that dataset's dtype, C order.
using SampleSource = std::function<void(std::size_t dataset, std::int64_t first, std::int64_t count, void* out)>;
// Called after each shard with the samples written so far.
using Progress = std::function<void(std::int64_t written, std::int64_t total)>;

// Writes manifest.samples samples of manifest.datasets into `folder` (created if missing); fills manifest.shards.
void write_sharded_dataset(const std::string& folder, Manifest manifest, const SampleSource& source,
                           const ShardWriterOptions& options, const Progress& progress = {});

}  // namespace dtrain::io
