#include "runtime/training/grad_scaler.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <stdexcept>

namespace dtrain::runtime {

GradScaler::GradScaler(GradScalerOptions options) : options_(options), scale_(options.init_scale) {
  if (!(options_.init_scale > 0)) throw std::invalid_argument("loss scale: initial scale must be positive");
  if (!(options_.growth_factor > 1)) throw std::invalid_argument("loss scale: growth factor must be > 1");
  if (!(options_.backoff_factor > 0 && options_.backoff_factor < 1)) {
    throw std::invalid_argument("loss scale: backoff factor must be in (0, 1)");
  }
  if (options_.growth_interval < 1) throw std::invalid_argument("loss scale: growth interval must be >= 1");
  if (!options_.enabled) scale_ = 1.0;
}

at::Tensor GradScaler::scale_loss(const at::Tensor& loss) const {
  return enabled() ? loss * scale_ : loss;
}

void GradScaler::update(bool found_inf) {
  if (!enabled()) return;
  if (found_inf) {
    scale_ *= options_.backoff_factor;
    clean_steps_ = 0;
  } else if (++clean_steps_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    clean_steps_ = 0;
  }
}

void GradScaler::restore(double scale, std::int64_t clean_steps) {
  if (!(scale > 0) || clean_steps < 0) {
    throw std::invalid_argument(
        fmt::format("loss scale state is invalid (scale {}, clean steps {})", scale, clean_steps));
  }
  scale_ = scale;
  clean_steps_ = clean_steps;
}

}  // namespace dtrain::runtime
