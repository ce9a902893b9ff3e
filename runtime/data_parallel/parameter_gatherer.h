#pragma once
// Note [Parameter shards]
// ZeRO stage 3 (--zero-stage 3): between uses, rank r of the R replicas holds only shard r of every block's
// parameters (16/R bytes per parameter with Adam, instead of 4 + 12/R in stage 2).
//  - A block of the model (an entry of a SequentialModel) is one gradient bucket (ReducerOptions::bucket_groups),
//    so the flat bucket of its parameters (Note [Optimizer shards]) is what is gathered and freed at once.
//  - Forward: before block i runs, its all-gather is waited for and block i+1's is started (prefetch, overlapped
//    with block i's compute); after block i ran, its memory is freed. The parameters stay the same tensors: only
//    their storage loses its memory, so every view autograd saved of them sees the values again once gathered.
//  - Backward: a hook on block i's output gathers block i again before its backward runs (and starts block i-1's
//    gather); when the last of block i's parameters got its gradient (a hook on each gradient accumulator, after the
//    reducer's, which has then started the block's reduce-scatter) its memory is freed again.
//  - Every rank runs the same blocks in the same order, so the gathers and the reduce-scatters reach the
//    communicator in the same order everywhere. With activation checkpointing a block is gathered once more, for its
//    replay, which then goes the same way.
//  - Outside forward and backward nobody needs the whole model while training goes on: a checkpoint writes and reads
//    each rank's parameter shards (runtime/training/checkpoint.h). At the end of the run ShardedOptimizer::finish()
//    frees the optimizer state and the gradient shards and only then gathers every block, so the peak of a run is
//    never the whole model beside its training state; after Trainer::run() the parameters stay whole.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/data_parallel/reducer.h"
#include "runtime/data_parallel/sharded_optimizer.h"
#include "runtime/model/block_hooks.h"
#include "runtime/model/named_tensor.h"

namespace torch::autograd {
struct Node;
}

namespace dtrain::runtime {

class ParameterGatherer final : public BlockHooks {
 public:
  // `blocks`: the names of each block's parameters (TrainableModel::block_parameter_names), which were the bucket
  // groups of `reducer`; `parameters`: the model's; `optimizer`: built with shard_parameters over that reducer.
  ParameterGatherer(const std::vector<std::vector<std::string>>& blocks, const std::vector<NamedTensor>& parameters,
                    const Reducer& reducer, ShardedOptimizer& optimizer);
  ~ParameterGatherer() override;
  ParameterGatherer(const ParameterGatherer&) = delete;
  ParameterGatherer& operator=(const ParameterGatherer&) = delete;

  void before_forward(std::size_t block) override;
  at::Tensor after_forward(std::size_t block, const at::Tensor& output) override;

  // A hook on a gradient accumulator of bucket `bucket`: one more of its parameters has its gradient.
  void gradient_arrived(std::size_t bucket);

 private:
  ShardedOptimizer& optimizer_;
  std::vector<std::optional<std::size_t>> bucket_of_block_;  // blocks without trainable parameters have none
  std::vector<std::optional<std::size_t>> next_bucket_;      // of the next block with one, in forward order
  std::vector<std::optional<std::size_t>> previous_bucket_;  // of the previous one (next in backward)
  std::vector<std::size_t> parameters_in_bucket_;
  std::vector<std::size_t> gradients_arrived_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<std::uintptr_t> hook_keys_;
};

}  // namespace dtrain::runtime
