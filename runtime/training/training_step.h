#pragma once
// Note [Training step]
// One optimizer step is one TrainingStep::run over the step's micro-batches: the forward and backward passes, the
// gradient reduction across replicas, the decisions every rank takes alike (skip a step whose gradients are not
// finite, clip by the global norm; OptimizerUpdate) and the update. The loop (runtime/training/trainer.cpp) knows
// nothing of how: DataParallelStep runs the whole model on this rank, PipelineStep streams the micro-batches through
// the stages. Another way of stepping (on CUDA devices, with sharded optimizer state) is another implementation.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "runtime/data/data_feed.h"
#include "runtime/data_parallel/reducer.h"

namespace dtrain::runtime {

// Where step time went (seconds, summed over the steps of a metrics interval).
struct StepTimes {
  double data = 0, forward = 0, backward = 0, comm = 0, optimizer = 0;
  double pipeline_wait = 0;  // waiting for neighbouring stages: the pipeline bubble plus transfers
};

struct StepResult {
  double loss_sum = 0;   // the sum of the micro-batches' losses this rank computed (none on inner pipeline stages)
  bool skipped = false;  // the gradients were not finite: no update (loss scaling, or --skip-non-finite)
};

class TrainingStep {
 public:
  virtual ~TrainingStep() = default;
  // Step number `step` (0-based) over `batches`, one per micro-batch; adds its times to `times`. Collective over
  // every rank of the run.
  virtual StepResult run(const std::vector<Batch>& batches, std::int64_t step, StepTimes& times) = 0;
  // The model's output for evaluation (collective along a pipeline); undefined where this rank does not have it.
  virtual at::Tensor predict(const at::Tensor& inputs) = 0;
  // Whether this rank computes the loss (every rank, or a pipeline's last stage).
  virtual bool computes_loss() const = 0;
  virtual Reducer& reducer() = 0;
  // The most micro-batches whose activations this rank held at once (pipelines; 0 otherwise).
  virtual int peak_live_activations() const = 0;
};

}  // namespace dtrain::runtime
