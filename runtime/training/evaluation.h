#pragma once
// Evaluation: the model's loss and accuracy on the evaluation feed, every real sample counted once across ranks
// (the sampler's padding is left out), and its report.

#include <cstdint>

#include "comm/control_plane.h"
#include "runtime/data/data_feed.h"
#include "runtime/model/model.h"
#include "runtime/observability/progress_reporter.h"
#include "runtime/training/training_step.h"

namespace dtrain::runtime {

struct EvalResult {
  double loss = 0;               // mean cross-entropy per prediction (nats)
  double accuracy = 0;           // share of correct predictions
  std::int64_t samples = 0;      // real samples counted, padding excluded
  std::int64_t predictions = 0;  // samples x predictions per sample (next-token models predict every position)
};

// Collective over `world`: runs `step`'s prediction (in eval mode, without gradients) over one epoch of `feed` and
// sums the figures of every rank.
EvalResult evaluate(TrainingStep& step, TrainableModel& model, DataFeed& feed, comm::ControlPlane& world);

// "epoch 3: eval loss 0.31 (...), accuracy 0.90 (10000 samples)" and its metrics record.
void report_evaluation(ProgressReporter& reporter, const EvalResult& result, std::int64_t epoch, std::int64_t step);

}  // namespace dtrain::runtime
