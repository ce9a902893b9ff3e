#pragma once
// Checkpoints: everything a run needs to continue bit for bit — model, optimizer, loss scaler, sampler position,
// every rank's RNG state, step and epoch — in one file written by rank 0. With a sharded optimizer (Note [Optimizer
// shards]) every rank also writes its own shard of the optimizer state beside it (in ZeRO stage 3 with its shard of
// the parameters), "checkpoint-<step>[.<part>].optimizer-<rank>-of-<ranks>.pt", before rank 0 writes the main file,
// whose metadata names the shard layout: a main file under its final name means that every shard was written.
// Note [Atomic checkpoints]: a checkpoint is written to a temporary file in the same folder, fsync'ed, renamed over
// its final name and the folder fsync'ed; only then are checkpoints beyond the last `keep` removed, with the
// temporary files of writes that a killed process never finished (they are never read: only final names count). A
// failed write (full disk, unwritable folder) removes its temporary file and leaves every earlier checkpoint
// untouched, and every rank gets the same error.
// Note [Verified checkpoints]: every file begins with its metadata and that text's XXH3 checksum; the metadata holds
// the checksum of every other entry (each parameter and buffer by name, the RNG states, the optimizer state as one
// serialized archive, each parameter shard). load_checkpoint reads and verifies every entry of the main file and of
// this rank's shard before it writes anything into the model, so a damaged file changes nothing; the error names the
// file and the part. A shard must also name the step, rank and world size of its checkpoint.

#include <torch/optim/optimizer.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/control_plane.h"
#include "runtime/device/compute_device.h"
#include "runtime/model/named_tensor.h"
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
  // ModelOptimizer::shard_layout(): "" when `optimizer` holds the state of every parameter; otherwise `optimizer` is
  // this rank's shard, written to and read from its own file.
  std::string optimizer_shard_layout = {};
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

  // Collective over `control` (the replicas of this model or stage): rank 0 writes path_for(state.step) atomically;
  // every rank's RNG state is gathered into it. Returns the path. Throws comm::AgreedError on every rank if the write
  // fails (Note [Agreed errors]).
  std::string save(comm::ControlPlane& control, const CheckpointContents& contents, const TrainingState& state);

  // The newest checkpoint of this part in the folder (before step `before`), if any, and its step.
  std::optional<std::string> latest(std::int64_t before = std::numeric_limits<std::int64_t>::max()) const;
  std::optional<std::int64_t> latest_step(std::int64_t before = std::numeric_limits<std::int64_t>::max()) const;
  // "<folder>/checkpoint-<step, 9 digits>[.<part>].pt"
  std::string path_for(std::int64_t step) const;

  const std::string& folder() const { return folder_; }

 private:
  std::string folder_;
  int keep_;
  std::string part_;
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
  std::vector<CheckpointEntry> entries;
};
CheckpointInspection inspect_checkpoint(const std::string& path);

// Collective over `control`: every rank reads `path` into `contents` and restores its own RNG state (a rank the
// writing run did not have gets a generator seeded from the checkpoint and its rank: elastic resume, on any number
// of ranks, of replicated optimizer state). Throws CheckpointError naming the file and the problem: no such file,
// another model (names, shapes), sharded optimizer state on another number of ranks or sharded otherwise;
// DamagedCheckpointError if the main file is damaged or unreadable (the same on every rank: they read the same file);
// comm::AgreedError on every rank if a rank's optimizer shard is missing, unreadable or damaged.
TrainingState load_checkpoint(comm::ControlPlane& control, const std::string& path, CheckpointContents& contents);

}  // namespace dtrain::runtime
