#pragma once
// Checkpoints: everything a run needs to continue bit for bit — model, optimizer, loss scaler, sampler position,
// every rank's RNG state, step and epoch — in one file written by rank 0. With a sharded optimizer (Note [Optimizer
// shards]) every rank also writes its own shard of the optimizer state beside it (in ZeRO stage 3 with its shard of
// the parameters), "checkpoint-<step>[.<part>].optimizer-<rank>-of-<ranks>.pt"; the main file is the manifest of
// the parts: its metadata names the shard layout and the checksum of every shard's metadata.
// Note [Atomic checkpoints]: every file of a checkpoint is written to a temporary file in the same folder and
// fsync'ed; once every rank's files are written, each rank renames its shard to its final name, then rank 0 renames
// the main file and fsyncs the folder: a main file under its final name means that every part was written. Only then
// are checkpoints beyond the last `keep` removed, with the temporary files of writes that a killed process never
// finished (they are never read: only final names count). A failed write (full disk, unwritable folder) removes the
// checkpoint's files and leaves every earlier checkpoint untouched, and every rank gets the same error.
// Note [Background checkpoint writes]: save() holds training only while it copies the state to host memory (and
// computes the checksums and gathers the RNG states); a thread writes the files from those copies while training
// goes on, and complete(), called after every step, commits the checkpoint once every rank's thread is done. The
// next save, the run's end and a stop signal wait for a write still going; a write that failed is every rank's
// error at the first step after every writer has ended, with the previous checkpoint intact.
// Note [Verified checkpoints]: every file begins with its metadata and that text's XXH3 checksum; the metadata holds
// the checksum of every other entry (each parameter and buffer by name, the RNG states, each of the optimizer's state
// tensors, each parameter shard), and the optimizer's options and step counts. load_checkpoint reads and verifies
// every entry of the main file and of the shards it needs before it writes anything into the model, so a damaged
// file changes nothing; the error names the file and the part. A shard must also name the step, rank and world size
// of its checkpoint, and its metadata's checksum must be the one the main file lists.

#include <torch/optim/optimizer.h>

#include <cstdint>
#include <future>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/control_plane.h"
#include "runtime/device/compute_device.h"
#include "runtime/model/named_tensor.h"
#include "runtime/training/shard_layout.h"
#include "runtime/training/training_state.h"

namespace dtrain::runtime {

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The file is not what was written: unreadable, truncated, a checksum that differs, a part missing (Note [Verified
// checkpoints]). `--resume auto` falls back to an older checkpoint; every other CheckpointError (another model,
// another number of ranks) is the run's own mistake and stops it.
class DamagedCheckpointError : public CheckpointError {
 public:
  using CheckpointError::CheckpointError;
};

struct CheckpointContents {
  std::string model_name;
  std::vector<NamedTensor> parameters;  // written from / read into these tensors
  std::vector<NamedTensor> buffers;
  torch::optim::Optimizer* optimizer = nullptr;
  std::string optimizer_kind;  // "sgd", "adam", ...: a checkpoint of another optimizer is refused by name
  // Where the model lives: tensors are written from CPU copies and read back onto this device (a checkpoint of a GPU
  // run resumes on CPU ranks and the other way round); its random state is saved beside the CPU generator's, and
  // restored when the checkpoint was written on the same kind of device. Null: the CPU.
  ComputeDevice* device = nullptr;
  // ModelOptimizer::shard_layout(): not sharded() when `optimizer` holds the state of every parameter; otherwise
  // `optimizer` is this rank's shard, written to and read from its own file (and re-cut from the shards of another
  // number of ranks: Note [Re-sharding]).
  ShardLayout optimizer_shards = {};
  // ZeRO stage 3 (ModelOptimizer::parameter_shards()): the parameters are these shards, written to and read from the
  // optimizer shard file with the optimizer state; the main file lists the parameters' names and shapes only.
  std::vector<at::Tensor> parameter_shards = {};
};

class CheckpointStore {
 public:
  // `folder` is created if missing (an error if that fails). Keeps the newest `keep` checkpoints (>= 1). Stage
  // `stage` of a pipeline of `stages` > 1 stores its own layers as part "stage<s>-of-<p>":
  // "checkpoint-<step>.<part>.pt", pruned per part.
  CheckpointStore(std::string folder, int keep, int stage = 0, int stages = 1);

  // Collective over `control` (the replicas of this model or stage): first completes a write still going (waits),
  // then copies this rank's part of a checkpoint of `state` at path_for(state.step) to host memory (every rank's RNG
  // state gathered into rank 0's) and starts writing it in the background (Note [Background checkpoint writes]).
  // Returns the path; complete() commits it.
  std::string save(comm::ControlPlane& control, const CheckpointContents& contents, const TrainingState& state);
  struct Written {
    std::string path;
    std::int64_t step = 0;
    double write_seconds = 0;  // this rank's background write
  };
  // Collective: commits the checkpoint being written once every rank has written its part (with `wait`, waits for
  // that): Note [Atomic checkpoints]. Returns it; nothing if no write is going or, without `wait`, a rank still
  // writes. Throws comm::AgreedError on every rank if a part failed (Note [Agreed errors]); the checkpoint's files
  // are removed.
  std::optional<Written> complete(comm::ControlPlane& control, bool wait);
  bool writing() const { return pending_.has_value(); }

  // The newest checkpoint of this part in the folder (before step `before`), if any, and its step.
  std::optional<std::string> latest(std::int64_t before = std::numeric_limits<std::int64_t>::max()) const;
  std::optional<std::int64_t> latest_step(std::int64_t before = std::numeric_limits<std::int64_t>::max()) const;
  // "<folder>/checkpoint-<step, 9 digits>[.<part>].pt"
  std::string path_for(std::int64_t step) const;
  // A checkpoint in the folder written with another number of pipeline stages (another part name), if any.
  std::optional<std::string> of_another_pipeline() const;

  const std::string& folder() const { return folder_; }

 private:
  // The files of the checkpoint being written, under their temporary names until complete() renames them.
  struct WriteOutcome {
    std::string error;  // "" when every file is written and fsync'ed
    double seconds = 0;
  };
  struct Pending {
    std::string path;
    std::string shard;  // this rank's optimizer shard file, "" without one
    std::int64_t step = 0;
    std::future<WriteOutcome> write;
    std::string previous;  // the newest committed checkpoint when this one began, for the error
  };
  void remove_files_of(const Pending& pending) const;
  // Removes the checkpoints of this part beyond the newest `keep` and the files of writes never finished.
  void prune() const;

  std::string folder_;
  int keep_;
  int stages_;
  std::string part_;
  std::optional<Pending> pending_;
  // The host copies of this rank's part of the last checkpoint, reused by the next (HostCopier in checkpoint.cpp):
  // between checkpoints a rank keeps one host copy of what it writes.
  std::vector<at::Tensor> host_buffers_;
};

// The file of pipeline stage `stage` (of `stages`) of the checkpoint that `path`, the file of any of its stages,
// belongs to: a stage resumes from its own file when told any stage's. `path` itself without a pipeline.
std::string stage_file_of(const std::string& path, int stage, int stages);

// The file of rank `rank`'s optimizer shard of the checkpoint `checkpoint` (a main file).
std::string optimizer_shard_file(const std::string& checkpoint, int rank, int ranks);

// What a checkpoint holds, read without a model (dtrain-inspect): its metadata (JSON) and every entry of the main
// file and of each optimizer shard beside it, with its checksum's verdict. Throws CheckpointError if the main file
// has no metadata that can be read.
struct CheckpointEntry {
  std::string file;
  std::string part;    // "parameter 0.weight", "optimizer state", ...
  std::string shape;   // "Float [3, 4]"; empty when the entry cannot be read
  std::string status;  // "ok", "damaged (checksum mismatch)", "missing", or why it cannot be read
};
struct CheckpointInspection {
  std::string meta_json;
  std::string shard_layout;  // ShardLayout::describe(), "" when the optimizer state is in the main file
  std::vector<CheckpointEntry> entries;
};
CheckpointInspection inspect_checkpoint(const std::string& path);

// Collective over `control`: every rank reads `path` into `contents` and restores its own RNG state (a rank the
// writing run did not have gets a generator seeded from the checkpoint and its rank: elastic resume, on any number
// of ranks; sharded optimizer state is re-cut from the shards of the writing ranks, Note [Re-sharding]). Throws
// CheckpointError naming the file and the problem: no such file, another model (names, shapes), optimizer state
// sharded over other buckets or not sharded alike;
// DamagedCheckpointError if the main file is damaged or unreadable (the same on every rank: they read the same file);
// comm::AgreedError on every rank if a rank's optimizer shard is missing, unreadable or damaged.
TrainingState load_checkpoint(comm::ControlPlane& control, const std::string& path, CheckpointContents& contents);

}  // namespace dtrain::runtime
