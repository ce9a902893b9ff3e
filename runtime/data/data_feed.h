#pragma once
// What the trainer consumes, one micro-batch at a time. A feed must give every rank of a run the same number of
// batches per epoch (see Note [Equal step counts] in sampler/distributed_sampler.h), or fail instead of letting the
// ranks run out of step.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dtrain::runtime {

struct Batch {
  at::Tensor inputs;   // float32 [n, sample shape...], or int64 token ids [n, L] for next-token models
  at::Tensor targets;  // int64, [n] (one class per sample) or [n, L] (the next token at every position)
  at::Tensor valid;    // bool, [n]: false marks evaluation padding, which metrics must not count
};

class DataFeed {
 public:
  virtual ~DataFeed() = default;
  // Starts `epoch` from its beginning.
  virtual void start_epoch(std::int64_t epoch) = 0;
  // The next batch of this rank in this epoch, or nothing at the end of the epoch.
  virtual std::optional<Batch> next() = 0;
  // Where the feed stands (epoch and global position), as a string a checkpoint stores; restore() continues from
  // there exactly, under any world size. restore() throws std::invalid_argument if the state belongs to other data.
  virtual std::string state() const = 0;
  virtual void restore(const std::string& state) = 0;
  virtual std::int64_t epoch() const = 0;
  // Batches this rank still has to read in the current epoch (the same on every rank).
  virtual std::int64_t batches_left() const = 0;
  // Batches per rank in a whole epoch (the same on every rank).
  virtual std::int64_t batches_per_epoch() const = 0;
  virtual std::int64_t global_batch_size() const = 0;
  virtual std::vector<std::int64_t> sample_shape() const = 0;
  virtual std::int64_t classes() const = 0;
};

}  // namespace dtrain::runtime
