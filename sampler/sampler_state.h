#pragma once
// Where a run stands in its data: enough for a checkpoint to resume mid-epoch exactly, as a short string that fits
// in any checkpoint format. The position counts global samples, not this rank's, so the same state is valid on every
// rank and under another world size (docs/sampler.md, "Resuming").

#include <cstdint>
#include <string>

namespace dtrain::sampler {

struct SamplerState {
  std::int64_t epoch = 0;
  // Samples of the epoch's global order consumed by all ranks together; dataset_size once the epoch is complete.
  std::int64_t position = 0;
  // What the global order was computed from, so that a resume with another dataset or seed fails instead of
  // silently reading another order. layout fingerprints the rest: shuffle, shard_sizes and window.
  std::int64_t dataset_size = 0;
  std::uint64_t seed = 0;
  std::uint64_t layout = 0;

  bool operator==(const SamplerState& other) const;
  bool operator!=(const SamplerState& other) const { return !(*this == other); }
};

// "epoch=3 position=1024 dataset_size=60000 seed=42 layout=8841707400507832957"
std::string to_string(const SamplerState& state);
// The inverse of to_string. Throws std::invalid_argument naming the field that is missing, repeated, unknown or not
// a non-negative integer.
SamplerState parse_sampler_state(const std::string& text);

}  // namespace dtrain::sampler
