#include "runtime/training/optimizer_update.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <stdexcept>

#include "comm/clock.h"
#include "runtime/observability/timeline.h"

namespace dtrain::runtime {

OptimizerUpdate::OptimizerUpdate(UpdateOptions options, ModelOptimizer& optimizer, const LrSchedule& lr,
                                 GradScaler& scaler, comm::ControlPlane& world, comm::ControlPlane* pipeline)
    : options_(options), optimizer_(optimizer), lr_(lr), scaler_(scaler), world_(world), pipeline_(pipeline) {}

bool OptimizerUpdate::apply(Reducer& gradients, std::int64_t step, double local_loss) {
  const Reducer::GradientChecks checks = gradients.check_gradients(
      scaler_.enabled() ? std::optional<double>(1.0 / scaler_.scale()) : std::nullopt, options_.clip_grad_norm > 0);
  bool found_inf = checks.non_finite;
  double norm = checks.norm;
  if (pipeline_ != nullptr) {
    const std::vector<double> figures = pipeline_->sum({found_inf ? 1.0 : 0.0, norm * norm});
    found_inf = figures[0] > 0;
    norm = std::sqrt(figures[1]);
  }
  if (found_inf && !scaler_.enabled() && !options_.skip_non_finite) {
    throw std::runtime_error(fmt::format(
        "non-finite gradient at step {}: {}; stopping on every rank (use --skip-non-finite to skip such steps instead)",
        step, where_losses_were_not_finite(local_loss)));
  }
  if (!found_inf) {
    if (options_.clip_grad_norm > 0 && norm > options_.clip_grad_norm) {
      gradients.scale_gradients(options_.clip_grad_norm / (norm + 1e-6));
    }
    optimizer_.set_learning_rate(lr_.lr_at(step));
    optimizer_.step();
  }
  optimizer_.zero_grad();
  scaler_.update(found_inf);
  return found_inf;
}

// Collective over the world, on the way to an error only: "the loss was nan on rank 1" or, if every rank's loss was
// finite, that a gradient overflowed.
std::string OptimizerUpdate::where_losses_were_not_finite(double local_loss) {
  const std::vector<double> losses = world_.allgather_value(local_loss);
  std::vector<std::string> ranks;
  for (std::size_t r = 0; r < losses.size(); ++r) {
    if (!std::isfinite(losses[r])) ranks.push_back(fmt::format("{} on rank {}", losses[r], r));
  }
  if (ranks.empty()) return "the loss was finite on every rank, a gradient overflowed";
  return fmt::format("the loss was {}", fmt::join(ranks, ", "));
}

bool finish_and_apply(Reducer& gradients, OptimizerUpdate& update, std::int64_t step, double local_loss,
                      StepTimes& times) {
  auto t = comm::SteadyClock::now();
  gradients.finish_backward();
  times.comm += comm::seconds_since(t);
  Timeline::instance().add("exposed communication", "communication", t, comm::SteadyClock::now());

  t = comm::SteadyClock::now();
  const bool skipped = update.apply(gradients, step, local_loss);
  times.optimizer += comm::seconds_since(t);
  Timeline::instance().add("optimizer", "compute", t, comm::SteadyClock::now());
  return skipped;
}

}  // namespace dtrain::runtime
