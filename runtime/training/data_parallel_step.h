#pragma once
// The data-parallel step (Note [Training step]): this rank runs the whole model over each micro-batch; the gradients
// of the step's last backward are reduced across the replicas while that backward runs (Note [Gradient buckets]),
// the earlier ones only accumulate.

#include <memory>

#include "runtime/model/model.h"
#include "runtime/training/optimizer_update.h"
#include "runtime/training/precision.h"
#include "runtime/training/training_step.h"

namespace dtrain::runtime {

class DataParallelStep final : public TrainingStep {
 public:
  // Collective over `replicas` (builds the reducer, which broadcasts rank 0's weights).
  DataParallelStep(TrainableModel& model, Precision precision, comm::Communicator& replicas,
                   const ReducerOptions& reducer, GradScaler& scaler, OptimizerUpdate& update);

  StepResult run(const std::vector<Batch>& batches, std::int64_t step, StepTimes& times) override;
  at::Tensor predict(const at::Tensor& inputs) override;
  bool computes_loss() const override { return true; }
  Reducer& reducer() override { return *reducer_; }
  int peak_live_activations() const override { return 0; }

 private:
  TrainableModel& model_;
  Precision precision_;
  std::unique_ptr<Reducer> reducer_;
  GradScaler& scaler_;
  OptimizerUpdate& update_;
};

}  // namespace dtrain::runtime
