#pragma once
// Runs one pipeline stage: executes its schedule (Note [Pipeline schedules as data]) for each training step,
// streaming micro-batch activations to the next stage and their gradients back over the pipeline communicator.
// Every transfer is a small header (what it is, which micro-batch, dtype, shape) on the control plane and then the
// tensor on the data plane, so a receiver needs no shapes in advance and a transfer that is not the one the schedule
// expects is an error naming both.

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "comm/control_plane.h"
#include "runtime/data_parallel/reducer.h"
#include "runtime/pipeline/pipeline_schedule.h"

namespace dtrain::runtime {

class PipelineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What one stage computes. `forward` runs the stage's layers (under autocast if the run uses it); `loss`, used on
// the last stage only, gives the scalar to differentiate for micro-batch `mb` from the stage's output (the trainer's
// loss divided by the micro-batch count and scaled by the loss scaler) and reports the unscaled loss.
struct StageFunctions {
  std::function<at::Tensor(const at::Tensor& input)> forward;
  std::function<at::Tensor(const at::Tensor& output, int mb, double& unscaled_loss)> loss;
};

struct PipelineStepStats {
  double loss = 0;       // last stage: the sum of the micro-batches' reported losses; 0 elsewhere
  double forward_s = 0;  // time in forward compute
  double backward_s = 0;
  double transfer_wait_s = 0;  // time waiting for receives and, at the end, for sends: the bubble plus transfers
};

class PipelineEngine {
 public:
  // Collective over `pipeline` (rank = stage, size = number of stages) and its control plane: every stage's schedule
  // is gathered and checked with check_schedules(); a schedule that does not pair up or would deadlock throws
  // PipelineError with the same message on every stage, before any activation moves.
  // `device`: where the stage computes; activations and gradients arrive there (through host memory when `pipeline`
  // moves host memory only: Note [Host staging]).
  PipelineEngine(comm::Communicator& pipeline, comm::ControlPlane& control, StageSchedule schedule, int micro_batches,
                 c10::Device device = c10::kCPU);

  int stage() const { return stage_; }
  int stages() const { return stages_; }
  bool first() const { return stage_ == 0; }
  bool last() const { return stage_ == stages_ - 1; }
  int micro_batches() const { return micro_batches_; }
  const StageSchedule& schedule() const { return schedule_; }

  // One training step. `inputs` (first stage) and `targets` (last stage) hold one tensor per micro-batch; the other
  // stages pass empty vectors. Gradients accumulate in the stage's parameters; with a `reducer`, every backward but
  // the step's last runs under Reducer::NoSync, so the data-parallel allreduce overlaps the last backward (call
  // reducer->finish_backward() afterwards).
  PipelineStepStats train_step(const StageFunctions& stage, const std::vector<at::Tensor>& inputs, Reducer* reducer);

  // Forward only (evaluation): the first stage passes the batch's input, the last stage gets the model output; the
  // other stages get an undefined tensor.
  at::Tensor forward_only(const StageFunctions& stage, const at::Tensor& input);

  // The most micro-batches whose activations this stage held at once, over all steps so far (counted, not derived
  // from the schedule).
  int peak_live_activations() const { return peak_live_; }

 private:
  enum class Kind : std::int64_t { kActivation = 1, kGradient = 2 };
  void send(const at::Tensor& tensor, Kind kind, int mb);
  at::Tensor recv(Kind kind, int mb);
  void wait_sends();

  // One link per neighbour and direction (Note [Pipeline schedules as data]): a data communicator for the tensors and
  // a control plane for their headers. In each, the lower stage is rank 0 and the higher stage rank 1.
  struct Link {
    std::unique_ptr<comm::Communicator> data;
    std::unique_ptr<comm::ControlPlane> control;
  };
  Link to_next_, from_next_, to_prev_, from_prev_;  // empty where there is no neighbour
  StageSchedule schedule_;
  int micro_batches_;
  int stage_;
  int stages_;
  c10::Device device_;
  std::int64_t step_ = 0;  // steps (and evaluation batches) run; in every header, so a stray transfer is caught
  struct PendingSend {
    comm::WorkPtr header, payload;
    std::chrono::steady_clock::time_point posted;
  };
  std::vector<PendingSend> pending_sends_;
  int peak_live_ = 0;
};

}  // namespace dtrain::runtime
