#pragma once
// What runs around each block of a model made of blocks (SequentialModel): ZeRO stage 3 gathers a block's
// parameters just before it runs and frees them after (runtime/data_parallel/parameter_gatherer.h).

#include <ATen/core/Tensor.h>

#include <cstddef>

namespace dtrain::runtime {

class BlockHooks {
 public:
  virtual ~BlockHooks() = default;
  // Before block `block` (its position in the model) runs forward, or replays it (activation checkpointing).
  virtual void before_forward(std::size_t block) = 0;
  // After it ran, with its output; returns the output, to which backward hooks may be attached.
  virtual at::Tensor after_forward(std::size_t block, const at::Tensor& output) = 0;
};

}  // namespace dtrain::runtime
