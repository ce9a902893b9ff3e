#include "runtime/observability/activation_meter.h"

#include <algorithm>

namespace dtrain::runtime {

void ActivationMeter::forward_ended() {
  peak_ = std::max(peak_, device_.held_bytes() - at_step_start_);
}

}  // namespace dtrain::runtime
