#pragma once
// When a run writes checkpoints (every N steps and at the end) and which one it resumes from: the path given, or
// with "auto" the newest intact one that every pipeline stage has (the stages write their own files, and a failure
// between two of those writes leaves some stages one checkpoint ahead). A damaged checkpoint (Note [Verified
// checkpoints]) given by path stops the run; with "auto" the ranks go back to the next older one, all together. A
// folder holding only checkpoints of another number of pipeline stages is an error, not a fresh start. Checkpoints
// are written in the background and committed by complete() after a later step (Note [Background checkpoint
// writes]).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/training/checkpoint.h"
#include "runtime/training/parallel_grid.h"

namespace dtrain::runtime {

struct CheckpointOptions {
  std::string folder;      // empty: no checkpoints
  std::int64_t every = 0;  // steps between checkpoints (0: only at the end)
  int keep = 3;
  std::string resume;      // "", "auto" (the newest in `folder`, if any) or a checkpoint path
  bool background = true;  // write in the background (Note [Background checkpoint writes])
};

class CheckpointPolicy {
 public:
  // Throws std::invalid_argument naming a bad option, CheckpointError if the folder cannot be made.
  CheckpointPolicy(CheckpointOptions options, ParallelGrid& grid);

  // Whether a checkpoint is written after step `step` inside the run (the run's end always writes one).
  bool due_after(std::int64_t step) const;
  // Collective: starts writing this rank's part of a checkpoint of `state`; complete() commits it. Call complete(true)
  // first: a checkpoint still being written is committed before the next begins. Returns its path ("" without a
  // folder).
  std::string save(const CheckpointContents& contents, const TrainingState& state);
  struct Committed {
    std::string path;
    std::int64_t step = 0;
    double blocking_seconds = 0;  // training held by it: the copies in save(), any wait in complete() (largest rank)
    double write_seconds = 0;     // the write itself (largest rank)
  };
  // Collective, after every step: commits the checkpoint being written once every rank has written its part; with
  // `wait`, or without background writes, waits for that. Returns it once committed. Throws comm::AgreedError on
  // every rank if its write failed. A wait at the run's end (not `training_waits`) holds no training.
  std::optional<Committed> complete(bool wait, bool training_waits = true);
  struct Resumed {
    std::string path;
    TrainingState state;
    std::vector<std::string> damaged;  // "auto": why each newer checkpoint was passed over, newest first
  };
  // Collective: reads the checkpoint to resume from into `contents`; nothing when the run starts fresh. Throws
  // comm::AgreedError on every rank when "auto" finds checkpoints but none intact.
  std::optional<Resumed> resume(CheckpointContents& contents);

 private:
  // "auto": the step of the newest checkpoint before step `before` that every stage has.
  std::optional<std::int64_t> auto_step(std::int64_t before);

  CheckpointOptions options_;
  ParallelGrid& grid_;
  std::optional<CheckpointStore> store_;
  double blocking_seconds_ = 0;  // of the checkpoint being written
};

}  // namespace dtrain::runtime
