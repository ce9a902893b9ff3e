#pragma once
// Which global sample indices each rank reads, batch by batch: pure arithmetic on (options, epoch, position) — no
// communication, no LibTorch — so every rank computes its own share and all ranks agree without talking.
// docs/sampler.md specifies every step exactly, down to the random numbers.
//
// Note [Equal step counts]
// Every rank gets the same number of batches in an epoch, and batch k has the same size on every rank. The trainer
// and runtime/data/data_feed.h rely on it: every batch ends in collectives (the gradient allreduce, metric sums), so a
// rank with one batch more than the others would wait forever. The sampler guarantees it by construction: the global
// order is padded (repeating its first indices) or cut (drop_last) to a multiple of the world size, so every rank
// holds the same number of samples, and every rank cuts them into batches by the same rule (full batches of
// batch_size, then the shorter rest unless drop_last_batch). Resuming keeps it: the remaining samples are dealt out
// by the same rule. Nothing here may depend on the rank except which positions a rank takes.

#include <cstdint>
#include <optional>
#include <vector>

#include "sampler/sampler_state.h"

namespace dtrain::sampler {

enum class Mode : std::uint8_t {
  kTrain,  // padding repeats count as ordinary samples (as in PyTorch's DistributedSampler), or drop_last cuts them
  kEval,   // padding repeats are marked invalid, so metrics count every sample exactly once
};
const char* to_string(Mode mode);

struct SamplerOptions {
  std::int64_t dataset_size = 0;
  int world_size = 1;
  int rank = 0;
  std::int64_t batch_size = 1;  // per rank
  Mode mode = Mode::kTrain;
  bool shuffle = true;  // false: the global order is 0, 1, ..., dataset_size-1 in every epoch
  std::uint64_t seed = 0;
  bool drop_last = false;        // training: cut the global order to a multiple of world_size instead of padding it
  bool drop_last_batch = false;  // training: drop each rank's last batch of an epoch when it is short
  // Shard-local shuffling (needs shuffle), for data read shard by shard: indices are numbered shard after shard,
  // shard i holding shard_sizes[i] consecutive indices. The shard order is shuffled, then the samples within each
  // window of `window` consecutive positions of that shard-ordered sequence, so a stretch of the order touches few
  // shards.
  std::vector<std::int64_t> shard_sizes;
  std::int64_t window = 0;
};

// Throws std::invalid_argument, one line naming the offending option.
void validate(const SamplerOptions& options);

// The global order of `epoch`: a permutation of [0, dataset_size) that depends on dataset_size, shuffle, seed,
// shard_sizes and window only, never on world_size, rank, mode or batch sizes. Validates the options.
std::vector<std::int64_t> global_order(const SamplerOptions& options, std::int64_t epoch);

// One rank's batch. Only the last batch of an epoch can be shorter than batch_size, and only evaluation marks
// samples invalid (at most one per rank and epoch: the padding is shorter than the world size).
struct Batch {
  std::vector<std::int64_t> indices;  // global sample indices
  std::vector<std::uint8_t> valid;    // 1: a real sample; 0: evaluation padding, which metrics must not count
};

// This rank's batches of one epoch at a time, in order, with a position a checkpoint can store.
class DistributedSampler {
 public:
  // Validates the options and starts epoch 0 at position 0.
  explicit DistributedSampler(SamplerOptions options);

  // Starts `epoch` after its first `position` global samples were consumed: 0 for a fresh epoch, a checkpoint's
  // position to resume (dataset_size: the epoch is complete). See Note [Equal step counts].
  void start_epoch(std::int64_t epoch, std::int64_t position = 0);
  // start_epoch(state.epoch, state.position) after checking that the state belongs to this global order. Throws
  // std::invalid_argument naming the field that does not fit.
  void restore(const SamplerState& state);
  SamplerState state() const;

  // This rank's next batch, or nothing once the epoch is over.
  std::optional<Batch> next();

  std::int64_t epoch() const { return epoch_; }
  // Samples of the global order consumed by all ranks together: the same on every rank, and dataset_size once no
  // batch is left.
  std::int64_t position() const;
  // Batches per rank in an epoch read from its start. The same on every rank.
  std::int64_t batches_per_epoch() const;
  // Batches this rank has still to read in the current epoch. The same on every rank.
  std::int64_t batches_left() const { return batches_ - batches_done_; }
  const SamplerOptions& options() const { return options_; }

 private:
  // Samples per rank and batches per rank when `remaining` samples of the order are left to deal out.
  std::int64_t share(std::int64_t remaining) const;
  std::int64_t batches_for(std::int64_t share) const;

  SamplerOptions options_;
  std::uint64_t layout_;
  std::int64_t epoch_ = 0;
  std::int64_t start_ = 0;          // the position the epoch was started at
  std::vector<std::int64_t> mine_;  // this rank's samples of the epoch from start_, in order
  std::int64_t first_invalid_ = 0;  // mine_[i] for i >= first_invalid_ is evaluation padding
  std::int64_t cursor_ = 0;         // samples of mine_ handed out
  std::int64_t batches_ = 0;
  std::int64_t batches_done_ = 0;
};

}  // namespace dtrain::sampler
