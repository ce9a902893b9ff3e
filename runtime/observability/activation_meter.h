#pragma once
// Note [Activation bytes]
// What the activations of a run cost, measured, not estimated: at the start of each step the meter notes the memory
// held on the compute device (ComputeDevice::held_bytes: the caching allocator's tensors on CUDA, malloc's in-use
// bytes on the CPU), and after every forward of a micro-batch the memory held above that. That is what autograd
// keeps for the backwards still to come (of every micro-batch in flight, in a pipeline), with what the forward left
// allocated besides (its output and loss, autocast's weight copies, a block gathered ahead in ZeRO stage 3); the
// temporaries that live only inside one operation are gone by then and are not counted. The largest figure over the
// run's steps but the first is peak_bytes(): the first step's forward also allocates what libraries set up once and
// keep (BLAS and thread-pool buffers, autograd's engine: 0.8 MB more under LibTorch 2.11 in
// tests/runtime/observability/test_activation_meter.cpp), so it counts only in a run of one step. What
// --activation-checkpointing saves shows there (docs/memory.md).

#include <cstdint>

#include "runtime/device/compute_device.h"

namespace dtrain::runtime {

class ActivationMeter {
 public:
  explicit ActivationMeter(const ComputeDevice& device) : device_(device) {}
  void step_begins();
  void forward_ended();
  // The most bytes held above a step's start after any forward of the steps so far but the first (of the first step
  // while it is the only one; 0 before it).
  std::int64_t peak_bytes() const { return steps_ > 1 ? peak_ : first_step_peak_; }

 private:
  const ComputeDevice& device_;
  std::int64_t steps_ = 0;
  std::int64_t at_step_start_ = 0;
  std::int64_t first_step_peak_ = 0;
  std::int64_t peak_ = 0;
};

}  // namespace dtrain::runtime
