#pragma once
// A DataFeed over tensors already in memory (every rank holds the whole data set), dealt out by the distributed
// sampler exactly as the HDF5 feed is: for tests, small data sets, and data a program makes itself.

#include <ATen/core/Tensor.h>

#include "runtime/data/data_feed.h"
#include "sampler/distributed_sampler.h"

namespace dtrain::runtime {

class TensorDataFeed final : public DataFeed {
 public:
  // inputs [N, ...] (converted to float32; integers, token ids, to int64), targets [N], or [N, L] for next-token
  // models (converted to int64);
  // `options.dataset_size` is set from N.
  TensorDataFeed(at::Tensor inputs, at::Tensor targets, std::int64_t classes, sampler::SamplerOptions options);

  void start_epoch(std::int64_t epoch) override { sampler_.start_epoch(epoch); }
  std::optional<Batch> next() override;
  std::string state() const override;
  void restore(const std::string& state) override;
  std::int64_t epoch() const override { return sampler_.epoch(); }
  std::int64_t batches_left() const override { return sampler_.batches_left(); }
  std::int64_t batches_per_epoch() const override { return sampler_.batches_per_epoch(); }
  std::int64_t global_batch_size() const override;
  std::vector<std::int64_t> sample_shape() const override;
  std::int64_t classes() const override { return classes_; }

 private:
  at::Tensor inputs_;
  at::Tensor targets_;
  std::int64_t classes_;
  sampler::DistributedSampler sampler_;
};

}  // namespace dtrain::runtime
