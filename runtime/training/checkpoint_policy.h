#pragma once
// When a run writes checkpoints (every N steps and at the end) and which one it resumes from: the path given, or
// with "auto" the newest one that every pipeline stage has (the stages write their own files, and a failure between
// two of those writes leaves some stages one checkpoint ahead).

#include <cstdint>
#include <optional>
#include <string>

#include "runtime/training/checkpoint.h"
#include "runtime/training/parallel_grid.h"

namespace dtrain::runtime {

struct CheckpointOptions {
  std::string folder;      // empty: no checkpoints
  std::int64_t every = 0;  // steps between checkpoints (0: only at the end)
  int keep = 3;
  std::string resume;  // "", "auto" (the newest in `folder`, if any) or a checkpoint path
};

class CheckpointPolicy {
 public:
  // Throws std::invalid_argument naming a bad option, CheckpointError if the folder cannot be made.
  CheckpointPolicy(CheckpointOptions options, ParallelGrid& grid);

  // Whether a checkpoint is written after step `step` inside the run (the run's end always writes one).
  bool due_after(std::int64_t step) const;
  // Collective: writes this rank's part of a checkpoint of `state`; returns its path ("" without a folder).
  std::string save(const CheckpointContents& contents, const TrainingState& state);
  // Collective: reads the checkpoint to resume from into `contents`; nothing when the run starts fresh.
  std::optional<std::pair<std::string, TrainingState>> resume(CheckpointContents& contents);

 private:
  std::string resume_path();

  CheckpointOptions options_;
  ParallelGrid& grid_;
  std::optional<CheckpointStore> store_;
};

}  // namespace dtrain::runtime
