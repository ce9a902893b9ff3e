#pragma once
// The data-parallel step (Note [Training step]): this rank runs the whole model over each micro-batch; the gradients
// of the step's last backward are reduced across the replicas while that backward runs (Note [Gradient buckets]),
// the earlier ones only accumulate.

#include "runtime/model/model.h"
#include "runtime/observability/activation_meter.h"
#include "runtime/training/optimizer_update.h"
#include "runtime/training/precision.h"
#include "runtime/training/training_step.h"

namespace dtrain::runtime {

class DataParallelStep final : public TrainingStep {
 public:
  // `reducer` averages `model`'s gradients over the replicas; `update` steps with them; `activations` measures what
  // each forward keeps.
  DataParallelStep(TrainableModel& model, Precision precision, Reducer& reducer, GradScaler& scaler,
                   OptimizerUpdate& update, ActivationMeter& activations);

  StepResult run(const std::vector<Batch>& batches, std::int64_t step, StepTimes& times) override;
  at::Tensor predict(const at::Tensor& inputs) override;
  bool computes_loss() const override { return true; }
  Reducer& reducer() override { return reducer_; }
  int peak_live_activations() const override { return 0; }

 private:
  TrainableModel& model_;
  Precision precision_;
  Reducer& reducer_;
  GradScaler& scaler_;
  OptimizerUpdate& update_;
  ActivationMeter& activations_;
};

}  // namespace dtrain::runtime
