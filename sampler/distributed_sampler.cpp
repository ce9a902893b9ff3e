#include "sampler/distributed_sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <utility>

#include "sampler/random.h"

namespace dtrain::sampler {
namespace {

// Fingerprint of the options that shape the global order besides dataset_size and seed, which SamplerState names
// on their own. Specified in docs/sampler.md and fixed: changing it would make every older checkpoint unrestorable.
std::uint64_t layout_of(const SamplerOptions& options) {
  std::uint64_t hash = mix64(options.shuffle ? 1 : 2);
  hash = mix64(hash ^ static_cast<std::uint64_t>(options.window));
  for (const std::int64_t size : options.shard_sizes) hash = mix64(hash ^ static_cast<std::uint64_t>(size));
  return hash;
}

SamplerOptions validated(SamplerOptions options) {
  validate(options);
  return options;
}

void check_epoch(std::int64_t epoch) {
  if (epoch < 0) throw std::invalid_argument(fmt::format("sampler epoch must be >= 0 (got {})", epoch));
}

// Shard order first, then each window in turn, all from the one epoch generator (docs/sampler.md).
void shard_local_shuffle(const SamplerOptions& options, SplitMix64& rng, std::vector<std::int64_t>& order) {
  const auto shard_count = static_cast<std::int64_t>(options.shard_sizes.size());
  std::vector<std::int64_t> first_index(options.shard_sizes.size());
  std::exclusive_scan(options.shard_sizes.begin(), options.shard_sizes.end(), first_index.begin(), std::int64_t{0});
  std::vector<std::int64_t> shards(options.shard_sizes.size());
  std::iota(shards.begin(), shards.end(), std::int64_t{0});
  shuffle(shards.data(), shard_count, rng);

  auto out = order.begin();
  for (const std::int64_t shard : shards) {
    std::iota(out, out + options.shard_sizes[shard], first_index[shard]);
    out += options.shard_sizes[shard];
  }
  const std::int64_t n = options.dataset_size;
  for (std::int64_t begin = 0; begin < n;) {
    const std::int64_t count = std::min(options.window, n - begin);
    shuffle(order.data() + begin, count, rng);
    begin += count;
  }
}

}  // namespace

const char* to_string(Mode mode) {
  switch (mode) {
    case Mode::kTrain:
      return "train";
    case Mode::kEval:
      return "eval";
  }
  return "?";
}

void validate(const SamplerOptions& o) {
  using std::invalid_argument;
  if (o.dataset_size < 1) {
    throw invalid_argument(fmt::format("sampler dataset_size must be >= 1 (got {})", o.dataset_size));
  }
  if (o.world_size < 1) throw invalid_argument(fmt::format("sampler world_size must be >= 1 (got {})", o.world_size));
  if (o.rank < 0 || o.rank >= o.world_size) {
    throw invalid_argument(fmt::format("sampler rank {} is outside [0, world_size {})", o.rank, o.world_size));
  }
  if (o.batch_size < 1) throw invalid_argument(fmt::format("sampler batch_size must be >= 1 (got {})", o.batch_size));
  if (o.mode == Mode::kEval && (o.drop_last || o.drop_last_batch)) {
    throw invalid_argument(fmt::format("sampler {} drops samples, but mode eval counts every sample exactly once",
                                       o.drop_last ? "drop_last" : "drop_last_batch"));
  }
  if (o.drop_last && o.dataset_size < o.world_size) {
    throw invalid_argument(fmt::format("sampler drop_last with dataset_size {} < world_size {} leaves no sample",
                                       o.dataset_size, o.world_size));
  }
  const std::int64_t per_rank =
      o.drop_last ? o.dataset_size / o.world_size : (o.dataset_size + o.world_size - 1) / o.world_size;
  if (o.drop_last_batch && per_rank < o.batch_size) {
    throw invalid_argument(fmt::format(
        "sampler drop_last_batch with batch_size {} > {} samples per rank leaves no batch", o.batch_size, per_rank));
  }
  if (o.shard_sizes.empty()) {
    if (o.window != 0) throw invalid_argument(fmt::format("sampler window {} needs shard_sizes", o.window));
    return;
  }
  if (!o.shuffle) throw invalid_argument("sampler shard_sizes need shuffle (without it the order is 0, 1, 2, ...)");
  std::int64_t total = 0;
  for (std::size_t i = 0; i < o.shard_sizes.size(); ++i) {
    const std::int64_t size = o.shard_sizes[i];
    if (size < 1) throw invalid_argument(fmt::format("sampler shard_sizes[{}] must be >= 1 (got {})", i, size));
    if (size > o.dataset_size - total) {
      throw invalid_argument(fmt::format("sampler shard_sizes add up to more than dataset_size {} (at shard_sizes[{}])",
                                         o.dataset_size, i));
    }
    total += size;
  }
  if (total != o.dataset_size) {
    throw invalid_argument(
        fmt::format("sampler shard_sizes add up to {}, not to dataset_size {}", total, o.dataset_size));
  }
  if (o.window < 1)
    throw invalid_argument(fmt::format("sampler window must be >= 1 with shard_sizes (got {})", o.window));
}

std::vector<std::int64_t> global_order(const SamplerOptions& options, std::int64_t epoch) {
  validate(options);
  check_epoch(epoch);
  std::vector<std::int64_t> order(options.dataset_size);
  if (!options.shuffle) {
    std::iota(order.begin(), order.end(), std::int64_t{0});
    return order;
  }
  SplitMix64 rng = epoch_generator(options.seed, static_cast<std::uint64_t>(epoch));
  if (!options.shard_sizes.empty()) {
    shard_local_shuffle(options, rng, order);
    return order;
  }
  std::iota(order.begin(), order.end(), std::int64_t{0});
  shuffle(order.data(), options.dataset_size, rng);
  return order;
}

DistributedSampler::DistributedSampler(SamplerOptions options)
    : options_(validated(std::move(options))), layout_(layout_of(options_)) {
  start_epoch(0);
}

std::int64_t DistributedSampler::share(std::int64_t remaining) const {
  const std::int64_t world = options_.world_size;
  return options_.drop_last ? remaining / world : (remaining + world - 1) / world;
}

std::int64_t DistributedSampler::batches_for(std::int64_t share) const {
  const std::int64_t b = options_.batch_size;
  return options_.drop_last_batch ? share / b : (share + b - 1) / b;
}

void DistributedSampler::start_epoch(std::int64_t epoch, std::int64_t position) {
  check_epoch(epoch);
  const std::int64_t n = options_.dataset_size;
  if (position < 0 || position > n) {
    throw std::invalid_argument(fmt::format("sampler position {} is outside [0, dataset_size {}]", position, n));
  }
  // Rank r takes positions position + r, position + r + world, ... of the order extended cyclically (position p
  // holds order[p mod n]), so the first ranks' last samples repeat the order's first indices. See
  // Note [Equal step counts]: share() is the same on every rank.
  const std::vector<std::int64_t> order = global_order(options_, epoch);
  const std::int64_t count = share(n - position);
  mine_.resize(count);
  first_invalid_ = count;
  for (std::int64_t k = 0; k < count; ++k) {
    const std::int64_t p = position + options_.rank + k * options_.world_size;
    mine_[k] = order[p % n];
    if (p >= n && options_.mode == Mode::kEval) first_invalid_ = std::min(first_invalid_, k);
  }
  epoch_ = epoch;
  start_ = position;
  cursor_ = 0;
  batches_ = batches_for(count);
  batches_done_ = 0;
}

void DistributedSampler::restore(const SamplerState& state) {
  if (state.dataset_size != options_.dataset_size) {
    throw std::invalid_argument(fmt::format("sampler state has dataset_size {}, but this sampler's is {}",
                                            state.dataset_size, options_.dataset_size));
  }
  if (state.seed != options_.seed) {
    throw std::invalid_argument(
        fmt::format("sampler state has seed {}, but this sampler's is {}", state.seed, options_.seed));
  }
  if (state.layout != layout_) {
    throw std::invalid_argument(
        fmt::format("sampler state has layout {}, but this sampler's is {}: shuffle, shard_sizes or window changed",
                    state.layout, layout_));
  }
  start_epoch(state.epoch, state.position);
}

SamplerState DistributedSampler::state() const {
  SamplerState state;
  state.epoch = epoch_;
  state.position = position();
  state.dataset_size = options_.dataset_size;
  state.seed = options_.seed;
  state.layout = layout_;
  return state;
}

std::optional<Batch> DistributedSampler::next() {
  if (batches_done_ == batches_) return std::nullopt;
  const std::int64_t size = std::min(options_.batch_size, static_cast<std::int64_t>(mine_.size()) - cursor_);
  Batch batch;
  batch.indices.assign(mine_.begin() + cursor_, mine_.begin() + cursor_ + size);
  batch.valid.resize(size);
  for (std::int64_t i = 0; i < size; ++i) batch.valid[i] = cursor_ + i < first_invalid_ ? 1 : 0;
  cursor_ += size;
  ++batches_done_;
  return batch;
}

std::int64_t DistributedSampler::position() const {
  // While batches are left this rank has samples left (cursor_ < share), and start_ + world * (share - 1) <
  // dataset_size both when padding and with drop_last, so the count names a position of the order itself. At the end
  // padding would push it past dataset_size and drop_last leave it short; dataset_size says "complete" under any
  // world size.
  if (batches_left() == 0) return options_.dataset_size;
  return start_ + options_.world_size * cursor_;
}

std::int64_t DistributedSampler::batches_per_epoch() const {
  return batches_for(share(options_.dataset_size));
}

}  // namespace dtrain::sampler
