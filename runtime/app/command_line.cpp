#include "runtime/app/command_line.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "jobs/model_registry.h"
#include "runtime/app/version.h"

namespace dtrain::runtime {

namespace po = boost::program_options;

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

// "job.cfg:7", the first line of the config file that sets `option` (Boost names it with or without dashes), or
// "job.cfg" if no line does.
std::string where_in_file(const std::string& file, std::string option) {
  option.erase(0, option.find_first_not_of('-'));
  std::ifstream in(file);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::size_t start = line.find_first_not_of(" \t");
    if (start != std::string::npos && line.compare(start, option.size(), option) == 0) {
      const std::size_t after = line.find_first_not_of(" \t", start + option.size());
      if (after == std::string::npos || line[after] == '=') return fmt::format("{}:{}", file, number);
    }
  }
  return file;
}

// The choice of `option` named `name`: the one of `choices` whose to_string() it is. Otherwise "--amp: 'fp8' is not
// one of none, bf16, fp16" (or "is not a or b" for two choices).
template <typename Enum>
Enum choose(const char* option, const std::string& name, std::initializer_list<Enum> choices) {
  std::vector<std::string> names;
  for (Enum choice : choices) {
    if (name == to_string(choice)) return choice;
    names.push_back(to_string(choice));
  }
  const std::string expected = names.size() == 2 ? fmt::format("{} or {}", names[0], names[1])
                                                 : fmt::format("one of {}", fmt::join(names, ", "));
  throw std::invalid_argument(fmt::format("--{}: '{}' is not {}", option, name, expected));
}

}  // namespace

ParsedCommandLine parse_command_line(int argc, const char* const* argv) {
  ParsedCommandLine parsed;
  CommandLine& c = parsed.options;
  TrainerOptions& t = c.trainer;
  DataOptions& d = c.data;
  // Choices are read as names and turned into their enums once, below.
  std::string backend = to_string(c.backend), device = to_string(c.device), read_mode = to_string(d.read_mode);
  std::string optimizer = to_string(t.optimizer.kind), lr_schedule = to_string(t.lr.kind);
  std::string pipeline_schedule = to_string(t.pipeline_schedule), partition = to_string(c.pipeline.partition);
  std::string amp_name = to_string(t.amp), early_stopping_metric = to_string(t.early_stopping_metric);
  std::string progress = to_string(t.progress);
  std::string compression = "none";
  std::string loss_scaling = "auto";
  double bucket_mb = 25;
  double first_bucket_mb = 1;
  int micro_batches = 0;
  bool checkpoint_all = false;
  int checkpoint_every = 0;
  std::string stage_modules;

  po::options_description general("General");
  general.add_options()("help,h", "show this help and exit")(
      "version", "print the versions of dtrain, LibTorch, NCCL, MPI and HDF5 and exit")(
      "config", po::value(&c.config_file), "config file of 'option = value' lines; the command line overrides it")(
      "dry-run", po::bool_switch(&c.dry_run), "print the rank -> host -> local rank -> device table, check it, exit")(
      "device", po::value(&device)->default_value(device),
      "cpu | cuda | auto (cuda where this LibTorch has CUDA and a GPU is visible); a rank's GPU is its local rank "
      "modulo the visible GPUs")(
      "backend", po::value(&backend)->default_value(backend),
      "data plane: nccl | mpi | auto (nccl on cuda, mpi on cpu); mpi with --device cuda stages through pinned host "
      "memory, so ranks can share a GPU")(
      "allow-tf32", po::bool_switch(&t.allow_tf32),
      "let fp32 matrix products and convolutions use TF32 tensor cores on GPUs (faster, ~1e-3 relative error)")(
      "threads", po::value(&c.threads)->default_value(c.threads), "intra-op threads per rank")(
      "comm-timeout-s", po::value(&c.comm_timeout_s)->default_value(c.comm_timeout_s),
      "deadline of every collective, seconds")(
      "quick-validation", po::bool_switch(&c.quick_validation),
      "a short run on 10% of the data for at most 2 epochs that reports time, peak memory and accuracy");

  po::options_description data("Data");
  data.add_options()("train-data", po::value(&d.train_dir), "sharded training dataset folder (required)")(
      "eval-data", po::value(&d.eval_dir), "sharded evaluation dataset folder")(
      "batch-size", po::value(&d.batch_size)->default_value(d.batch_size), "samples per rank per micro-batch")(
      "prefetch-depth", po::value(&d.prefetch_depth)->default_value(d.prefetch_depth), "batches read ahead per rank")(
      "read-mode", po::value(&read_mode)->default_value(read_mode), "independent | collective (MPI-IO)")(
      "drop-last", po::bool_switch(&d.drop_last), "drop the tail of each epoch instead of padding it")(
      "verify-data", po::bool_switch(&d.verify),
      "read every shard once before training and check its CRC-32s against the manifest (finds corrupt copies)")(
      "seed", po::value(&d.seed)->default_value(d.seed), "seed of the sample order and of the model's initial weights")(
      "data-fraction", po::value(&d.fraction)->default_value(d.fraction), "use this fraction of each dataset")(
      "inputs", po::value(&d.inputs)->default_value(d.inputs), "name of the input dataset in the shards")(
      "targets", po::value(&d.targets)->default_value(d.targets),
      "name of the label dataset in the shards, or next-token (language models on text shards)");

  po::options_description model("Model");
  model.add_options()("model", po::value(&c.model)->default_value(c.model),
                      fmt::format("a built-in model: {}", fmt::join(jobs::model_names(), " | ")).c_str())(
      "torchscript", po::value(&c.torchscript), "train this TorchScript module file instead of a built-in model");

  po::options_description optimization("Optimization");
  optimization.add_options()("epochs", po::value(&t.epochs)->default_value(t.epochs), "epochs to train")(
      "max-steps", po::value(&t.max_steps)->default_value(t.max_steps), "stop after this many steps (0: no limit)")(
      "optimizer", po::value(&optimizer)->default_value(optimizer), "sgd | adam | adamw")(
      "lr", po::value(&t.optimizer.lr)->default_value(t.optimizer.lr), "learning rate")(
      "momentum", po::value(&t.optimizer.momentum)->default_value(t.optimizer.momentum), "SGD momentum")(
      "nesterov", po::bool_switch(&t.optimizer.nesterov), "SGD with Nesterov momentum")(
      "weight-decay", po::value(&t.optimizer.weight_decay)->default_value(t.optimizer.weight_decay), "weight decay")(
      "lr-schedule", po::value(&lr_schedule)->default_value(lr_schedule), "constant | step | cosine")(
      "warmup-steps", po::value(&t.lr.warmup_steps)->default_value(t.lr.warmup_steps), "linear warm-up steps")(
      "lr-step-size", po::value(&t.lr.step_size)->default_value(t.lr.step_size), "step schedule: steps per decay")(
      "lr-gamma", po::value(&t.lr.gamma)->default_value(t.lr.gamma), "step schedule: decay factor")(
      "min-lr", po::value(&t.lr.min_lr)->default_value(t.lr.min_lr), "cosine schedule: final learning rate")(
      "grad-accumulation", po::value(&t.accumulation)->default_value(t.accumulation), "micro-batches per step")(
      "clip-grad-norm", po::value(&t.clip_grad_norm)->default_value(t.clip_grad_norm),
      "clip the global gradient L2 norm to this (0: off)")("skip-non-finite", po::bool_switch(&t.skip_non_finite),
                                                           "skip steps with inf/NaN gradients instead of stopping");

  po::options_description parallel("Data parallelism");
  parallel.add_options()("bucket-mb", po::value(&bucket_mb)->default_value(bucket_mb), "gradient bucket cap, MiB")(
      "first-bucket-mb", po::value(&first_bucket_mb)->default_value(first_bucket_mb), "first gradient bucket, MiB")(
      "find-unused-parameters", po::bool_switch(&t.reducer.find_unused_parameters),
      "treat parameters without a gradient as zero gradients instead of an error")(
      "grad-compression", po::value(&compression)->default_value(compression),
      "allreduce gradients as: none | bf16 | fp16")(
      "zero-stage", po::value(&t.zero_stage)->default_value(t.zero_stage),
      "ZeRO: 0 replicated | 1 shard the optimizer state | 2 also the gradients | 3 also the parameters (models made of "
      "blocks), over the replicas")("activation-checkpointing", po::bool_switch(&checkpoint_all),
                                    "recompute every block's activations in backward instead of keeping them")(
      "activation-checkpointing-every", po::value(&checkpoint_every),
      "recompute the activations of every k-th block only (blocks 0, k, 2k, ...)");

  po::options_description pipeline("Pipeline parallelism");
  pipeline.add_options()("pipeline-stages", po::value(&c.pipeline.stages)->default_value(c.pipeline.stages),
                         "cut the model into this many stages on consecutive ranks; ranks / stages replicas train "
                         "data-parallel")(
      "micro-batches", po::value(&micro_batches),
      "micro-batches per step streamed through the stages (the same setting as --grad-accumulation)")(
      "pipeline-schedule", po::value(&pipeline_schedule)->default_value(pipeline_schedule), "1f1b | gpipe")(
      "partition", po::value(&partition)->default_value(partition),
      "balance the built-in model's stages by: parameters | time (measured forward + backward)")(
      "stage-modules", po::value(&stage_modules),
      "comma-separated TorchScript module files, one per stage, instead of cutting a built-in model");

  po::options_description amp("Mixed precision");
  amp.add_options()("amp", po::value(&amp_name)->default_value(amp_name), "autocast: none | bf16 | fp16")(
      "loss-scaling", po::value(&loss_scaling)->default_value(loss_scaling),
      "auto (dynamic for fp16, none for bf16) | dynamic | none")(
      "loss-scale-init", po::value(&t.scaler.init_scale)->default_value(t.scaler.init_scale), "initial loss scale")(
      "loss-scale-growth-interval", po::value(&t.scaler.growth_interval)->default_value(t.scaler.growth_interval),
      "clean steps before the scale grows")(
      "loss-scale-growth", po::value(&t.scaler.growth_factor)->default_value(t.scaler.growth_factor), "growth factor")(
      "loss-scale-backoff", po::value(&t.scaler.backoff_factor)->default_value(t.scaler.backoff_factor),
      "backoff factor on inf/NaN");

  po::options_description evaluation("Evaluation and early stopping");
  evaluation.add_options()("early-stopping-patience",
                           po::value(&t.early_stopping_patience)->default_value(t.early_stopping_patience),
                           "stop after this many epochs without improvement (0: off)")(
      "early-stopping-metric", po::value(&early_stopping_metric)->default_value(early_stopping_metric),
      "accuracy | loss")("early-stopping-min-delta",
                         po::value(&t.early_stopping_min_delta)->default_value(t.early_stopping_min_delta),
                         "smallest change that counts as an improvement");

  po::options_description checkpoints("Checkpoints");
  checkpoints.add_options()("checkpoint-dir", po::value(&t.checkpoint_dir), "folder for checkpoints")(
      "checkpoint-every", po::value(&t.checkpoint_every)->default_value(t.checkpoint_every),
      "steps between checkpoints (0: only at the end)")(
      "keep-checkpoints", po::value(&t.keep_checkpoints)->default_value(t.keep_checkpoints),
      "how many recent checkpoints to keep")(
      "checkpoint-async", po::value(&t.checkpoint_async)->default_value(t.checkpoint_async),
      "write checkpoints in the background: training waits only while the state is copied to host memory (false: "
      "until the files are written)")("resume", po::value(&t.resume),
                                      "continue from a checkpoint file, or 'auto' (the newest, if any)")(
      "export-model", po::value(&c.export_model),
      "after training, write the trained model here for other tools: a PyTorch state dict (torch.load, then "
      "load_state_dict) for a built-in model, the TorchScript module with its trained weights for --torchscript");

  po::options_description output("Output");
  output.add_options()("metrics-file", po::value(&t.metrics_file), "JSON-lines metrics written by rank 0")(
      "log-every", po::value(&t.log_every)->default_value(t.log_every), "steps between progress reports")(
      "progress", po::value(&progress)->default_value(progress), "auto | bar | lines | none")(
      "memory-warn-gb", po::value(&t.memory_warn_gb)->default_value(t.memory_warn_gb),
      "warn when a rank's resident memory passes this (0: off)")(
      "trace", po::value(&t.trace_file),
      "write a timeline of every rank's steps, bucket allreduces and pipeline transfers to this Chrome/Perfetto "
      "trace file (off by default)");

  po::options_description all(
      "dtrain: data- and pipeline-parallel LibTorch training over MPI (launch with mpirun or srun)");
  all.add(general)
      .add(data)
      .add(model)
      .add(optimization)
      .add(parallel)
      .add(pipeline)
      .add(amp)
      .add(evaluation)
      .add(checkpoints)
      .add(output);

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, all), vm);
    if (vm.count("config")) {
      const std::string file = vm["config"].as<std::string>();
      std::ifstream in(file);
      require(in.good(), fmt::format("--config: cannot read {}", file));
      // Relative data paths in a config file are relative to the file's folder, so a job folder can be moved.
      try {
        po::store(po::parse_config_file(in, all), vm);
      } catch (const po::error_with_option_name& e) {
        throw std::invalid_argument(fmt::format("--config {}: {}", where_in_file(file, e.get_option_name()), e.what()));
      }
    }
    // Printed like the help text: by rank 0, then every rank exits 0.
    if (vm.count("version")) {
      parsed.help = version_line() + "\n";
      return parsed;
    }
    if (vm.count("help")) {
      std::ostringstream help;
      help << all << "\n";
      parsed.help = help.str();
      return parsed;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw std::invalid_argument(e.what());
  }

  if (vm.count("config")) {
    const auto base = std::filesystem::path(c.config_file).parent_path();
    auto from_config = [&](const char* key, std::string& path) {
      if (!path.empty() && vm[key].defaulted() == false && std::filesystem::path(path).is_relative() &&
          !std::filesystem::exists(path)) {
        path = (base / path).string();
      }
    };
    from_config("train-data", d.train_dir);
    from_config("eval-data", d.eval_dir);
  }

  require(c.dry_run || !d.train_dir.empty(), "--train-data is required (a folder made by dtrain-shard)");
  c.device = choose("device", device, {DeviceRequest::kCpu, DeviceRequest::kCuda, DeviceRequest::kAuto});
  c.backend = choose("backend", backend, {BackendRequest::kMpi, BackendRequest::kNccl, BackendRequest::kAuto});
  require(c.threads >= 1, fmt::format("--threads must be >= 1 (got {})", c.threads));
  require(c.comm_timeout_s > 0, "--comm-timeout-s must be positive");
  require(d.batch_size >= 1, fmt::format("--batch-size must be >= 1 (got {})", d.batch_size));
  require(d.prefetch_depth >= 1, fmt::format("--prefetch-depth must be >= 1 (got {})", d.prefetch_depth));
  d.read_mode = choose("read-mode", read_mode, {ReadMode::kIndependent, ReadMode::kCollective});
  require(d.fraction > 0 && d.fraction <= 1, fmt::format("--data-fraction must be in (0, 1] (got {})", d.fraction));
  require(c.torchscript.empty() || vm["model"].defaulted(), "give either --model or --torchscript, not both");
  require(c.pipeline.stages >= 1, fmt::format("--pipeline-stages must be >= 1 (got {})", c.pipeline.stages));
  if (vm.count("micro-batches")) {
    require(micro_batches >= 1, fmt::format("--micro-batches must be >= 1 (got {})", micro_batches));
    require(vm["grad-accumulation"].defaulted() || t.accumulation == micro_batches,
            fmt::format("--micro-batches {} and --grad-accumulation {} are the same setting; give one", micro_batches,
                        t.accumulation));
    t.accumulation = micro_batches;
  }
  t.pipeline_schedule = choose("pipeline-schedule", pipeline_schedule, {ScheduleKind::k1F1B, ScheduleKind::kGPipe});
  c.pipeline.partition = choose("partition", partition, {PartitionCost::kParameters, PartitionCost::kTime});
  t.optimizer.kind = choose("optimizer", optimizer, {OptimizerKind::kSgd, OptimizerKind::kAdam, OptimizerKind::kAdamW});
  t.lr.kind =
      choose("lr-schedule", lr_schedule, {LrScheduleKind::kConstant, LrScheduleKind::kStep, LrScheduleKind::kCosine});
  t.amp = choose("amp", amp_name, {Precision::kFp32, Precision::kBf16, Precision::kFp16});
  t.early_stopping_metric = choose("early-stopping-metric", early_stopping_metric,
                                   {EarlyStoppingMetric::kAccuracy, EarlyStoppingMetric::kLoss});
  t.progress = choose("progress", progress,
                      {ProgressMode::kAuto, ProgressMode::kBar, ProgressMode::kLines, ProgressMode::kNone});
  for (std::size_t begin = 0; begin < stage_modules.size();) {
    const std::size_t end = std::min(stage_modules.find(',', begin), stage_modules.size());
    c.pipeline.stage_modules.push_back(stage_modules.substr(begin, end - begin));
    begin = end + 1;
  }
  if (!c.pipeline.stage_modules.empty()) {
    require(c.torchscript.empty() && vm["model"].defaulted(), "give --stage-modules or --model or --torchscript");
    require(static_cast<int>(c.pipeline.stage_modules.size()) == c.pipeline.stages,
            fmt::format("--stage-modules names {} files for --pipeline-stages {}; give one per stage",
                        c.pipeline.stage_modules.size(), c.pipeline.stages));
  }
  require(c.torchscript.empty() || c.pipeline.stages == 1,
          "--torchscript cannot be cut into stages; give one module per stage with --stage-modules");
  require(c.export_model.empty() || c.pipeline.stages == 1,
          "--export-model needs the whole model on one rank: with --pipeline-stages > 1 each stage holds a part; "
          "train (or resume) with --pipeline-stages 1 to export");
  require(bucket_mb > 0 && first_bucket_mb > 0, "--bucket-mb and --first-bucket-mb must be positive");
  require(!vm.count("activation-checkpointing-every") || checkpoint_every >= 1,
          fmt::format("--activation-checkpointing-every must be >= 1 (got {})", checkpoint_every));
  t.activation_checkpoint_every = checkpoint_every > 0 ? checkpoint_every : checkpoint_all ? 1 : 0;
  t.reducer.bucket_cap_bytes = static_cast<std::size_t>(bucket_mb * 1024 * 1024);
  t.reducer.first_bucket_bytes = static_cast<std::size_t>(first_bucket_mb * 1024 * 1024);
  if (compression == "bf16") {
    t.reducer.compression = at::kBFloat16;
  } else if (compression == "fp16") {
    t.reducer.compression = at::kHalf;
  } else {
    require(compression == "none", fmt::format("--grad-compression: '{}' is not none, bf16 or fp16", compression));
  }
  require(loss_scaling == "auto" || loss_scaling == "dynamic" || loss_scaling == "none",
          fmt::format("--loss-scaling: '{}' is not auto, dynamic or none", loss_scaling));
  t.scaler.enabled = loss_scaling == "dynamic" || (loss_scaling == "auto" && t.amp == Precision::kFp16);
  if (c.quick_validation) {
    d.fraction = std::min(d.fraction, 0.1);
    t.epochs = std::min<std::int64_t>(t.epochs, 2);
  }
  return parsed;
}

}  // namespace dtrain::runtime
