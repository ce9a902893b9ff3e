#pragma once
// The pipelined step (Note [Training step]): this rank is one stage of a model cut into stages; the step's
// micro-batches stream through the stages with the pipeline schedule (runtime/pipeline/pipeline_engine.h), the
// stage's gradients are reduced across its replicas during the last backward, and the step's decisions are agreed
// along the pipeline (OptimizerUpdate).

#include "runtime/model/model.h"
#include "runtime/observability/activation_meter.h"
#include "runtime/pipeline/pipeline_engine.h"
#include "runtime/training/optimizer_update.h"
#include "runtime/training/parallel_grid.h"
#include "runtime/training/precision.h"
#include "runtime/training/training_step.h"

namespace dtrain::runtime {

class PipelineStep final : public TrainingStep {
 public:
  // Collective over the grid: checks the schedules of every stage. `reducer` averages the stage's gradients over its
  // replicas (grid.data); `activations` measures what the stage's forwards keep.
  PipelineStep(TrainableModel& stage, Precision precision, ParallelGrid& grid, ScheduleKind schedule, int micro_batches,
               Reducer& reducer, GradScaler& scaler, OptimizerUpdate& update, ActivationMeter& activations);

  StepResult run(const std::vector<Batch>& batches, std::int64_t step, StepTimes& times) override;
  at::Tensor predict(const at::Tensor& inputs) override;
  bool computes_loss() const override { return engine_.last(); }
  Reducer& reducer() override { return reducer_; }
  int peak_live_activations() const override { return engine_.peak_live_activations(); }

 private:
  TrainableModel& stage_;
  Precision precision_;
  PipelineEngine engine_;
  Reducer& reducer_;
  GradScaler& scaler_;
  OptimizerUpdate& update_;
  ActivationMeter& activations_;
};

}  // namespace dtrain::runtime
