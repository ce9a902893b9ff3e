#include "runtime/observability/activation_meter.h"

#include <algorithm>

namespace dtrain::runtime {

void ActivationMeter::step_begins() {
  ++steps_;
  at_step_start_ = device_.held_bytes();
}

void ActivationMeter::forward_ended() {
  std::int64_t& peak = steps_ == 1 ? first_step_peak_ : peak_;
  peak = std::max(peak, device_.held_bytes() - at_step_start_);
}

}  // namespace dtrain::runtime
