#pragma once
// The training loop every rank runs, built of parts that each do one job: a TrainingStep (data-parallel or
// pipelined, Note [Training step]), the metrics of each interval, evaluation each epoch, early stopping, the
// checkpoint policy, and the agreement to stop on a signal. The loop itself only feeds batches and asks each part.

#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "runtime/data/data_feed.h"
#include "runtime/data_parallel/reducer.h"
#include "runtime/model/model.h"
#include "runtime/observability/progress_reporter.h"
#include "runtime/pipeline/pipeline_schedule.h"
#include "runtime/training/early_stopping.h"
#include "runtime/training/evaluation.h"
#include "runtime/training/grad_scaler.h"
#include "runtime/training/lr_schedule.h"
#include "runtime/training/optimizers.h"
#include "runtime/training/parallel_grid.h"
#include "runtime/training/precision.h"

namespace dtrain::runtime {

struct TrainerOptions {
  std::int64_t epochs = 1;
  std::int64_t max_steps = 0;  // stop after this many optimizer steps (0: no limit)
  int accumulation = 1;        // micro-batches per optimizer step (in a pipeline: streamed through the stages)
  ScheduleKind pipeline_schedule = ScheduleKind::k1F1B;  // when the grid has more than one stage
  double clip_grad_norm = 0;                             // global L2 norm across all ranks (0: off)
  Precision amp = Precision::kFp32;                      // autocast dtype; fp16 usually with loss scaling
  // Where the model, its gradients, the optimizer state and the batches live (Note [Compute device]). The trainer
  // moves the model there before the optimizer and the reducer take hold of its parameters.
  c10::Device device{c10::kCPU};
  bool allow_tf32 = false;       // fp32 matrix products and convolutions on TF32 tensor cores (GPUs)
  bool skip_non_finite = false;  // without loss scaling, a non-finite gradient is an error unless this is set
  OptimizerOptions optimizer;
  LrScheduleOptions lr;
  GradScalerOptions scaler;
  ReducerOptions reducer;
  // ZeRO (Note [Optimizer shards]): 0 every replica keeps the whole optimizer state; 1 each keeps the state of its
  // shard of the parameters; 2 also only its shard of the reduced gradients; 3 also only its shard of the parameters
  // between uses (Note [Parameter shards]: models made of blocks; whole again when run() returns).
  int zero_stage = 0;
  // Recompute the activations of every k-th block of the model in backward instead of keeping them (0: off).
  int activation_checkpoint_every = 0;
  // Early stopping on the evaluation metric: stop after `patience` epochs without an improvement of min_delta.
  int early_stopping_patience = 0;  // 0: off
  EarlyStoppingMetric early_stopping_metric = EarlyStoppingMetric::kAccuracy;
  double early_stopping_min_delta = 0;
  std::string checkpoint_dir;         // empty: no checkpoints
  std::int64_t checkpoint_every = 0;  // steps between checkpoints (0: only at the end)
  int keep_checkpoints = 3;
  bool checkpoint_async = true;  // write checkpoints in the background (Note [Background checkpoint writes])
  std::string resume;            // "", "auto" (latest in checkpoint_dir if any) or a checkpoint path
  std::string metrics_file;      // JSON lines, written by rank 0
  std::int64_t log_every = 50;   // steps between progress lines / metric records
  ProgressMode progress = ProgressMode::kAuto;
  double memory_warn_gb = 0;    // warn when this rank's resident memory passes this (0: off)
  std::string trace_file;       // a merged Chrome/Perfetto timeline of all ranks (Note [Timeline]); empty: off
  bool stop_on_signal = false;  // SIGUSR1/SIGTERM: checkpoint at the next step and stop (Note [Stopping on a signal])
};

struct TrainResult {
  std::int64_t steps = 0;
  std::int64_t epochs_completed = 0;
  double final_train_loss = 0;
  EvalResult last_eval;
  bool stopped_early = false;
  double seconds = 0;
  double peak_memory_gb = 0;       // highest resident memory of any rank
  double peak_gpu_memory_gb = 0;   // highest peak of any rank's CUDA caching allocator (0 on CPU)
  int peak_live_activations = 0;   // pipeline: the most micro-batches any stage held at once
  bool stopped_by_signal = false;  // stop_on_signal: a rank got SIGUSR1 or SIGTERM (the checkpoint is written)
  std::int64_t skipped_steps = 0;  // steps whose gradients were not finite (loss scaling, or skip_non_finite)
  // What the model's training state takes on the rank that holds the most, at the end of the run (bytes).
  std::int64_t parameter_bytes = 0;
  std::int64_t gradient_bytes = 0;  // the reducer's buckets or shards
  std::int64_t optimizer_state_bytes = 0;
  // The most memory any rank's forwards kept for backward, above what it held at the step's start (Note [Activation
  // bytes]).
  std::int64_t peak_activation_bytes = 0;
  std::string last_checkpoint;
  // Per checkpoint committed, in order: how long training was held (the largest rank), and the write itself.
  std::vector<double> checkpoint_blocking_seconds;
  std::vector<double> checkpoint_write_seconds;
};

class Trainer {
 public:
  // `eval` may be null (no evaluation). Throws std::invalid_argument naming a bad option. Collective over `world`.
  // With a `grid` of several pipeline stages, `model` is this rank's stage, the feeds deal samples over grid->data
  // (every stage of a replica reads the same batches: the first uses the inputs, the last the targets), and each step
  // streams its `accumulation` micro-batches through the stages with the pipeline schedule; gradients are reduced
  // across grid->data and the step decisions (non-finite, clipping norm) are agreed along the pipeline. Without a
  // grid, every rank of `world` is a data-parallel replica.
  Trainer(TrainerOptions options, TrainableModel& model, DataFeed& train, DataFeed* eval, comm::Communicator& world,
          ParallelGrid* grid = nullptr);
  ~Trainer();

  TrainResult run();
  // Evaluates on the eval feed: every real sample counted once across ranks.
  EvalResult evaluate();

  Reducer& reducer();

 private:
  struct Parts;
  std::unique_ptr<Parts> parts_;
};

}  // namespace dtrain::runtime
