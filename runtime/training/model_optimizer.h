#pragma once
// What an optimizer update steps: the model's parameters, with the gradients the reducer left. Every rank steps
// every parameter (ReplicatedOptimizer, --zero-stage 0), or each rank steps its shard and the shards are gathered
// (runtime/data_parallel/sharded_optimizer.h, ZeRO stages 1, 2 and 3). Either way every replica holds the same
// parameters after step() (in stage 3, the same shards, gathered a block at a time when the model runs).

#include <torch/optim/optimizer.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/training/optimizers.h"
#include "runtime/training/shard_layout.h"

namespace dtrain::runtime {

class ModelOptimizer {
 public:
  virtual ~ModelOptimizer() = default;
  virtual void set_learning_rate(double lr) = 0;
  // One update with the reduced gradients. Collective over the replicas when sharded.
  virtual void step() = 0;
  // Zeroes the gradients the next backward accumulates into.
  virtual void zero_grad() = 0;
  // The LibTorch optimizer whose state this rank keeps and a checkpoint holds: over every parameter, or over this
  // rank's shards.
  virtual torch::optim::Optimizer& optimizer() = 0;
  // Not sharded() when every rank keeps the whole state; otherwise how the state is cut over the replicas, which a
  // checkpoint of the shards records (and a resume on another number of ranks cuts again: Note [Re-sharding]).
  virtual ShardLayout shard_layout() const = 0;
  // ZeRO stage 3: this rank's shards of the parameters, which a checkpoint stores instead of the parameters (and a
  // resume writes into); empty for the other optimizers, whose parameters are whole.
  virtual std::vector<at::Tensor> parameter_shards() const { return {}; }
  // The run is over: from now on every parameter holds its whole trained value on every replica. Stage 3 first frees
  // the optimizer state and the gradient shards, which no step needs any more, so that the whole model takes their
  // memory, then gathers; no step may follow. Collective over the replicas; nothing to do for the other optimizers.
  virtual void finish() {}
  // Bytes of parameters this rank holds between steps.
  virtual std::int64_t parameter_bytes() const = 0;
};

class ReplicatedOptimizer final : public ModelOptimizer {
 public:
  ReplicatedOptimizer(const OptimizerOptions& options, const std::vector<at::Tensor>& parameters);
  void set_learning_rate(double lr) override;
  void step() override;
  void zero_grad() override;
  torch::optim::Optimizer& optimizer() override { return *optimizer_; }
  ShardLayout shard_layout() const override { return {}; }
  std::int64_t parameter_bytes() const override;

 private:
  std::vector<at::Tensor> parameters_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

}  // namespace dtrain::runtime
