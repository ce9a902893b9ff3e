#pragma once
// Where a run stands: everything besides tensors that a checkpoint saves so that a resumed run continues bit for bit.

#include <cstdint>
#include <optional>
#include <string>

namespace dtrain::runtime {

// Early stopping's memory (runtime/training/early_stopping.h).
struct EarlyStoppingState {
  std::optional<double> best_metric;  // none before the first evaluation
  std::int64_t epochs_without_improvement = 0;
};

struct TrainingState {
  std::int64_t step = 0;      // optimizer steps taken
  std::int64_t epoch = 0;     // the epoch being trained, or the next one to start
  bool mid_epoch = false;     // the training feed stands inside `epoch` (after a resume, or a stop by --max-steps)
  std::string sampler_state;  // the training feed's position (DataFeed::state)
  double loss_scale = 1.0;
  std::int64_t loss_scale_clean_steps = 0;
  EarlyStoppingState early_stopping;
  // Of a resumed checkpoint: the number of data-parallel replicas that wrote it (another number may resume it).
  int written_by_replicas = 0;
};

}  // namespace dtrain::runtime
