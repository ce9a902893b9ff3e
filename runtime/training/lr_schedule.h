#pragma once
// Learning-rate schedules as pure functions of the optimizer step, so a resumed run continues on the same curve.

#include <cstdint>
#include <string>

namespace dtrain::runtime {

enum class LrScheduleKind { kConstant, kStep, kCosine };
const char* to_string(LrScheduleKind kind);  // "constant", "step", "cosine"

struct LrScheduleOptions {
  LrScheduleKind kind = LrScheduleKind::kConstant;
  double base_lr = 0.01;
  std::int64_t warmup_steps = 0;  // linear ramp from base_lr/warmup_steps to base_lr, before any schedule
  std::int64_t step_size = 1000;  // step: multiply by gamma every step_size steps (after warm-up)
  double gamma = 0.1;
  std::int64_t total_steps = 0;  // cosine: decays to min_lr at total_steps
  double min_lr = 0.0;
};

class LrSchedule {
 public:
  // Throws std::invalid_argument naming the offending field.
  explicit LrSchedule(LrScheduleOptions options);
  // The learning rate for optimizer step `step` (0-based).
  double lr_at(std::int64_t step) const;

 private:
  LrScheduleOptions options_;
};

}  // namespace dtrain::runtime
