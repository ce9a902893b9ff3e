#pragma once
// The `dtrain` command's options: Boost.Program_options groups, an optional config file (key = value, the same names
// as the long options) whose values the command line overrides, and validation that names the offending option.

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "runtime/data/hdf5_data_feed.h"
#include "runtime/device/device_selection.h"
#include "runtime/pipeline/pipeline_partition.h"
#include "runtime/training/trainer.h"

namespace dtrain::runtime {

struct DataOptions {
  std::string train_dir;         // a sharded dataset (manifest + shards, see docs/shard-format.md)
  std::string eval_dir;          // optional
  std::int64_t batch_size = 64;  // per rank
  int prefetch_depth = 4;
  ReadMode read_mode = ReadMode::kIndependent;
  bool drop_last = false;
  bool verify = false;  // check every shard's CRC-32s against the manifest before training
  std::uint64_t seed = 0;
  double fraction = 1.0;           // use this fraction of each dataset (quick validation)
  std::string inputs = "images";   // dataset names in the shards
  std::string targets = "labels";  // or "next-token" (language models, see runtime/data/hdf5_data_feed.h)
};

struct PipelineOptions {
  int stages = 1;  // pipeline stages; the ranks / stages replicas train data-parallel
  PartitionCost partition = PartitionCost::kParameters;  // what the built-in model's stages are balanced by
  std::vector<std::string> stage_modules;                // or one TorchScript module file per stage
};

struct CommandLine {
  std::string config_file;
  std::string model = "cnn";  // a name from the model registry
  std::string torchscript;    // or a TorchScript module file
  std::string export_model;   // after training: the trained model for other tools (TrainableModel::export_to)
  PipelineOptions pipeline;
  DeviceRequest device = DeviceRequest::kAuto;  // resolved per rank by plan_device (runtime/device/)
  BackendRequest backend = BackendRequest::kAuto;
  int threads = 1;  // intra-op threads per rank
  double comm_timeout_s = 300;
  bool dry_run = false;
  bool quick_validation = false;
  DataOptions data;
  TrainerOptions trainer;
};

// Parses argv (and the config file it names). Throws std::invalid_argument with a one-line message naming the
// option on any bad value.
struct ParsedCommandLine {
  std::string help;  // set when --help or --version was given: print it and exit
  CommandLine options;
};
ParsedCommandLine parse_command_line(int argc, const char* const* argv);

}  // namespace dtrain::runtime
