#pragma once
// Activation checkpointing (--activation-checkpointing): a block runs its forward without keeping the activations
// autograd would save, and recomputes them when backward reaches it. LibTorch C++ has no torch::utils::checkpoint,
// so this is a node of its own in the autograd graph:
//  - forward: the block runs under no-grad; its output gets a CheckpointedBlock node as its history, which holds only
//    the block's input and the state needed to replay it;
//  - backward: the node replays the forward with gradients on, the random generator of the input's device set to
//    the state it had before the first forward (dropout draws the same mask) and autocast as it was, then runs
//    backward through the replay: the parameters' gradients accumulate as without checkpointing (the reducer's
//    hooks fire there) and the input's gradient goes on down the graph. The generator is put back afterwards, so the
//    run draws the same random numbers as a run without checkpointing: losses and weights are bit-identical.

#include <ATen/core/Tensor.h>

#include <functional>

namespace dtrain::runtime {

using Block = std::function<at::Tensor(const at::Tensor&)>;

// block(input), with its activations recomputed in backward instead of kept.
at::Tensor checkpointed(const Block& block, const at::Tensor& input);

}  // namespace dtrain::runtime
