// The `dtrain` command: train a built-in model or a TorchScript module on sharded HDF5 data, data-parallel over every
// rank that mpirun or srun started. Errors end every rank with one line naming the problem and a non-zero exit.

#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>

#include "comm/control_plane.h"
#include "comm/error.h"
#include "comm/launch_check.h"
#include "comm/mpi_environment.h"
#include "comm/topology.h"
#include "comm/world.h"
#include "jobs/model_registry.h"
#include "runtime/app/command_line.h"
#include "runtime/data/hdf5_data_feed.h"
#include "runtime/device/compute_device.h"
#include "runtime/device/device_selection.h"
#include "runtime/model/torch_compat.h"
#include "runtime/pipeline/pipeline_partition.h"
#include "runtime/training/parallel_grid.h"
#include "runtime/training/stop_request.h"
#include "runtime/training/trainer.h"

namespace {

using namespace dtrain;

// Collective: every rank checks what the launcher started against what MPI sees; a rank with a problem names it,
// and every rank returns false if any rank has one.
bool launch_is_consistent(const comm::Topology& topology, comm::ControlPlane& world) {
  const std::string problem = comm::check_launch(topology, std::getenv);
  if (!problem.empty()) std::fprintf(stderr, "dtrain: error on rank %d: %s\n", topology.world_rank, problem.c_str());
  return !world.any(!problem.empty());
}

// An error every rank of the job raised together (Note [Agreed errors]): rank 0 says it once.
void report(const comm::AgreedError& e, int rank) {
  if (rank == 0) std::fprintf(stderr, "dtrain: error: %s (%s)\n", e.what(), e.where().c_str());
}

// Collective: false if any rank has a `problem`; then it is printed once for the job.
bool agree_nobody_failed(const std::string& problem, comm::ControlPlane& world) {
  try {
    world.raise_if_any_failed(problem);
    return true;
  } catch (const comm::AgreedError& e) {
    report(e, world.rank());
    return false;
  }
}

// Collective: this rank's device and backend (Note [Compute device]), or nothing if any rank cannot have what was
// asked, or if the ranks chose differently (a node without GPUs under --device auto): then one line says why.
std::optional<runtime::DevicePlan> plan_devices(const runtime::CommandLine& options, const comm::Topology& topology,
                                                comm::ControlPlane& world) {
  std::string problem;
  runtime::DevicePlan plan;
  try {
    plan = runtime::plan_device(options.device, options.backend, runtime::device_facts(topology.local_rank));
  } catch (const std::exception& e) {
    problem = e.what();
  }
  if (!agree_nobody_failed(problem, world)) return std::nullopt;
  const std::int64_t on_gpu = plan.device.is_cuda() ? 1 : 0;
  if (world.min(on_gpu) != world.max(on_gpu)) {
    problem = "--device auto: some ranks see a GPU and others do not; give --device cuda or --device cpu";
    if (!agree_nobody_failed(on_gpu == 0 ? problem : "", world)) return std::nullopt;
  }
  return plan;
}

int dry_run(const runtime::DevicePlan& plan, const comm::Topology& topology) {
  const std::string device = runtime::make_compute_device(plan.device)->describe();
  const std::string table = comm::format_rank_table(topology, device, MPI_COMM_WORLD);
  if (topology.world_rank == 0) {
    std::printf("dtrain dry run: %d ranks on %d nodes, backend %s\n%s", topology.world_size, topology.node_count,
                comm::to_string(plan.backend), table.c_str());
    std::printf("dtrain dry run: checked: the launcher and MPI agree on %d ranks, every rank has its device%s\n",
                topology.world_size,
                plan.backend == comm::Backend::kNccl ? " (GPUs shared by two ranks are refused when NCCL starts)" : "");
  }
  return 0;
}

// This rank's model: the whole model, or its pipeline stage (a slice of the built-in model balanced by parameters or
// measured time, or the stage's own TorchScript file). Every rank seeds alike, so the slices of one full model fit.
std::unique_ptr<runtime::TrainableModel> make_model(const runtime::CommandLine& options, runtime::DataFeed& feed,
                                                    const runtime::ParallelGrid& grid) {
  torch::manual_seed(options.data.seed);
  if (!options.pipeline.stage_modules.empty() || !options.torchscript.empty()) {
    runtime::compat::prepare_torchscript_runtime();
    return std::make_unique<runtime::ScriptModel>(
        options.torchscript.empty() ? options.pipeline.stage_modules[grid.stage] : options.torchscript);
  }
  const jobs::ModelInput input{feed.sample_shape(), feed.classes()};
  torch::nn::Sequential whole = jobs::make_model(options.model, input);
  if (grid.stages == 1) return std::make_unique<runtime::SequentialModel>(options.model, whole);

  std::vector<double> costs;
  if (options.pipeline.partition == runtime::PartitionCost::kTime) {
    std::vector<std::int64_t> shape{options.data.batch_size};
    shape.insert(shape.end(), input.sample_shape.begin(), input.sample_shape.end());
    const at::Tensor sample = options.data.targets == runtime::kNextTokenTargets
                                  ? torch::randint(input.classes, shape, torch::kLong)
                                  : torch::rand(shape);
    costs = runtime::measured_costs(whole, sample, 5, *grid.world_control);
  } else {
    costs = runtime::parameter_costs(whole);
  }
  const std::vector<runtime::LayerRange> ranges = runtime::balance_layers(costs, grid.stages);
  if (grid.world_control->rank() == 0) {
    std::printf("dtrain: pipeline of %d stages by %s: %s\n", grid.stages,
                runtime::to_string(options.pipeline.partition), runtime::describe_partition(whole, ranges).c_str());
  }
  const runtime::LayerRange mine = ranges[grid.stage];
  // The layer range is part of the name, so a checkpoint of another partition is refused by name.
  return std::make_unique<runtime::SequentialModel>(
      fmt::format("{}[layers {}-{}]", options.model, mine.begin, mine.end - 1), runtime::slice_layers(whole, mine));
}

// One fingerprint of the whole model's weights: its own CRC-32 without a pipeline, else the CRC-32 of the stages'.
std::uint32_t weights_fingerprint(runtime::TrainableModel& model, const runtime::ParallelGrid& grid) {
  const std::vector<std::int64_t> stages =
      grid.pipeline_control->allgather(std::vector<std::int64_t>{model.weights_crc32()});
  if (grid.stages == 1) return static_cast<std::uint32_t>(stages[0]);
  return static_cast<std::uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(stages.data()), static_cast<uInt>(stages.size() * 8)));
}

// The whole model's parameter count (a stage holds only its share).
std::int64_t total_parameters(runtime::TrainableModel& model, const runtime::ParallelGrid& grid) {
  return grid.pipeline_control->sum(model.parameter_count());
}

// The model is built for the training samples: evaluation data of another shape or class count is refused up front
// instead of failing inside the model's first layer.
void check_same_kind_of_samples(const runtime::CommandLine& options, runtime::DataFeed& train,
                                runtime::DataFeed& eval) {
  if (eval.sample_shape() != train.sample_shape()) {
    throw std::invalid_argument(
        fmt::format("--eval-data {}: '{}' samples have shape [{}], but --train-data {} has [{}]", options.data.eval_dir,
                    options.data.inputs, fmt::join(eval.sample_shape(), ", "), options.data.train_dir,
                    fmt::join(train.sample_shape(), ", ")));
  }
  if (eval.classes() != train.classes()) {
    throw std::invalid_argument(fmt::format("--eval-data {}: {} classes, but --train-data {} has {}",
                                            options.data.eval_dir, eval.classes(), options.data.train_dir,
                                            train.classes()));
  }
}

int train(const runtime::CommandLine& options, const runtime::DevicePlan& plan, const comm::Topology& topology) {
  torch::set_num_threads(options.threads);
  comm::CommOptions comm_options;
  comm_options.timeout = std::chrono::milliseconds(static_cast<int64_t>(options.comm_timeout_s * 1000));
  auto comm = comm::make_world_communicator(plan.backend, topology, comm_options);
  runtime::ParallelGrid grid = runtime::make_parallel_grid(*comm, options.pipeline.stages);

  runtime::Hdf5FeedOptions feed;
  feed.batch_size = options.data.batch_size;
  feed.prefetch_depth = options.data.prefetch_depth;
  feed.read_mode = options.data.read_mode;
  feed.seed = options.data.seed;
  feed.fraction = options.data.fraction;
  feed.inputs = options.data.inputs;
  feed.targets = options.data.targets;
  feed.drop_last = options.data.drop_last;
  feed.verify_checksums = options.data.verify;
  feed.pin_memory = plan.device.is_cuda();
  // The replicas of each stage share out the samples; the stages of one replica read the same batches.
  auto train_feed = runtime::make_hdf5_feed(options.data.train_dir, feed, /*evaluation=*/false, *grid.data);
  std::unique_ptr<runtime::DataFeed> eval_feed;
  if (!options.data.eval_dir.empty()) {
    eval_feed = runtime::make_hdf5_feed(options.data.eval_dir, feed, /*evaluation=*/true, *grid.data);
    check_same_kind_of_samples(options, *train_feed, *eval_feed);
  }

  const std::unique_ptr<runtime::TrainableModel> model = make_model(options, *train_feed, grid);
  const std::int64_t parameters = total_parameters(*model, grid);
  if (comm->rank() == 0) {
    std::printf(
        "dtrain: %s (%lld parameters) on %d ranks (%d pipeline stages x %d replicas) on %s over %s, %lld samples per "
        "step, %lld steps per epoch\n",
        options.model.c_str(), static_cast<long long>(parameters), comm->size(), grid.stages, grid.replicas,
        plan.device.is_cuda() ? "GPUs" : "CPUs", comm::to_string(plan.backend),
        static_cast<long long>(train_feed->global_batch_size() * options.trainer.accumulation),
        static_cast<long long>(train_feed->batches_per_epoch() / options.trainer.accumulation));
  }

  // Found out now, not after the whole run: rank 0 exports into a folder it can write to.
  std::string export_problem;
  if (!options.export_model.empty() && comm->rank() == 0) {
    const auto folder = std::filesystem::absolute(options.export_model).parent_path();
    if (::access(folder.c_str(), W_OK) != 0) {
      export_problem =
          fmt::format("--export-model {}: cannot write to the folder {}", options.export_model, folder.string());
    }
  }
  grid.world_control->raise_if_any_failed(export_problem);

  runtime::TrainerOptions trainer_options = options.trainer;
  trainer_options.stop_on_signal = true;  // Note [Stopping on a signal]
  trainer_options.device = plan.device;
  runtime::Trainer trainer(trainer_options, *model, *train_feed, eval_feed.get(), *comm, &grid);
  const runtime::TrainResult result = trainer.run();
  const std::uint32_t fingerprint = weights_fingerprint(*model, grid);
  const bool exports = !options.export_model.empty() && !result.stopped_by_signal;
  if (exports) {
    std::string problem;
    if (comm->rank() == 0) {
      try {
        model->export_to(options.export_model);
      } catch (const std::exception& e) {
        problem = fmt::format("--export-model {}: {}", options.export_model, e.what());
      }
    }
    grid.world_control->raise_if_any_failed(problem);
  }
  if (comm->rank() == 0) {
    std::printf("dtrain: done: %lld steps, %lld epochs in %.1f s, train loss %.4f",
                static_cast<long long>(result.steps), static_cast<long long>(result.epochs_completed), result.seconds,
                result.final_train_loss);
    if (eval_feed) {
      std::printf(", eval accuracy %.4f (%lld samples)", result.last_eval.accuracy,
                  static_cast<long long>(result.last_eval.samples));
      if (result.last_eval.predictions > result.last_eval.samples) {
        std::printf(", eval %.3f bits per token", result.last_eval.loss / std::log(2.0));
      }
    }
    if (result.skipped_steps > 0) {
      std::printf(", %lld steps skipped (non-finite gradients)", static_cast<long long>(result.skipped_steps));
    }
    std::printf(", peak memory %.2f GB per rank", result.peak_memory_gb);
    if (plan.device.is_cuda()) std::printf(", peak GPU memory %.2f GB per rank", result.peak_gpu_memory_gb);
    std::printf("%s\n", result.stopped_early ? " (stopped early)" : "");
    if (options.quick_validation) {
      std::printf("quick validation: %.1f s, peak memory %.2f GB, accuracy %.4f — scale up if these look right\n",
                  result.seconds, result.peak_memory_gb, result.last_eval.accuracy);
    }
    if (!result.last_checkpoint.empty()) std::printf("dtrain: checkpoint %s\n", result.last_checkpoint.c_str());
    std::printf("dtrain: weights crc32 %08x\n", fingerprint);
    if (exports) std::printf("dtrain: exported the trained model to %s\n", options.export_model.c_str());
    if (result.stopped_by_signal) {
      std::printf("dtrain: stopped by a signal at step %lld%s; resume with --resume auto\n",
                  static_cast<long long>(result.steps),
                  result.last_checkpoint.empty() ? " (no --checkpoint-dir: nothing saved)" : "");
    }
  }
  return result.stopped_by_signal ? runtime::kPreemptedExitCode : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<dtrain::comm::MpiEnvironment> mpi;
  try {
    mpi = std::make_unique<dtrain::comm::MpiEnvironment>(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dtrain: error: %s\n", e.what());
    return 2;
  }
  std::unique_ptr<dtrain::comm::ControlPlane> world;
  std::optional<dtrain::comm::Topology> topology;
  try {
    world = dtrain::comm::ControlPlane::create(MPI_COMM_WORLD);
    topology = dtrain::comm::Topology::discover(MPI_COMM_WORLD);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dtrain: error: %s\n", e.what());
    dtrain::comm::MpiEnvironment::abort_job(2);
  }
  const int rank = world->rank();
  dtrain::runtime::install_stop_signal_handlers();

  // Options come from the same argv and files on every rank, so every rank fails alike: rank 0 says why.
  dtrain::runtime::ParsedCommandLine parsed;
  try {
    parsed = dtrain::runtime::parse_command_line(argc, argv);
  } catch (const std::exception& e) {
    if (rank == 0) std::fprintf(stderr, "dtrain: error: %s (see dtrain --help)\n", e.what());
    return 2;
  }
  if (!parsed.help.empty()) {
    if (rank == 0) std::fputs(parsed.help.c_str(), stdout);
    return 0;
  }

  try {
    if (!launch_is_consistent(*topology, *world)) return 2;
    const std::optional<dtrain::runtime::DevicePlan> plan = plan_devices(parsed.options, *topology, *world);
    if (!plan) return 2;
    return parsed.options.dry_run ? dry_run(*plan, *topology) : train(parsed.options, *plan, *topology);
  } catch (const comm::AgreedError& e) {
    if (e.plane_size() == world->size()) {
      report(e, rank);
      return 1;
    }
    std::fprintf(stderr, "dtrain: error on rank %d: %s\n", rank, e.what());
    std::fflush(stderr);
    dtrain::comm::MpiEnvironment::abort_job(1);
  } catch (const c10::Error& e) {
    // LibTorch's own message without its C++ backtrace, which only LibTorch's developers can read.
    std::fprintf(stderr, "dtrain: error on rank %d: %s\n", rank, e.what_without_backtrace());
    std::fflush(stderr);
    dtrain::comm::MpiEnvironment::abort_job(1);
  } catch (const std::exception& e) {
    // After start-up the ranks may be anywhere (one waiting in a collective for another that failed): end them all.
    std::fprintf(stderr, "dtrain: error on rank %d: %s\n", rank, e.what());
    std::fflush(stderr);
    dtrain::comm::MpiEnvironment::abort_job(1);
  }
}
