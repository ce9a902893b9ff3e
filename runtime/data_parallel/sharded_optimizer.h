#pragma once
// Note [Optimizer shards]
// ZeRO stages 1 and 2 (--zero-stage, DeepSpeed's numbering): rank r of the R replicas keeps the optimizer state of
// shard r of every gradient bucket only (Note [Gradient buckets]: each bucket is padded to R equal shards), so
// Adam's 8 bytes of state per parameter become 8/R.
//  - The parameters are re-seated into one flat tensor per bucket, laid out exactly like the bucket's gradients: a
//    shard of the flat parameters and the gradient shard the reducer leaves (a view into the allreduced bucket in
//    stage 1, the reduce-scatter's output in stage 2) are the same elements.
//  - The LibTorch optimizer is built over this rank's parameter shards, each with its gradient shard as .grad. SGD,
//    Adam and AdamW are element-wise, so stepping the shards is stepping the parameters; the result equals stage 0's.
//  - After the step, every bucket's flat parameters are all-gathered in place, so every replica holds the same
//    updated weights before the next forward.
//  - The decisions before the step (found-inf, the global norm, clipping) come from the reducer: over whole buckets
//    in stage 1, summed over the shards in stage 2; the same on every rank either way.
//  - The layout is fixed when the optimizer is built, so the reducer must not rebuild its buckets (the trainer
//    turns rebuilding off); a checkpoint keeps each rank's shard and the layout, which a resume on the same buckets
//    re-cuts if its number of ranks differs (Note [Re-sharding] in runtime/training/shard_layout.h).
//  - Stage 3 (shard_parameters) keeps the parameter shards in tensors of their own and the flat buckets without
//    memory, except from start_gather(b) to release(b) (Note [Parameter shards]); the step updates the shards only.

#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "runtime/data_parallel/reducer.h"
#include "runtime/training/model_optimizer.h"

namespace dtrain::runtime {

class ShardedOptimizer final : public ModelOptimizer {
 public:
  // `reducer` averages the gradients of the model's trainable parameters over `replicas` (its communicator). Moves
  // those parameters into the flat per-bucket tensors. Throws std::invalid_argument if the reducer's plan can still
  // change.
  // With `shard_parameters` (ZeRO stage 3), frees every bucket's full parameters once the shards are taken.
  ShardedOptimizer(const OptimizerOptions& options, Reducer& reducer, comm::Communicator& replicas,
                   bool shard_parameters = false);

  void set_learning_rate(double lr) override;
  void step() override;
  void zero_grad() override;
  torch::optim::Optimizer& optimizer() override;
  ShardLayout shard_layout() const override { return layout_; }
  std::vector<at::Tensor> parameter_shards() const override;
  void finish() override;
  std::int64_t parameter_bytes() const override;

  // Stage 3. Collective over the replicas, in the same order on every rank. start_gather(b) gives bucket b's
  // parameters their memory and starts all-gathering the shards into it; wait_gathered(b) returns once they hold
  // their values (starting the gather if needed); release(b) frees them (not after finish()).
  void start_gather(std::size_t bucket);
  void wait_gathered(std::size_t bucket);
  void release(std::size_t bucket);

 private:
  enum class Held { kShard, kGathering, kWhole };

  Reducer& reducer_;
  comm::Communicator& replicas_;
  bool shard_parameters_;
  std::vector<at::Tensor> parameters_;  // the model's, now views into flat_
  std::vector<at::Tensor> flat_;        // per bucket: the parameters in bucket order, padded to R shards
  std::vector<at::Tensor> shards_;      // per bucket: this rank's shard of flat_ (what the optimizer steps)
  std::vector<Held> held_;              // stage 3: what each bucket holds now
  std::vector<comm::WorkPtr> gathers_;  // stage 3: the all-gathers in flight
  bool finished_ = false;               // finish() was called
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  ShardLayout layout_;
};

}  // namespace dtrain::runtime
