#pragma once
// The end of every kind of training step, once the gradients are reduced: the decisions every rank takes alike and
// the update. A step whose gradients are not finite is skipped (loss scaling backs off) or, without loss scaling, is
// an error naming the ranks whose loss was not finite (unless --skip-non-finite); otherwise the gradients are
// clipped to the global norm, the learning rate set for the step and the optimizer stepped. The figures come from
// the reduced gradients, which are identical on every replica (Note [Loss scale agreement]); a pipeline stage holds
// only its own layers, so there the figures are also summed along the pipeline before anyone decides.

#include <cstdint>

#include "comm/control_plane.h"
#include "runtime/data_parallel/reducer.h"
#include "runtime/training/grad_scaler.h"
#include "runtime/training/lr_schedule.h"
#include "runtime/training/model_optimizer.h"
#include "runtime/training/training_step.h"

namespace dtrain::runtime {

struct UpdateOptions {
  double clip_grad_norm = 0;     // global L2 norm (0: off)
  bool skip_non_finite = false;  // without loss scaling, skip a step with non-finite gradients instead of failing
};

class OptimizerUpdate {
 public:
  // `world` names the ranks of a non-finite loss in the error; `pipeline`, when the model is cut into stages, is
  // the control plane along which the stages agree.
  OptimizerUpdate(UpdateOptions options, ModelOptimizer& optimizer, const LrSchedule& lr, GradScaler& scaler,
                  comm::ControlPlane& world, comm::ControlPlane* pipeline);

  // Step `step` with the reduced gradients of `gradients`; `local_loss` is this rank's mean loss of the step (for
  // the error message). Returns true if the step was skipped. Zeroes the gradients and updates the loss scale.
  bool apply(Reducer& gradients, std::int64_t step, double local_loss);

 private:
  std::string where_losses_were_not_finite(double local_loss);

  UpdateOptions options_;
  ModelOptimizer& optimizer_;
  const LrSchedule& lr_;
  GradScaler& scaler_;
  comm::ControlPlane& world_;
  comm::ControlPlane* pipeline_;
};

// What every step does after its last backward: waits for the reduced gradients (the exposed communication), then
// apply(); both timed into `times`. Returns true if the step was skipped.
bool finish_and_apply(Reducer& gradients, OptimizerUpdate& update, std::int64_t step, double local_loss,
                      StepTimes& times);

}  // namespace dtrain::runtime
