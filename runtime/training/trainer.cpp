#include "runtime/training/trainer.h"

#include <fmt/format.h>

#include <filesystem>
#include <optional>
#include <stdexcept>

#include <unistd.h>

#include "comm/clock.h"
#include "runtime/data/device_feed.h"
#include "runtime/data_parallel/parameter_gatherer.h"
#include "runtime/data_parallel/sharded_optimizer.h"
#include "runtime/model/torch_compat.h"
#include "runtime/observability/activation_meter.h"
#include "runtime/observability/memory_monitor.h"
#include "runtime/observability/timeline.h"
#include "runtime/training/checkpoint_policy.h"
#include "runtime/training/data_parallel_step.h"
#include "runtime/training/interval_metrics.h"
#include "runtime/training/optimizer_update.h"
#include "runtime/training/pipeline_step.h"
#include "runtime/training/stop_request.h"

namespace dtrain::runtime {

namespace {

using comm::seconds_since;
using comm::SteadyClock;

void validate(const TrainerOptions& o) {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (o.epochs < 1) bad(fmt::format("--epochs must be >= 1 (got {})", o.epochs));
  if (o.max_steps < 0) bad("--max-steps must be >= 0");
  if (o.accumulation < 1) bad(fmt::format("--grad-accumulation must be >= 1 (got {})", o.accumulation));
  if (o.clip_grad_norm < 0) bad("--clip-grad-norm must be >= 0");
  if (o.amp == Precision::kFp16 && o.device.is_cpu() && !compat::cpu_fp16_autocast_supported()) {
    bad("--amp fp16 does not run on CPU with this LibTorch (fp16 CPU kernels arrived in LibTorch 2.x); use --amp bf16");
  }
  if (o.log_every < 1) bad("--log-every must be >= 1");
  if (o.memory_warn_gb < 0) bad("--memory-warn-gb must be >= 0");
  if (o.zero_stage < 0 || o.zero_stage > 3) {
    bad(fmt::format("--zero-stage must be 0, 1, 2 or 3 (got {})", o.zero_stage));
  }
}

TrainerOptions validated(TrainerOptions o) {
  validate(o);
  return o;
}

// The rank's device, with the model moved onto it (and told which blocks recompute their activations).
std::unique_ptr<ComputeDevice> device_for(const TrainerOptions& o, TrainableModel& model) {
  model.checkpoint_activations(o.activation_checkpoint_every);
  auto device = make_compute_device(o.device);
  device->allow_tf32(o.allow_tf32);
  model.to(o.device);
  return device;
}

// `feed` as the trainer reads it: on a GPU through a DeviceFeed (kept in `holder`), which copies a batch ahead.
DataFeed* on_device(DataFeed* feed, ComputeDevice& device, std::unique_ptr<DataFeed>& holder) {
  if (feed == nullptr || device.device().is_cpu()) return feed;
  holder = std::make_unique<DeviceFeed>(*feed, device);
  return holder.get();
}

std::unique_ptr<ParallelGrid> grid_of_replicas(comm::Communicator& world, ParallelGrid* grid) {
  if (grid != nullptr) return nullptr;
  return std::make_unique<ParallelGrid>(make_parallel_grid(world, 1));
}

// The gradient reducer over the model's (or stage's) replicas; ZeRO fixes its plan, which the shards follow, and
// stage 3 makes it one bucket per block (Note [Parameter shards]).
std::unique_ptr<Reducer> reducer_for(const TrainerOptions& o, TrainableModel& model, ParallelGrid& grid) {
  ReducerOptions options = o.reducer;
  if (o.zero_stage >= 1) options.rebuild_buckets = false;
  if (o.zero_stage >= 2) options.shard_gradients = true;
  if (o.zero_stage == 3) options.bucket_groups = model.block_parameter_names("--zero-stage 3");
  return std::make_unique<Reducer>(model.parameters(), model.buffers(), *grid.data, options);
}

std::vector<at::Tensor> trainable(TrainableModel& model) {
  std::vector<at::Tensor> out;
  for (const auto& p : model.parameters()) {
    if (p.tensor.requires_grad()) out.push_back(p.tensor);
  }
  return out;
}

std::unique_ptr<ModelOptimizer> optimizer_for(const TrainerOptions& o, TrainableModel& model, Reducer& reducer,
                                              ParallelGrid& grid) {
  if (o.zero_stage == 0) return std::make_unique<ReplicatedOptimizer>(o.optimizer, trainable(model));
  return std::make_unique<ShardedOptimizer>(o.optimizer, reducer, *grid.data, o.zero_stage == 3);
}

// Stage 3: the hooks that gather each block's parameters around its forward and backward, installed in the model.
std::unique_ptr<ParameterGatherer> gatherer_for(const TrainerOptions& o, TrainableModel& model, Reducer& reducer,
                                                ModelOptimizer& optimizer) {
  if (o.zero_stage != 3) return nullptr;
  auto gatherer = std::make_unique<ParameterGatherer>(model.block_parameter_names("--zero-stage 3"), model.parameters(),
                                                      reducer, dynamic_cast<ShardedOptimizer&>(optimizer));
  model.set_block_hooks(gatherer.get());
  return gatherer;
}

// Optimizer steps of the whole run: whole steps per epoch (batches that do not fill a step are left out) times the
// epochs, capped by --max-steps.
std::int64_t total_steps_of(const TrainerOptions& o, const DataFeed& train) {
  const std::int64_t steps_per_epoch = train.batches_per_epoch() / o.accumulation;
  if (steps_per_epoch < 1) {
    throw std::invalid_argument(fmt::format("an epoch has {} batches per rank, fewer than --grad-accumulation {}",
                                            train.batches_per_epoch(), o.accumulation));
  }
  const std::int64_t steps = steps_per_epoch * o.epochs;
  return o.max_steps > 0 ? std::min(steps, o.max_steps) : steps;
}

LrScheduleOptions lr_schedule_of(const TrainerOptions& o, std::int64_t total_steps) {
  LrScheduleOptions lr = o.lr;
  lr.base_lr = o.optimizer.lr;
  if (lr.kind == LrScheduleKind::kCosine && lr.total_steps == 0) lr.total_steps = total_steps;
  return lr;
}

// Rank 0 writes the metrics file: if it cannot, every rank stops with that error at once (rank 0 failing alone
// would leave the others waiting for it until the job is aborted, and its message could be lost in the abort).
ProgressReporter open_reporter(const TrainerOptions& o, std::int64_t total_steps, comm::ControlPlane& world) {
  std::optional<ProgressReporter> reporter;
  std::string error;
  try {
    reporter.emplace(world.rank() == 0, o.progress, o.metrics_file, total_steps);
  } catch (const std::exception& e) {
    error = e.what();
  }
  world.raise_if_any_failed(error);
  return std::move(*reporter);
}

// Found out now, not after the whole run: rank 0 writes the trace, into a folder it can write to.
void start_timeline(const std::string& trace_file, comm::ControlPlane& world) {
  Timeline::instance().reset();
  if (trace_file.empty()) return;
  std::string error;
  if (world.rank() == 0) {
    const auto folder = std::filesystem::absolute(trace_file).parent_path();
    std::error_code ec;
    std::filesystem::create_directories(folder, ec);
    if (::access(folder.c_str(), W_OK) != 0) {
      error = fmt::format("--trace {}: cannot write to the folder {}", trace_file, folder.string());
    }
  }
  world.raise_if_any_failed(error);
  Timeline::instance().enable();
}

}  // namespace

struct Trainer::Parts {
  TrainerOptions o;
  EarlyStopping early_stopping;
  TrainableModel& model;
  std::unique_ptr<ComputeDevice> device;
  ActivationMeter activations;
  std::unique_ptr<DataFeed> train_on_device, eval_on_device;  // GPUs only
  DataFeed& train;
  DataFeed* eval;
  std::unique_ptr<ParallelGrid> own_grid;  // without a grid given: every rank is a replica
  ParallelGrid& grid;
  comm::ControlPlane& world;
  std::int64_t total_steps;
  LrSchedule lr;
  GradScaler scaler;
  CheckpointPolicy checkpoints;
  ProgressReporter reporter;
  std::unique_ptr<Reducer> reducer;
  std::unique_ptr<ModelOptimizer> optimizer;
  std::unique_ptr<ParameterGatherer> gatherer;  // ZeRO stage 3 only
  OptimizerUpdate update;
  std::unique_ptr<TrainingStep> step;
  TrainingState state;
  std::int64_t skipped_steps = 0;  // by this run (not saved)
  std::string last_checkpoint;
  std::vector<double> blocking_seconds, write_seconds;  // of each checkpoint committed

  Parts(TrainerOptions options, TrainableModel& m, DataFeed& t, DataFeed* e, comm::Communicator& c, ParallelGrid* g)
      : o(validated(std::move(options))),
        early_stopping({o.early_stopping_patience, o.early_stopping_metric, o.early_stopping_min_delta}),
        model(m),
        device(device_for(o, m)),
        activations(*device),
        train(*on_device(&t, *device, train_on_device)),
        eval(on_device(e, *device, eval_on_device)),
        own_grid(grid_of_replicas(c, g)),
        grid(g != nullptr ? *g : *own_grid),
        world(*grid.world_control),
        total_steps(total_steps_of(o, t)),
        lr(lr_schedule_of(o, total_steps)),
        scaler(o.scaler),
        checkpoints({o.checkpoint_dir, o.checkpoint_every, o.keep_checkpoints, o.resume, o.checkpoint_async}, grid),
        reporter(open_reporter(o, total_steps, world)),
        reducer(reducer_for(o, m, grid)),
        optimizer(optimizer_for(o, m, *reducer, grid)),
        gatherer(gatherer_for(o, m, *reducer, *optimizer)),
        update({o.clip_grad_norm, o.skip_non_finite}, *optimizer, lr, scaler, world,
               grid.stages > 1 ? grid.pipeline_control.get() : nullptr) {
    if (o.amp == Precision::kFp32 && scaler.enabled()) {
      throw std::invalid_argument("loss scaling needs --amp bf16 or fp16");
    }
    if (grid.stages > 1) {
      step = std::make_unique<PipelineStep>(model, o.amp, grid, o.pipeline_schedule, o.accumulation, *reducer, scaler,
                                            update, activations);
    } else {
      step = std::make_unique<DataParallelStep>(model, o.amp, *reducer, scaler, update, activations);
    }
    start_timeline(o.trace_file, world);
    resume();
  }
  ~Parts() {
    if (gatherer) model.set_block_hooks(nullptr);  // the model outlives the trainer
  }

  CheckpointContents contents() {
    return {model.name(),
            model.parameters(),
            model.buffers(),
            &optimizer->optimizer(),
            to_string(o.optimizer.kind),
            device.get(),
            optimizer->shard_layout(),
            optimizer->parameter_shards()};
  }
  // Starts a checkpoint of where the run stands (Note [Background checkpoint writes]).
  void save_checkpoint() {
    complete_checkpoint(/*wait=*/true);
    state.sampler_state = train.state();
    state.loss_scale = scaler.scale();
    state.loss_scale_clean_steps = scaler.clean_steps();
    checkpoints.save(contents(), state);
    complete_checkpoint(/*wait=*/false);  // without background writes: training waits for the files here
  }
  // Commits the checkpoint being written once every rank has written its part (with `wait`, waits for that; at the
  // run's end that wait holds no training).
  void complete_checkpoint(bool wait, bool run_ended = false) {
    const auto committed = checkpoints.complete(wait, /*training_waits=*/!run_ended);
    if (!committed) return;
    last_checkpoint = committed->path;
    blocking_seconds.push_back(committed->blocking_seconds);
    write_seconds.push_back(committed->write_seconds);
    reporter.event(fmt::format("checkpoint {} (step {}) written: training held {:.3f} s, the write took {:.3f} s{}",
                               committed->path, committed->step, committed->blocking_seconds, committed->write_seconds,
                               o.checkpoint_async ? " in the background" : ""),
                   {{"event", "checkpoint"},
                    {"path", committed->path},
                    {"step", committed->step},
                    {"blocking_s", committed->blocking_seconds},
                    {"write_s", committed->write_seconds},
                    {"background", o.checkpoint_async}});
  }
  void resume() {
    if (o.resume.empty()) return;
    CheckpointContents into = contents();
    const auto resumed = checkpoints.resume(into);
    if (!resumed) return;
    state = resumed->state;
    if (state.mid_epoch) train.restore(state.sampler_state);
    scaler.restore(state.loss_scale, state.loss_scale_clean_steps);
    const std::string passed_over =
        resumed->damaged.empty()
            ? ""
            : fmt::format("; passed over {} newer damaged checkpoint{} ({})", resumed->damaged.size(),
                          resumed->damaged.size() > 1 ? "s" : "", resumed->damaged.front());
    // Elastic resume: a checkpoint of another number of replicas (replicated optimizer state) says so.
    const int replicas = grid.data_control->size();
    std::string elastic;
    if (state.written_by_replicas != replicas) {
      elastic = grid.stages > 1 ? fmt::format("; resumed step {} of a run of {} replicas per stage on {}", state.step,
                                              state.written_by_replicas, replicas)
                                : fmt::format("; resumed step {} of a {}-rank run on {} rank{}", state.step,
                                              state.written_by_replicas, replicas, replicas > 1 ? "s" : "");
    }
    reporter.event(fmt::format("resumed from {} at step {} (epoch {}{}){}{}", resumed->path, state.step, state.epoch,
                               state.mid_epoch ? ", mid-epoch" : "", elastic, passed_over),
                   {{"event", "resume"},
                    {"path", resumed->path},
                    {"step", state.step},
                    {"epoch", state.epoch},
                    {"data", train.state()},
                    {"damaged", resumed->damaged},
                    {"written_by_replicas", state.written_by_replicas}});
  }
  // The step's micro-batches; fewer at the end of the epoch.
  std::vector<Batch> next_batches(StepTimes& times) {
    const auto t = SteadyClock::now();
    std::vector<Batch> batches;
    while (static_cast<int>(batches.size()) < o.accumulation) {
      std::optional<Batch> batch = train.next();
      if (!batch) break;
      batches.push_back(std::move(*batch));
    }
    times.data += seconds_since(t);
    Timeline::instance().add("data wait", "data", t, SteadyClock::now());
    return batches;
  }
  EvalResult evaluate_and_report() {
    if (eval == nullptr) return {};
    const EvalResult result = runtime::evaluate(*step, model, *eval, world);
    report_evaluation(reporter, result, state.epoch, state.step);
    return result;
  }
  void write_trace() {
    Timeline& timeline = Timeline::instance();
    const std::size_t spans = timeline.size();
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    timeline.write_merged(world, o.trace_file, host);
    timeline.reset();
    reporter.event(
        fmt::format("timeline of all ranks written to {} (open in ui.perfetto.dev or chrome://tracing)", o.trace_file),
        {{"event", "trace"}, {"path", o.trace_file}, {"spans_rank0", spans}});
  }
};

Trainer::Trainer(TrainerOptions options, TrainableModel& model, DataFeed& train, DataFeed* eval,
                 comm::Communicator& world, ParallelGrid* grid)
    : parts_(std::make_unique<Parts>(std::move(options), model, train, eval, world, grid)) {}

Trainer::~Trainer() = default;

Reducer& Trainer::reducer() {
  return parts_->step->reducer();
}

EvalResult Trainer::evaluate() {
  Parts& p = *parts_;
  return p.eval == nullptr ? EvalResult{} : runtime::evaluate(*p.step, p.model, *p.eval, p.world);
}

TrainResult Trainer::run() {
  Parts& p = *parts_;
  TrainingState& s = p.state;
  const auto start = SteadyClock::now();
  TrainResult result;
  IntervalMetrics metrics(p.world, p.reporter, *p.device, p.o.memory_warn_gb,
                          p.train.global_batch_size() * p.o.accumulation);
  bool stop = s.step >= p.total_steps;
  p.model.set_training(true);

  for (; s.epoch < p.o.epochs && !stop; ++s.epoch) {
    if (!s.mid_epoch) p.train.start_epoch(s.epoch);
    s.mid_epoch = true;
    for (;;) {
      const std::vector<Batch> batches = p.next_batches(metrics.times());
      if (static_cast<int>(batches.size()) < p.o.accumulation) break;  // the end of the epoch

      const StepResult step = p.step->run(batches, s.step, metrics.times());
      if (step.skipped) ++p.skipped_steps;
      metrics.add_step(step, p.step->computes_loss() ? p.o.accumulation : 0);
      ++s.step;
      p.complete_checkpoint(/*wait=*/false);

      const bool last = s.step >= p.total_steps;
      if (s.step % p.o.log_every == 0 || last) {
        result.final_train_loss =
            metrics.report(s.step, s.epoch, p.lr.lr_at(s.step - 1), p.scaler.scale(), p.step->reducer());
      }
      if (p.o.stop_on_signal && !last && agree_to_stop(p.world)) {
        // Every rank stops after the same step; the checkpoint after the loop records where.
        result.stopped_by_signal = true;
        p.reporter.event(fmt::format("stop signal received: stopping after step {} with a checkpoint", s.step),
                         {{"event", "stop_signal"}, {"step", s.step}});
        stop = true;
        break;
      }
      if (!last && p.checkpoints.due_after(s.step)) p.save_checkpoint();
      if (last) {
        stop = true;
        break;
      }
    }
    if (result.stopped_by_signal) break;  // no evaluation: the job is being stopped
    if (stop && p.train.batches_left() > 0) {
      // Stopped by --max-steps inside the epoch: the epoch is not complete, but the final weights are evaluated.
      result.last_eval = p.evaluate_and_report();
      break;
    }
    s.mid_epoch = false;
    result.epochs_completed = s.epoch + 1;
    result.last_eval = p.evaluate_and_report();
    if (p.eval != nullptr && p.early_stopping.should_stop(result.last_eval, s.early_stopping)) {
      result.stopped_early = true;
      p.reporter.event(fmt::format("early stopping: no improvement of {} for {} epochs",
                                   to_string(p.o.early_stopping_metric), p.o.early_stopping_patience),
                       {{"event", "early_stop"}, {"epoch", s.epoch}});
      ++s.epoch;
      break;
    }
  }
  p.save_checkpoint();
  p.complete_checkpoint(/*wait=*/true, /*run_ended=*/true);  // the run's end (and a stop signal's) waits for it
  result.steps = s.step;
  result.skipped_steps = p.skipped_steps;
  result.seconds = seconds_since(start);
  result.last_checkpoint = p.last_checkpoint;
  result.checkpoint_blocking_seconds = p.blocking_seconds;
  result.checkpoint_write_seconds = p.write_seconds;
  result.parameter_bytes = p.world.max(p.optimizer->parameter_bytes());
  result.gradient_bytes = p.world.max(p.reducer->gradient_bytes());
  result.optimizer_state_bytes = p.world.max(optimizer_state_bytes(p.optimizer->optimizer()));
  result.peak_activation_bytes = p.world.max(p.activations.peak_bytes());
  // The caller gets the whole trained model; stage 3 gathers it into the memory of the state it frees first.
  p.optimizer->finish();
  result.peak_memory_gb = p.world.max(current_memory().peak_gb);
  result.peak_gpu_memory_gb = p.world.max(p.device->memory().peak_allocated_gb);
  const auto mib = [](std::int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); };
  p.reporter.event(fmt::format("training state per rank (largest): parameters {:.2f} MiB, gradients {:.2f} MiB, "
                               "optimizer state {:.2f} MiB (--zero-stage {}); peak activations {:.2f} MiB",
                               mib(result.parameter_bytes), mib(result.gradient_bytes),
                               mib(result.optimizer_state_bytes), p.o.zero_stage, mib(result.peak_activation_bytes)),
                   {{"event", "training_state_bytes"},
                    {"zero_stage", p.o.zero_stage},
                    {"parameters", result.parameter_bytes},
                    {"gradients", result.gradient_bytes},
                    {"optimizer_state", result.optimizer_state_bytes},
                    {"peak_activations", result.peak_activation_bytes},
                    {"activation_checkpoint_every", p.o.activation_checkpoint_every}});
  result.peak_live_activations =
      static_cast<int>(p.world.max(static_cast<std::int64_t>(p.step->peak_live_activations())));
  if (!p.o.trace_file.empty()) p.write_trace();
  return result;
}

}  // namespace dtrain::runtime
