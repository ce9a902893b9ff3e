#include "runtime/training/data_parallel_step.h"

#include <ATen/ATen.h>

#include "comm/clock.h"
#include "runtime/observability/timeline.h"
#include "runtime/training/objective.h"

namespace dtrain::runtime {

using comm::seconds_since;
using comm::SteadyClock;

DataParallelStep::DataParallelStep(TrainableModel& model, Precision precision, Reducer& reducer, GradScaler& scaler,
                                   OptimizerUpdate& update, ActivationMeter& activations)
    : model_(model),
      precision_(precision),
      reducer_(reducer),
      scaler_(scaler),
      update_(update),
      activations_(activations) {}

StepResult DataParallelStep::run(const std::vector<Batch>& batches, std::int64_t step, StepTimes& times) {
  StepResult result;
  const auto micro_batches = static_cast<double>(batches.size());
  at::Tensor loss_sum;  // on the device: read once per step, not once per micro-batch
  activations_.step_begins();
  for (std::size_t i = 0; i < batches.size(); ++i) {
    auto t = SteadyClock::now();
    const at::Tensor loss = prediction_loss(predict(batches[i].inputs), batches[i].targets);
    activations_.forward_ended();
    times.forward += seconds_since(t);
    Timeline::instance().add("forward", "compute", t, SteadyClock::now(), Lane::kCompute, static_cast<std::int64_t>(i));
    loss_sum = loss_sum.defined() ? loss_sum + loss.detach().to(at::kDouble) : loss.detach().to(at::kDouble);

    t = SteadyClock::now();
    const at::Tensor scaled = scaler_.scale_loss(loss / micro_batches);
    if (i + 1 < batches.size()) {
      Reducer::NoSync no_sync(reducer_);  // accumulate locally; the step's last backward reduces the sum
      scaled.backward();
    } else {
      scaled.backward();
    }
    times.backward += seconds_since(t);
    Timeline::instance().add("backward", "compute", t, SteadyClock::now(), Lane::kCompute,
                             static_cast<std::int64_t>(i));
  }
  result.loss_sum = loss_sum.item<double>();
  result.skipped = finish_and_apply(reducer_, update_, step, result.loss_sum / micro_batches, times);
  return result;
}

at::Tensor DataParallelStep::predict(const at::Tensor& inputs) {
  return forward_in(precision_, model_, inputs);
}

}  // namespace dtrain::runtime
