#include "runtime/trainer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/functional/loss.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <stdexcept>

#include "runtime/checkpoint.h"
#include "runtime/memory_monitor.h"
#include "runtime/progress_reporter.h"
#include "runtime/torch_compat.h"

namespace dtrain::runtime {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Where one interval's step time went (seconds, summed over its steps).
struct StepTimes {
  double data = 0, forward = 0, backward = 0, comm = 0, optimizer = 0;
  double total() const { return data + forward + backward + comm + optimizer; }
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
  comm::Communicator& comm;
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
  std::int64_t epoch = 0;  // the epoch being trained (or the next one to start)
  bool mid_epoch = false;  // `train` stands inside `epoch` (a resume or a stop by --max-steps)
  double best_metric = NAN;
  std::int64_t epochs_without_improvement = 0;
  std::string last_checkpoint;

  Impl(TrainerOptions options, TrainableModel& m, DataFeed& t, DataFeed* e, comm::Communicator& c)
      : o(std::move(options)), model(m), train(t), eval(e), comm(c), scaler(o.scaler), memory(o.memory_warn_gb) {}

  CheckpointContents contents() { return {model.name(), model.parameters(), model.buffers(), optimizer.get()}; }
  void save_checkpoint();
  void maybe_resume();
  EvalResult evaluate();
  bool end_of_epoch(const EvalResult& result);
  void optimizer_step(double local_loss);
};

void Trainer::Impl::save_checkpoint() {
  if (!store) return;
  TrainingProgress progress;
  progress.step = step;
  progress.epoch = epoch;
  progress.sampler_state = train.state();
  progress.loss_scale = scaler.scale();
  progress.loss_scale_clean_steps = scaler.clean_steps();
  progress.extra = {{"best_metric", std::isnan(best_metric) ? nlohmann::json() : nlohmann::json(best_metric)},
                    {"epochs_without_improvement", epochs_without_improvement},
                    {"mid_epoch", mid_epoch}};
  last_checkpoint = store->save(comm, contents(), progress);
}

void Trainer::Impl::maybe_resume() {
  if (o.resume.empty()) return;
  std::string path = o.resume;
  if (path == "auto") {
    // Rank 0 looks (the folder is shared by all ranks); everyone follows its answer.
    path = comm::broadcast_string(comm, comm.rank() == 0 ? store->latest().value_or("") : "", 0);
    if (path.empty()) return;  // nothing to resume from: a fresh start
  }
  CheckpointContents into = contents();
  const TrainingProgress progress = load_checkpoint(comm, path, into);
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
  model.set_training(false);
  at::NoGradGuard no_grad;
  at::Tensor sums = at::zeros({3}, at::kDouble);  // loss, correct, samples (padding excluded)
  eval->start_epoch(0);
  while (auto batch = eval->next()) {
    at::Tensor logits;
    {
      compat::AutocastScope autocast(o.amp != "none", autocast_dtype(o.amp));
      logits = model.forward(batch->inputs);
    }
    logits = logits.to(at::kFloat);
    const at::Tensor losses = torch::nn::functional::cross_entropy(
        logits, batch->targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    const at::Tensor valid = batch->valid.to(at::kDouble);
    sums[0] += (losses.to(at::kDouble) * valid).sum();
    sums[1] += (logits.argmax(1).eq(batch->targets).to(at::kDouble) * valid).sum();
    sums[2] += valid.sum();
  }
  comm.allreduce(sums, comm::ReduceOp::kSum)->wait();
  result.samples = static_cast<std::int64_t>(sums[2].item<double>());
  if (result.samples > 0) {
    result.loss = sums[0].item<double>() / static_cast<double>(result.samples);
    result.accuracy = sums[1].item<double>() / static_cast<double>(result.samples);
  }
  model.set_training(true);
  return result;
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
                 comm::Communicator& comm)
    : impl_(std::make_unique<Impl>(std::move(options), model, train, eval, comm)) {
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
  if (!s.o.checkpoint_dir.empty()) s.store.emplace(s.o.checkpoint_dir, s.o.keep_checkpoints);

  s.reducer = std::make_unique<Reducer>(model.parameters(), model.buffers(), comm, s.o.reducer);
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
    int micro = 0;
    double step_loss = 0;
    for (;;) {
      auto t = Clock::now();
      std::optional<Batch> batch = s.train.next();
      times.data += seconds_since(t);
      if (!batch) break;

      t = Clock::now();
      at::Tensor loss;
      {
        compat::AutocastScope autocast(s.o.amp != "none", autocast_dtype(s.o.amp));
        loss = torch::nn::functional::cross_entropy(s.model.forward(batch->inputs).to(at::kFloat), batch->targets);
      }
      times.forward += seconds_since(t);
      const double local_loss = loss.item<double>();
      step_loss += local_loss / s.o.accumulation;
      interval_loss += local_loss;
      ++interval_micro_batches;

      t = Clock::now();
      const at::Tensor scaled = s.scaler.scale_loss(loss / s.o.accumulation);
      if (++micro < s.o.accumulation) {
        Reducer::NoSync no_sync(*s.reducer);
        scaled.backward();
        times.backward += seconds_since(t);
        continue;
      }
      scaled.backward();
      times.backward += seconds_since(t);
      t = Clock::now();
      s.reducer->finish_backward();
      times.comm += seconds_since(t);

      t = Clock::now();
      s.optimizer_step(step_loss);
      times.optimizer += seconds_since(t);
      micro = 0;
      step_loss = 0;
      ++interval_steps;

      const bool last = s.step >= s.total_steps;
      if (s.step % s.o.log_every == 0 || last) {
        // One small collective per interval: the mean loss and step-time breakdown over all ranks.
        at::Tensor sums = at::tensor({interval_loss, static_cast<double>(interval_micro_batches), times.data,
                                      times.forward, times.backward, times.comm, times.optimizer},
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
      if (s.o.checkpoint_every > 0 && s.step % s.o.checkpoint_every == 0 && !last) s.save_checkpoint();
      if (last) {
        stop = true;
        break;
      }
    }
    if (stop && s.train.batches_left() > 0) break;  // stopped by --max-steps inside the epoch: no evaluation
    s.mid_epoch = false;
    result.epochs_completed = s.epoch + 1;
    result.last_eval = s.evaluate();
    if (s.eval != nullptr) {
      s.reporter->event(fmt::format("epoch {}: eval loss {:.4f}, accuracy {:.4f} ({} samples)", s.epoch,
                                    result.last_eval.loss, result.last_eval.accuracy, result.last_eval.samples),
                        {{"event", "eval"},
                         {"epoch", s.epoch},
                         {"step", s.step},
                         {"loss", result.last_eval.loss},
                         {"accuracy", result.last_eval.accuracy},
                         {"samples", result.last_eval.samples}});
    }
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
  result.seconds = seconds_since(start);
  at::Tensor peak = at::tensor({current_memory().peak_gb}, at::kDouble);
  s.comm.allreduce(peak, comm::ReduceOp::kMax)->wait();
  result.peak_memory_gb = peak.item<double>();
  result.last_checkpoint = s.last_checkpoint;
  return result;
}

void Trainer::Impl::optimizer_step(double local_loss) {
  // The decision is taken from the reduced gradients, which are identical on every rank (Note [Loss scale agreement]).
  const bool found_inf =
      scaler.enabled() ? reducer->unscale_and_check_finite(1.0 / scaler.scale()) : reducer->found_non_finite();
  if (found_inf && !scaler.enabled() && !o.skip_non_finite) {
    throw std::runtime_error(fmt::format(
        "non-finite gradient at step {} (rank {}: its loss was {}); stopping on every rank (use --skip-non-finite to "
        "skip such steps instead)",
        step, comm.rank(), local_loss));
  }
  if (!found_inf) {
    if (o.clip_grad_norm > 0) {
      const double norm = reducer->gradient_norm();
      if (norm > o.clip_grad_norm) reducer->scale_gradients(o.clip_grad_norm / (norm + 1e-6));
    }
    set_learning_rate(*optimizer, lr->lr_at(step));
    optimizer->step();
  }
  compat::zero_grad_in_place(*optimizer);
  scaler.update(found_inf);
  ++step;
}

}  // namespace dtrain::runtime
