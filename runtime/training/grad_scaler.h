#pragma once
// Dynamic loss scaling for fp16/bf16 training (the GradScaler rule): multiply the loss by `scale` before backward;
// after the gradients are reduced, skip the step and halve the scale if any gradient is inf/NaN, otherwise unscale and
// step, and double the scale after `growth_interval` clean steps in a row.
// Note [Loss scale agreement]: the found-inf decision comes from the reduced gradients (Reducer::check_gradients),
// which are bit-identical on every rank, so every rank skips the same steps and the scales never drift apart.

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace dtrain::runtime {

struct GradScalerOptions {
  bool enabled = false;
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  std::int64_t growth_interval = 2000;
};

class GradScaler {
 public:
  // Throws std::invalid_argument naming the offending option.
  explicit GradScaler(GradScalerOptions options);

  bool enabled() const { return options_.enabled; }
  double scale() const { return scale_; }
  std::int64_t clean_steps() const { return clean_steps_; }
  // loss * scale (the loss itself when disabled).
  at::Tensor scale_loss(const at::Tensor& loss) const;
  // After a step: found_inf backs the scale off and restarts the count; a clean step may grow it.
  void update(bool found_inf);

  // For checkpoints.
  void restore(double scale, std::int64_t clean_steps);

 private:
  GradScalerOptions options_;
  double scale_;
  std::int64_t clean_steps_ = 0;
};

}  // namespace dtrain::runtime
