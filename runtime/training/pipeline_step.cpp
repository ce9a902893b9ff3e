#include "runtime/training/pipeline_step.h"

#include <ATen/ATen.h>

#include "runtime/training/objective.h"

namespace dtrain::runtime {

PipelineStep::PipelineStep(TrainableModel& stage, Precision precision, ParallelGrid& grid, ScheduleKind schedule,
                           int micro_batches, Reducer& reducer, GradScaler& scaler, OptimizerUpdate& update,
                           ActivationMeter& activations)
    : stage_(stage),
      precision_(precision),
      engine_(*grid.pipeline, *grid.pipeline_control, make_schedule(schedule, grid.stages, grid.stage, micro_batches),
              micro_batches, stage.device()),
      reducer_(reducer),
      scaler_(scaler),
      update_(update),
      activations_(activations) {}

StepResult PipelineStep::run(const std::vector<Batch>& batches, std::int64_t step, StepTimes& times) {
  std::vector<at::Tensor> inputs;
  if (engine_.first()) {
    for (const auto& batch : batches) inputs.push_back(batch.inputs);
  }
  const auto micro_batches = static_cast<double>(batches.size());
  StageFunctions functions;
  activations_.step_begins();
  functions.forward = [this](const at::Tensor& x) {
    at::Tensor output = forward_in(precision_, stage_, x);
    activations_.forward_ended();  // every micro-batch still waiting for its backward counts
    return output;
  };
  functions.loss = [&](const at::Tensor& output, int mb, double& unscaled) {
    const at::Tensor loss = prediction_loss(output, batches[static_cast<std::size_t>(mb)].targets);
    unscaled = loss.item<double>();
    return scaler_.scale_loss(loss / micro_batches);
  };
  const PipelineStepStats stats = engine_.train_step(functions, inputs, &reducer_);
  times.forward += stats.forward_s;
  times.backward += stats.backward_s;
  times.pipeline_wait += stats.transfer_wait_s;

  StepResult result;
  result.loss_sum = stats.loss;
  result.skipped = finish_and_apply(reducer_, update_, step, stats.loss / micro_batches, times);
  return result;
}

at::Tensor PipelineStep::predict(const at::Tensor& inputs) {
  const StageFunctions functions{[this](const at::Tensor& x) { return forward_in(precision_, stage_, x); }, nullptr};
  return engine_.forward_only(functions, inputs);
}

}  // namespace dtrain::runtime
