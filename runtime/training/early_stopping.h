#pragma once
// Early stopping on the evaluation metric: stop after `patience` epochs without an improvement of min_delta. Every
// rank decides from the same reduced evaluation figures, so every rank stops after the same epoch.

#include <cstdint>

#include "runtime/training/evaluation.h"
#include "runtime/training/training_state.h"

namespace dtrain::runtime {

enum class EarlyStoppingMetric { kAccuracy, kLoss };
const char* to_string(EarlyStoppingMetric metric);  // "accuracy", "loss"

struct EarlyStoppingOptions {
  int patience = 0;  // 0: off
  EarlyStoppingMetric metric = EarlyStoppingMetric::kAccuracy;
  double min_delta = 0;
};

class EarlyStopping {
 public:
  // Throws std::invalid_argument naming the offending option.
  explicit EarlyStopping(EarlyStoppingOptions options);
  bool enabled() const { return options_.patience > 0; }
  // After an epoch's evaluation: records it in `state` and returns true when training should stop.
  bool should_stop(const EvalResult& result, EarlyStoppingState& state) const;
  const EarlyStoppingOptions& options() const { return options_; }

 private:
  EarlyStoppingOptions options_;
};

}  // namespace dtrain::runtime
