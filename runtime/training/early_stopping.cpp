#include "runtime/training/early_stopping.h"

#include <cmath>
#include <stdexcept>

namespace dtrain::runtime {

const char* to_string(EarlyStoppingMetric metric) {
  return metric == EarlyStoppingMetric::kAccuracy ? "accuracy" : "loss";
}

EarlyStopping::EarlyStopping(EarlyStoppingOptions options) : options_(options) {
  if (options_.patience < 0) throw std::invalid_argument("--early-stopping-patience must be >= 0");
}

bool EarlyStopping::should_stop(const EvalResult& result, EarlyStoppingState& state) const {
  if (!enabled()) return false;
  const bool by_accuracy = options_.metric == EarlyStoppingMetric::kAccuracy;
  const double metric = by_accuracy ? result.accuracy : result.loss;
  const bool improved = !state.best_metric || std::isnan(*state.best_metric) ||
                        (by_accuracy ? metric > *state.best_metric + options_.min_delta
                                     : metric < *state.best_metric - options_.min_delta);
  if (improved) {
    state.best_metric = metric;
    state.epochs_without_improvement = 0;
    return false;
  }
  return ++state.epochs_without_improvement >= options_.patience;
}

}  // namespace dtrain::runtime
