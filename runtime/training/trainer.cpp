#include "runtime/training/trainer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <regex>
#include <stdexcept>

#include <unistd.h>

#include "runtime/training/checkpoint.h"
#include "runtime/observability/memory_monitor.h"
#include "runtime/training/objective.h"
#include "runtime/pipeline/pipeline_engine.h"
#include "runtime/observability/progress_reporter.h"
#include "runtime/training/stop_request.h"
#include "runtime/observability/timeline.h"
#include "runtime/model/torch_compat.h"

namespace dtrain::runtime {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Where one interval's step time went (seconds, summed over its steps).
struct StepTimes {
  double data = 0, forward = 0, backward = 0, comm = 0, optimizer = 0;
  double pipeline_wait = 0;  // waiting for neighbouring stages: the pipeline bubble plus transfers
};

void validate(const TrainerOptions& o) {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (o.epochs < 1) bad(fmt::format("--epochs must be >= 1 (got {})", o.epochs));
  if (o.max_steps < 0) bad("--max-steps must be >= 0");
  if (o.accumulation < 1) bad(fmt::format("--grad-accumulation must be >= 1 (got {})", o.accumulation));
  if (o.clip_grad_norm < 0) bad("--clip-grad-norm must be >= 0");
  if (o.amp != "none" && o.amp != "bf16" && o.amp != "fp16") {
    bad(fmt::format("--amp: '{}' is not one of none, bf16, fp16", o.amp));
  }
  if (o.amp == "fp16" && !compat::cpu_fp16_autocast_supported()) {
    bad("--amp fp16 does not run on CPU with this LibTorch (fp16 CPU kernels arrived in LibTorch 2.x); use --amp bf16");
  }
  if (o.early_stopping_patience < 0) bad("--early-stopping-patience must be >= 0");
  if (o.early_stopping_metric != "accuracy" && o.early_stopping_metric != "loss") {
    bad(fmt::format("--early-stopping-metric: '{}' is not one of accuracy, loss", o.early_stopping_metric));
  }
  if (o.checkpoint_every < 0) bad("--checkpoint-every must be >= 0");
  if (o.keep_checkpoints < 1) bad("--keep-checkpoints must be >= 1");
  if (o.resume == "auto" && o.checkpoint_dir.empty()) bad("--resume auto needs --checkpoint-dir");
  if (o.log_every < 1) bad("--log-every must be >= 1");
  parse_schedule_kind(o.pipeline_schedule);
  if (o.memory_warn_gb < 0) bad("--memory-warn-gb must be >= 0");
}

c10::ScalarType autocast_dtype(const std::string& amp) {
  return amp == "fp16" ? at::kHalf : at::kBFloat16;
}

}  // namespace

struct Trainer::Impl {
  TrainerOptions o;
  TrainableModel& model;
  DataFeed& train;
  DataFeed* eval;
  comm::Communicator& comm;       // the world: metrics and evaluation sums
  comm::Communicator& data_comm;  // the replicas of this rank's model (or stage): gradients, checkpoints
  ParallelGrid* grid;
  std::optional<PipelineEngine> engine;
  std::unique_ptr<Reducer> reducer;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::optional<LrSchedule> lr;
  GradScaler scaler;
  std::optional<CheckpointStore> store;
  std::optional<ProgressReporter> reporter;
  MemoryMonitor memory;
  std::int64_t total_steps = 0;
  // Progress, saved in checkpoints.
  std::int64_t step = 0;
  std::int64_t skipped_steps = 0;  // by this run, not saved
  std::int64_t epoch = 0;          // the epoch being trained (or the next one to start)
  bool mid_epoch = false;          // `train` stands inside `epoch` (a resume or a stop by --max-steps)
  double best_metric = NAN;
  std::int64_t epochs_without_improvement = 0;
  std::string last_checkpoint;

  Impl(TrainerOptions options, TrainableModel& m, DataFeed& t, DataFeed* e, comm::Communicator& c, ParallelGrid* g)
      : o(std::move(options)),
        model(m),
        train(t),
        eval(e),
        comm(c),
        data_comm(g != nullptr ? *g->data : c),
        grid(g),
        scaler(o.scaler),
        memory(o.memory_warn_gb) {}

  CheckpointContents contents() {
    return {model.name(), model.parameters(), model.buffers(), optimizer.get(), o.optimizer.kind};
  }
  void save_checkpoint();
  void maybe_resume();
  std::string resume_path();
  EvalResult evaluate();
  bool end_of_epoch(const EvalResult& result);
  void report_eval(const EvalResult& e);
  at::Tensor forward(const at::Tensor& inputs);
  // One step's forward and backward passes over its micro-batches; returns the sum of the micro-batches' losses
  // this rank computed (a pipeline's last stage computes them all, the other stages none).
  double data_parallel_passes(const std::vector<Batch>& batches, StepTimes& times);
  double pipeline_passes(const std::vector<Batch>& batches, StepTimes& times);
  void optimizer_step(double local_loss);
  std::string where_losses_were_not_finite(double local_loss);
};

at::Tensor Trainer::Impl::forward(const at::Tensor& inputs) {
  compat::AutocastScope autocast(o.amp != "none", autocast_dtype(o.amp));
  return model.forward(inputs);
}

void Trainer::Impl::save_checkpoint() {
  if (!store) return;
  Timeline::Scope span("checkpoint", "checkpoint");
  TrainingProgress progress;
  progress.step = step;
  progress.epoch = epoch;
  progress.sampler_state = train.state();
  progress.loss_scale = scaler.scale();
  progress.loss_scale_clean_steps = scaler.clean_steps();
  progress.extra = {{"best_metric", std::isnan(best_metric) ? nlohmann::json() : nlohmann::json(best_metric)},
                    {"epochs_without_improvement", epochs_without_improvement},
                    {"mid_epoch", mid_epoch}};
  last_checkpoint = store->save(data_comm, contents(), progress);
}

// "auto": the newest checkpoint that every stage has (a pipeline's stages write their own files, and a failure
// between two of those writes leaves some stages one checkpoint ahead).
std::string Trainer::Impl::resume_path() {
  if (o.resume != "auto") {
    // A pipeline stage given any stage's file of a checkpoint reads its own file of the same checkpoint.
    return engine ? std::regex_replace(o.resume, std::regex("\\.stage[0-9]+-of-[0-9]+\\.pt$"),
                                       fmt::format(".stage{}-of-{}.pt", grid->stage, grid->stages))
                  : o.resume;
  }
  if (!engine) return comm::broadcast_string(comm, comm.rank() == 0 ? store->latest().value_or("") : "", 0);
  const std::int64_t mine = store->latest_step().value_or(-1);
  at::Tensor steps = at::tensor({mine, -mine}, at::kLong);
  comm.allreduce(steps, comm::ReduceOp::kMin)->wait();
  const std::int64_t oldest = steps[0].item<std::int64_t>(), newest = -steps[1].item<std::int64_t>();
  if (newest < 0) return "";
  if (oldest < 0) {
    throw CheckpointError(
        fmt::format("--resume auto: some pipeline stages have checkpoints in {} and others none "
                    "(this stage's newest: {})",
                    store->folder(), store->latest().value_or("none")));
  }
  return store->path_for(oldest);
}

void Trainer::Impl::maybe_resume() {
  if (o.resume.empty()) return;
  // With "auto", rank 0 looks (the folder is shared by all ranks) and everyone follows its answer.
  const std::string path = resume_path();
  if (path.empty()) return;  // nothing to resume from: a fresh start
  CheckpointContents into = contents();
  const TrainingProgress progress = load_checkpoint(data_comm, path, into);
  step = progress.step;
  epoch = progress.epoch;
  mid_epoch = progress.extra.value("mid_epoch", false);
  if (mid_epoch) train.restore(progress.sampler_state);
  scaler.restore(progress.loss_scale, progress.loss_scale_clean_steps);
  best_metric = progress.extra.value("best_metric", nlohmann::json()).is_null()
                    ? NAN
                    : progress.extra["best_metric"].get<double>();
  epochs_without_improvement = progress.extra.value("epochs_without_improvement", 0);
  reporter->event(
      fmt::format("resumed from {} at step {} (epoch {}{})", path, step, epoch, mid_epoch ? ", mid-epoch" : ""),
      {{"event", "resume"}, {"path", path}, {"step", step}, {"epoch", epoch}, {"data", train.state()}});
}

EvalResult Trainer::Impl::evaluate() {
  EvalResult result;
  if (eval == nullptr) return result;
  Timeline::Scope span("evaluate", "compute");
  model.set_training(false);
  at::NoGradGuard no_grad;
  at::Tensor sums = at::zeros({4}, at::kDouble);  // see evaluation_sums()
  eval->start_epoch(0);
  const StageFunctions stage{[this](const at::Tensor& x) { return forward(x); }, nullptr};
  while (auto batch = eval->next()) {
    // In a pipeline every stage reads the batch (to stay in step); only the last one has the model's output.
    const at::Tensor logits = engine ? engine->forward_only(stage, batch->inputs) : forward(batch->inputs);
    if (logits.defined()) sums += evaluation_sums(logits, batch->targets, batch->valid);
  }
  comm.allreduce(sums, comm::ReduceOp::kSum)->wait();
  result.predictions = static_cast<std::int64_t>(sums[2].item<double>());
  result.samples = static_cast<std::int64_t>(sums[3].item<double>());
  if (result.predictions > 0) {
    result.loss = sums[0].item<double>() / static_cast<double>(result.predictions);
    result.accuracy = sums[1].item<double>() / static_cast<double>(result.predictions);
  }
  model.set_training(true);
  return result;
}

void Trainer::Impl::report_eval(const EvalResult& e) {
  if (eval == nullptr) return;
  // A next-token model predicts every position: its loss in bits per prediction (per character, for text).
  const bool per_token = e.predictions > e.samples;
  reporter->event(fmt::format("epoch {}: eval loss {:.4f}{}, accuracy {:.4f} ({} samples)", epoch, e.loss,
                              per_token ? fmt::format(" ({:.3f} bits per token)", e.loss / std::log(2.0)) : "",
                              e.accuracy, e.samples),
                  {{"event", "eval"},
                   {"epoch", epoch},
                   {"step", step},
                   {"loss", e.loss},
                   {"bits_per_prediction", e.loss / std::log(2.0)},
                   {"accuracy", e.accuracy},
                   {"samples", e.samples},
                   {"predictions", e.predictions}});
}

// Early stopping: true when training should stop. Every rank computes it from the same reduced metrics.
bool Trainer::Impl::end_of_epoch(const EvalResult& result) {
  if (o.early_stopping_patience == 0 || eval == nullptr) return false;
  const bool by_accuracy = o.early_stopping_metric == "accuracy";
  const double metric = by_accuracy ? result.accuracy : result.loss;
  const bool improved = std::isnan(best_metric) || (by_accuracy ? metric > best_metric + o.early_stopping_min_delta
                                                                : metric < best_metric - o.early_stopping_min_delta);
  if (improved) {
    best_metric = metric;
    epochs_without_improvement = 0;
    return false;
  }
  return ++epochs_without_improvement >= o.early_stopping_patience;
}

Trainer::Trainer(TrainerOptions options, TrainableModel& model, DataFeed& train, DataFeed* eval,
                 comm::Communicator& comm, ParallelGrid* grid)
    : impl_(std::make_unique<Impl>(std::move(options), model, train, eval, comm, grid)) {
  Impl& s = *impl_;
  validate(s.o);
  if (s.o.amp == "none" && s.scaler.enabled()) {
    throw std::invalid_argument("loss scaling needs --amp bf16 or fp16");
  }
  const std::int64_t steps_per_epoch = train.batches_per_epoch() / s.o.accumulation;
  if (steps_per_epoch < 1) {
    throw std::invalid_argument(fmt::format("an epoch has {} batches per rank, fewer than --grad-accumulation {}",
                                            train.batches_per_epoch(), s.o.accumulation));
  }
  s.total_steps = steps_per_epoch * s.o.epochs;
  if (s.o.max_steps > 0) s.total_steps = std::min(s.total_steps, s.o.max_steps);
  LrScheduleOptions lr = s.o.lr;
  lr.base_lr = s.o.optimizer.lr;
  if (lr.kind == "cosine" && lr.total_steps == 0) lr.total_steps = s.total_steps;
  s.lr.emplace(lr);
  s.reporter.emplace(comm.rank() == 0, s.o.progress, s.o.metrics_file, s.total_steps);
  const bool pipelined = grid != nullptr && grid->stages > 1;
  if (!s.o.checkpoint_dir.empty()) {
    s.store.emplace(s.o.checkpoint_dir, s.o.keep_checkpoints,
                    pipelined ? fmt::format("stage{}-of-{}", grid->stage, grid->stages) : "");
  }
  if (pipelined) {
    const ScheduleKind kind = parse_schedule_kind(s.o.pipeline_schedule);
    s.engine.emplace(*grid->pipeline, make_schedule(kind, grid->stages, grid->stage, s.o.accumulation),
                     s.o.accumulation);
  }
  s.reducer = std::make_unique<Reducer>(model.parameters(), model.buffers(), s.data_comm, s.o.reducer);
  Timeline::instance().reset();
  if (!s.o.trace_file.empty()) {
    // Found out now, not after the whole run: rank 0 writes the trace, into a folder it can write to.
    std::string error;
    if (comm.rank() == 0) {
      const auto folder = std::filesystem::absolute(s.o.trace_file).parent_path();
      std::error_code ec;
      std::filesystem::create_directories(folder, ec);
      if (::access(folder.c_str(), W_OK) != 0) {
        error = fmt::format("--trace {}: cannot write to the folder {}", s.o.trace_file, folder.string());
      }
    }
    error = comm::broadcast_string(comm, error, 0);
    if (!error.empty()) throw std::invalid_argument(error);
    Timeline::instance().enable();
  }
  std::vector<at::Tensor> parameters;
  for (const auto& p : model.parameters()) {
    if (p.tensor.requires_grad()) parameters.push_back(p.tensor);
  }
  s.optimizer = make_optimizer(s.o.optimizer, parameters);
  s.maybe_resume();
}

Trainer::~Trainer() = default;

Reducer& Trainer::reducer() {
  return *impl_->reducer;
}

EvalResult Trainer::evaluate() {
  return impl_->evaluate();
}

TrainResult Trainer::run() {
  Impl& s = *impl_;
  const auto start = Clock::now();
  TrainResult result;
  StepTimes times;
  double interval_loss = 0;
  std::int64_t interval_micro_batches = 0;
  std::int64_t interval_steps = 0;
  auto interval_start = Clock::now();
  bool stop = s.step >= s.total_steps;
  s.model.set_training(true);

  for (; s.epoch < s.o.epochs && !stop; ++s.epoch) {
    if (!s.mid_epoch) s.train.start_epoch(s.epoch);
    s.mid_epoch = true;
    for (;;) {
      auto t = Clock::now();
      std::vector<Batch> batches;
      while (static_cast<int>(batches.size()) < s.o.accumulation) {
        std::optional<Batch> batch = s.train.next();
        if (!batch) break;
        batches.push_back(std::move(*batch));
      }
      times.data += seconds_since(t);
      Timeline::instance().add("data wait", "data", t, Clock::now());
      // The end of the epoch; batches that do not fill a whole step are left out (steps per epoch round down).
      if (static_cast<int>(batches.size()) < s.o.accumulation) break;

      const double loss_sum = s.engine ? s.pipeline_passes(batches, times) : s.data_parallel_passes(batches, times);
      const bool has_loss = !s.engine || s.engine->last();
      interval_loss += loss_sum;
      if (has_loss) interval_micro_batches += s.o.accumulation;

      t = Clock::now();
      s.reducer->finish_backward();
      times.comm += seconds_since(t);
      Timeline::instance().add("exposed communication", "communication", t, Clock::now());

      t = Clock::now();
      s.optimizer_step(loss_sum / s.o.accumulation);
      times.optimizer += seconds_since(t);
      Timeline::instance().add("optimizer", "compute", t, Clock::now());
      ++interval_steps;

      const bool last = s.step >= s.total_steps;
      if (s.step % s.o.log_every == 0 || last) {
        // One small collective per interval: the mean loss and step-time breakdown over all ranks.
        at::Tensor sums = at::tensor({interval_loss, static_cast<double>(interval_micro_batches), times.data,
                                      times.forward, times.backward, times.comm, times.optimizer, times.pipeline_wait},
                                     at::kDouble);
        s.comm.allreduce(sums, comm::ReduceOp::kSum)->wait();
        const double ranks = s.comm.size();
        const double elapsed = seconds_since(interval_start);
        const double samples = static_cast<double>(interval_steps * s.train.global_batch_size() * s.o.accumulation);
        const MemoryUsage usage = current_memory();
        result.final_train_loss = sums[0].item<double>() / sums[1].item<double>();
        nlohmann::json record = {{"event", "train"},
                                 {"step", s.step},
                                 {"epoch", s.epoch},
                                 {"loss", result.final_train_loss},
                                 {"lr", s.lr->lr_at(s.step - 1)},
                                 {"loss_scale", s.scaler.scale()},
                                 {"samples_per_s", samples / elapsed},
                                 {"step_ms", 1e3 * elapsed / static_cast<double>(interval_steps)},
                                 {"data_wait_ms", 1e3 * sums[2].item<double>() / ranks / interval_steps},
                                 {"forward_ms", 1e3 * sums[3].item<double>() / ranks / interval_steps},
                                 {"backward_ms", 1e3 * sums[4].item<double>() / ranks / interval_steps},
                                 {"exposed_comm_ms", 1e3 * sums[5].item<double>() / ranks / interval_steps},
                                 {"optimizer_ms", 1e3 * sums[6].item<double>() / ranks / interval_steps},
                                 {"pipeline_wait_ms", 1e3 * sums[7].item<double>() / ranks / interval_steps},
                                 {"buckets_overlapped", s.reducer->buckets_launched_in_backward()},
                                 {"buckets", s.reducer->bucket_plan().size()},
                                 {"rss_gb", usage.resident_gb}};
        s.reporter->step(record, s.step, samples / elapsed);
        if (s.memory.crossed(usage)) {
          std::fprintf(stderr, "dtrain: warning: rank %d uses %.2f GB of memory, above --memory-warn-gb %.2f\n",
                       s.comm.rank(), usage.resident_gb, s.o.memory_warn_gb);
        }
        times = StepTimes{};
        interval_loss = 0;
        interval_micro_batches = 0;
        interval_steps = 0;
        interval_start = Clock::now();
      }
      if (s.o.stop_on_signal && !last && agree_to_stop(s.comm)) {
        // Every rank stops after the same step; the checkpoint after the loop records where.
        result.stopped_by_signal = true;
        s.reporter->event(fmt::format("stop signal received: stopping after step {} with a checkpoint", s.step),
                          {{"event", "stop_signal"}, {"step", s.step}});
        stop = true;
        break;
      }
      if (s.o.checkpoint_every > 0 && s.step % s.o.checkpoint_every == 0 && !last) s.save_checkpoint();
      if (last) {
        stop = true;
        break;
      }
    }
    if (result.stopped_by_signal) break;  // no evaluation: the job is being stopped
    if (stop && s.train.batches_left() > 0) {
      // Stopped by --max-steps inside the epoch: the epoch is not complete, but the final weights are evaluated.
      result.last_eval = s.evaluate();
      s.report_eval(result.last_eval);
      break;
    }
    s.mid_epoch = false;
    result.epochs_completed = s.epoch + 1;
    result.last_eval = s.evaluate();
    s.report_eval(result.last_eval);
    if (s.end_of_epoch(result.last_eval)) {
      result.stopped_early = true;
      s.reporter->event(fmt::format("early stopping: no improvement of {} for {} epochs", s.o.early_stopping_metric,
                                    s.o.early_stopping_patience),
                        {{"event", "early_stop"}, {"epoch", s.epoch}});
      ++s.epoch;
      break;
    }
  }
  s.save_checkpoint();
  result.steps = s.step;
  result.skipped_steps = s.skipped_steps;
  result.seconds = seconds_since(start);
  at::Tensor peak = at::tensor({current_memory().peak_gb}, at::kDouble);
  s.comm.allreduce(peak, comm::ReduceOp::kMax)->wait();
  result.peak_memory_gb = peak.item<double>();
  result.last_checkpoint = s.last_checkpoint;
  at::Tensor live = at::tensor({s.engine ? s.engine->peak_live_activations() : 0}, at::kLong);
  s.comm.allreduce(live, comm::ReduceOp::kMax)->wait();
  result.peak_live_activations = static_cast<int>(live.item<std::int64_t>());
  if (!s.o.trace_file.empty()) {
    Timeline& timeline = Timeline::instance();
    const std::size_t spans = timeline.size();
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    timeline.write_merged(s.comm, s.o.trace_file, host);
    timeline.reset();
    s.reporter->event(fmt::format("timeline of all ranks written to {} (open in ui.perfetto.dev or chrome://tracing)",
                                  s.o.trace_file),
                      {{"event", "trace"}, {"path", s.o.trace_file}, {"spans_rank0", spans}});
  }
  return result;
}

double Trainer::Impl::data_parallel_passes(const std::vector<Batch>& batches, StepTimes& times) {
  double loss_sum = 0;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    auto t = Clock::now();
    const at::Tensor loss = prediction_loss(forward(batches[i].inputs), batches[i].targets);
    times.forward += seconds_since(t);
    Timeline::instance().add("forward", "compute", t, Clock::now(), Lane::kCompute, static_cast<std::int64_t>(i));
    loss_sum += loss.item<double>();

    t = Clock::now();
    const at::Tensor scaled = scaler.scale_loss(loss / o.accumulation);
    if (i + 1 < batches.size()) {
      Reducer::NoSync no_sync(*reducer);  // accumulate locally; the step's last backward reduces the sum
      scaled.backward();
    } else {
      scaled.backward();
    }
    times.backward += seconds_since(t);
    Timeline::instance().add("backward", "compute", t, Clock::now(), Lane::kCompute, static_cast<std::int64_t>(i));
  }
  return loss_sum;
}

double Trainer::Impl::pipeline_passes(const std::vector<Batch>& batches, StepTimes& times) {
  std::vector<at::Tensor> inputs;
  if (engine->first()) {
    for (const auto& batch : batches) inputs.push_back(batch.inputs);
  }
  StageFunctions stage;
  stage.forward = [this](const at::Tensor& x) { return forward(x); };
  stage.loss = [&](const at::Tensor& output, int mb, double& unscaled) {
    const at::Tensor loss = prediction_loss(output, batches[static_cast<std::size_t>(mb)].targets);
    unscaled = loss.item<double>();
    return scaler.scale_loss(loss / o.accumulation);
  };
  const PipelineStepStats stats = engine->train_step(stage, inputs, reducer.get());
  times.forward += stats.forward_s;
  times.backward += stats.backward_s;
  times.pipeline_wait += stats.transfer_wait_s;
  return stats.loss;
}

// Collective over the world, on the way to an error only: "the loss was nan on rank 1" or, if every rank's loss was
// finite, that a gradient overflowed.
std::string Trainer::Impl::where_losses_were_not_finite(double local_loss) {
  at::Tensor losses = at::empty({comm.size()}, at::kDouble);
  comm.allgather(losses, at::tensor({local_loss}, at::kDouble))->wait();
  std::vector<std::string> ranks;
  for (int r = 0; r < comm.size(); ++r) {
    const double loss = losses[r].item<double>();
    if (!std::isfinite(loss)) ranks.push_back(fmt::format("{} on rank {}", loss, r));
  }
  if (ranks.empty()) return "the loss was finite on every rank, a gradient overflowed";
  return fmt::format("the loss was {}", fmt::join(ranks, ", "));
}

void Trainer::Impl::optimizer_step(double local_loss) {
  // The decision is taken from the reduced gradients, which are identical on every rank (Note [Loss scale agreement]).
  bool found_inf =
      scaler.enabled() ? reducer->unscale_and_check_finite(1.0 / scaler.scale()) : reducer->found_non_finite();
  double norm = o.clip_grad_norm > 0 ? reducer->gradient_norm() : 0;
  if (engine) {
    // Each stage knows only its own layers: the step is skipped, and the gradients clipped, by the whole model's
    // figures, agreed along the pipeline (the replicas of a stage already agree, Note [Gradient buckets]).
    at::Tensor figures = at::tensor({found_inf ? 1.0 : 0.0, norm * norm}, at::kDouble);
    grid->pipeline->allreduce(figures, comm::ReduceOp::kSum)->wait();
    found_inf = figures[0].item<double>() > 0;
    norm = std::sqrt(figures[1].item<double>());
  }
  if (found_inf && !scaler.enabled() && !o.skip_non_finite) {
    throw std::runtime_error(fmt::format(
        "non-finite gradient at step {}: {}; stopping on every rank (use --skip-non-finite to skip such steps instead)",
        step, where_losses_were_not_finite(local_loss)));
  }
  if (found_inf) ++skipped_steps;
  if (!found_inf) {
    if (o.clip_grad_norm > 0 && norm > o.clip_grad_norm) reducer->scale_gradients(o.clip_grad_norm / (norm + 1e-6));
    set_learning_rate(*optimizer, lr->lr_at(step));
    optimizer->step();
  }
  compat::zero_grad_in_place(*optimizer);
  scaler.update(found_inf);
  ++step;
}

}  // namespace dtrain::runtime
