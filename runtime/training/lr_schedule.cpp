#include "runtime/training/lr_schedule.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace dtrain::runtime {

const char* to_string(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::kConstant:
      return "constant";
    case LrScheduleKind::kStep:
      return "step";
    case LrScheduleKind::kCosine:
      return "cosine";
  }
  return "?";
}

LrSchedule::LrSchedule(LrScheduleOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  if (!(o.base_lr > 0)) throw std::invalid_argument(fmt::format("learning rate must be positive (got {})", o.base_lr));
  if (o.warmup_steps < 0) throw std::invalid_argument("warm-up steps must be >= 0");
  if (o.kind == LrScheduleKind::kStep && o.step_size <= 0) throw std::invalid_argument("lr step size must be positive");
  if (o.kind == LrScheduleKind::kStep && !(o.gamma > 0 && o.gamma <= 1))
    throw std::invalid_argument("lr gamma must be in (0, 1]");
  if (o.kind == LrScheduleKind::kCosine && o.total_steps <= o.warmup_steps) {
    throw std::invalid_argument(
        fmt::format("cosine schedule needs total steps ({}) > warm-up steps ({})", o.total_steps, o.warmup_steps));
  }
  if (o.min_lr < 0 || o.min_lr > o.base_lr) throw std::invalid_argument("min lr must be in [0, lr]");
}

double LrSchedule::lr_at(std::int64_t step) const {
  const auto& o = options_;
  if (step < o.warmup_steps) return o.base_lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  const std::int64_t t = step - o.warmup_steps;
  if (o.kind == LrScheduleKind::kStep) return o.base_lr * std::pow(o.gamma, static_cast<double>(t / o.step_size));
  if (o.kind == LrScheduleKind::kCosine) {
    const double progress = std::min(1.0, static_cast<double>(t) / static_cast<double>(o.total_steps - o.warmup_steps));
    return o.min_lr + 0.5 * (o.base_lr - o.min_lr) * (1.0 + std::cos(M_PI * progress));
  }
  return o.base_lr;
}

}  // namespace dtrain::runtime
