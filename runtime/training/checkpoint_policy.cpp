#include "runtime/training/checkpoint_policy.h"

#include <fmt/format.h>

#include <chrono>
#include <limits>
#include <stdexcept>

#include "comm/error.h"
#include "runtime/observability/timeline.h"

namespace dtrain::runtime {

CheckpointPolicy::CheckpointPolicy(CheckpointOptions options, ParallelGrid& grid)
    : options_(std::move(options)), grid_(grid) {
  if (options_.every < 0) throw std::invalid_argument("--checkpoint-every must be >= 0");
  if (options_.keep < 1) throw std::invalid_argument("--keep-checkpoints must be >= 1");
  if (options_.resume == "auto" && options_.folder.empty()) {
    throw std::invalid_argument("--resume auto needs --checkpoint-dir");
  }
  if (!options_.folder.empty()) store_.emplace(options_.folder, options_.keep, grid.stage, grid.stages);
}

bool CheckpointPolicy::due_after(std::int64_t step) const {
  return options_.every > 0 && step % options_.every == 0;
}

std::string CheckpointPolicy::save(const CheckpointContents& contents, const TrainingState& state) {
  if (!store_) return "";
  Timeline::Scope span("checkpoint", "checkpoint");
  const auto start = std::chrono::steady_clock::now();
  const std::string path = store_->save(*grid_.data_control, contents, state);
  blocking_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return path;
}

std::optional<CheckpointPolicy::Committed> CheckpointPolicy::complete(bool wait, bool training_waits) {
  if (!store_ || !store_->writing()) return std::nullopt;
  wait = wait || !options_.background;
  const auto start = std::chrono::steady_clock::now();
  std::optional<CheckpointStore::Written> written;
  {
    std::optional<Timeline::Scope> span;
    if (wait) span.emplace("checkpoint wait", "checkpoint");
    written = store_->complete(*grid_.data_control, wait);
  }
  if (wait && training_waits)
    blocking_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!written) return std::nullopt;
  comm::ControlPlane& replicas = *grid_.data_control;
  return Committed{written->path, written->step, replicas.max(blocking_seconds_), replicas.max(written->write_seconds)};
}

std::optional<std::int64_t> CheckpointPolicy::auto_step(std::int64_t before) {
  comm::ControlPlane& world = *grid_.world_control;
  const std::int64_t mine = store_->latest_step(before).value_or(-1);
  // Rank 0 looks (the folder is shared by all ranks) and everyone follows its answer.
  if (grid_.stages == 1) {
    const std::int64_t step = std::stoll(world.broadcast(std::to_string(mine), 0));
    return step < 0 ? std::nullopt : std::optional<std::int64_t>(step);
  }
  const std::vector<std::int64_t> bounds = world.min({mine, -mine});
  const std::int64_t oldest = bounds[0], newest = -bounds[1];
  if (newest < 0) return std::nullopt;
  if (oldest < 0) {
    throw CheckpointError(
        fmt::format("--resume auto: some pipeline stages have checkpoints in {} and others none "
                    "(this stage's newest: {})",
                    store_->folder(), store_->latest(before).value_or("none")));
  }
  return oldest;
}

std::optional<CheckpointPolicy::Resumed> CheckpointPolicy::resume(CheckpointContents& contents) {
  if (options_.resume.empty()) return std::nullopt;
  if (options_.resume != "auto") {
    // A pipeline stage given any stage's file of a checkpoint reads its own file of the same checkpoint.
    const std::string path = stage_file_of(options_.resume, grid_.stage, grid_.stages);
    return Resumed{path, load_checkpoint(*grid_.data_control, path, contents), {}};
  }
  std::vector<std::string> damaged;
  std::int64_t before = std::numeric_limits<std::int64_t>::max();
  for (auto step = auto_step(before); step; step = auto_step(before)) {
    const std::string path = store_->path_for(*step);
    std::string problem, mistake;
    TrainingState state;
    try {
      state = load_checkpoint(*grid_.data_control, path, contents);
    } catch (const DamagedCheckpointError& e) {
      problem = e.what();
    } catch (const CheckpointError& e) {  // another model, another number of ranks: no older checkpoint helps
      mistake = e.what();
    } catch (const comm::AgreedError& e) {  // a rank's optimizer shard
      problem = fmt::format("{} ({})", e.what(), e.where());
    }
    try {  // one pipeline stage's mistake stops every stage, none waits for it
      grid_.world_control->raise_if_any_failed(mistake);
    } catch (const comm::AgreedError& e) {
      throw CheckpointError(e.what());
    }
    // Every stage takes the same checkpoint: one stage's damaged file sends all of them back. What a damaged
    // attempt wrote into the model is nothing (verified before restored) or overwritten by the next.
    try {
      grid_.world_control->raise_if_any_failed(problem);
      return Resumed{path, state, damaged};
    } catch (const comm::AgreedError& e) {
      damaged.push_back(e.what());
      before = *step;
    }
  }
  if (damaged.empty()) {
    // Nothing to resume from: a fresh start, unless the folder holds checkpoints of another pipeline layout, which
    // this run would otherwise silently train over.
    const auto foreign = store_->of_another_pipeline();
    grid_.world_control->raise_if_any_failed(
        foreign ? fmt::format("--resume auto: {} was written with another number of pipeline stages; this run has {}: "
                              "a checkpoint resumes with the stage count that wrote it (and any number of replicas)",
                              *foreign, grid_.stages)
                : "");
    return std::nullopt;
  }
  // Every rank has come to this together: one agreed error, printed once (Note [Agreed errors]).
  grid_.world_control->raise_if_any_failed(
      fmt::format("--resume auto: no intact checkpoint in {} ({} damaged; the newest: {})", store_->folder(),
                  damaged.size(), damaged.front()));
  throw std::logic_error("unreachable: every rank raised above");
}

}  // namespace dtrain::runtime
