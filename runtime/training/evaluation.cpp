#include "runtime/training/evaluation.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>

#include "runtime/observability/timeline.h"
#include "runtime/training/objective.h"

namespace dtrain::runtime {

EvalResult evaluate(TrainingStep& step, TrainableModel& model, DataFeed& feed, comm::ControlPlane& world) {
  Timeline::Scope span("evaluate", "compute");
  model.set_training(false);
  at::NoGradGuard no_grad;
  at::Tensor sums = at::zeros({4}, at::kDouble);  // see evaluation_sums(); on the model's device after the first batch
  feed.start_epoch(0);
  while (auto batch = feed.next()) {
    // In a pipeline every stage reads the batch (to stay in step); only the last one has the model's output.
    const at::Tensor logits = step.predict(batch->inputs);
    if (logits.defined()) sums = evaluation_sums(logits, batch->targets, batch->valid) + sums.to(logits.device());
  }
  const at::Tensor host_sums = sums.cpu();
  const auto* mine = host_sums.data_ptr<double>();
  const std::vector<double> total = world.sum(std::vector<double>(mine, mine + 4));
  EvalResult result;
  result.predictions = static_cast<std::int64_t>(total[2]);
  result.samples = static_cast<std::int64_t>(total[3]);
  if (result.predictions > 0) {
    result.loss = total[0] / static_cast<double>(result.predictions);
    result.accuracy = total[1] / static_cast<double>(result.predictions);
  }
  model.set_training(true);
  return result;
}

void report_evaluation(ProgressReporter& reporter, const EvalResult& e, std::int64_t epoch, std::int64_t step) {
  // A next-token model predicts every position: its loss in bits per prediction (per character, for text).
  const bool per_token = e.predictions > e.samples;
  reporter.event(fmt::format("epoch {}: eval loss {:.4f}{}, accuracy {:.4f} ({} samples)", epoch, e.loss,
                             per_token ? fmt::format(" ({:.3f} bits per token)", e.loss / std::log(2.0)) : "",
                             e.accuracy, e.samples),
                 {{"event", "eval"},
                  {"epoch", epoch},
                  {"step", step},
                  {"loss", e.loss},
                  {"bits_per_prediction", e.loss / std::log(2.0)},
                  {"accuracy", e.accuracy},
                  {"samples", e.samples},
                  {"predictions", e.predictions}});
}

}  // namespace dtrain::runtime
