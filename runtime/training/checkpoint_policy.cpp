#include "runtime/training/checkpoint_policy.h"

#include <fmt/format.h>

#include <stdexcept>

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
  return store_->save(*grid_.data_control, contents, state);
}

std::string CheckpointPolicy::resume_path() {
  // A pipeline stage given any stage's file of a checkpoint reads its own file of the same checkpoint.
  if (options_.resume != "auto") return stage_file_of(options_.resume, grid_.stage, grid_.stages);
  comm::ControlPlane& world = *grid_.world_control;
  // With "auto", rank 0 looks (the folder is shared by all ranks) and everyone follows its answer.
  if (grid_.stages == 1) return world.broadcast(world.rank() == 0 ? store_->latest().value_or("") : "", 0);
  const std::int64_t mine = store_->latest_step().value_or(-1);
  const std::vector<std::int64_t> bounds = world.min({mine, -mine});
  const std::int64_t oldest = bounds[0], newest = -bounds[1];
  if (newest < 0) return "";
  if (oldest < 0) {
    throw CheckpointError(
        fmt::format("--resume auto: some pipeline stages have checkpoints in {} and others none "
                    "(this stage's newest: {})",
                    store_->folder(), store_->latest().value_or("none")));
  }
  return store_->path_for(oldest);
}

std::optional<std::pair<std::string, TrainingState>> CheckpointPolicy::resume(CheckpointContents& contents) {
  if (options_.resume.empty()) return std::nullopt;
  const std::string path = resume_path();
  if (path.empty()) return std::nullopt;  // nothing to resume from: a fresh start
  return std::make_pair(path, load_checkpoint(*grid_.data_control, path, contents));
}

}  // namespace dtrain::runtime
