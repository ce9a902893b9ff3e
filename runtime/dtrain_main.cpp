// The `dtrain` command: train a built-in model or a TorchScript module on sharded HDF5 data, data-parallel over every
// rank that mpirun or srun started. Errors end every rank with one line naming the problem and a non-zero exit.

#include <torch/torch.h>

#include <cstdio>
#include <memory>

#include "comm/mpi_environment.h"
#include "comm/topology.h"
#include "comm/world.h"
#include "jobs/model_registry.h"
#include "runtime/command_line.h"
#include "runtime/hdf5_data_feed.h"
#include "runtime/torch_compat.h"
#include "runtime/trainer.h"

namespace {

using namespace dtrain;

int dry_run(const runtime::CommandLine& options, const comm::Topology& topology) {
  const comm::Backend backend = comm::parse_backend(options.backend);
  const std::string table = comm::format_rank_table(topology, comm::device_label(backend, topology), MPI_COMM_WORLD);
  if (topology.world_rank == 0) {
    std::printf("dtrain dry run: %d ranks on %d nodes, backend %s\n%s", topology.world_size, topology.node_count,
                options.backend.c_str(), table.c_str());
  }
  return 0;
}

int train(const runtime::CommandLine& options, const comm::Topology& topology) {
  torch::set_num_threads(options.threads);
  comm::CommOptions comm_options;
  comm_options.timeout = std::chrono::milliseconds(static_cast<int64_t>(options.comm_timeout_s * 1000));
  const comm::Backend backend = comm::parse_backend(options.backend);
  if (backend == comm::Backend::kNccl && !torch::cuda::is_available()) {
    throw std::invalid_argument(
        "--backend nccl trains on CUDA tensors, but this LibTorch has no CUDA (build against a CUDA LibTorch, see "
        "README)");
  }
  auto comm = comm::make_world_communicator(backend, topology, comm_options);

  runtime::Hdf5FeedOptions feed;
  feed.batch_size = options.data.batch_size;
  feed.prefetch_depth = options.data.prefetch_depth;
  feed.collective = options.data.read_mode == "collective";
  feed.seed = options.data.seed;
  feed.fraction = options.data.fraction;
  feed.inputs = options.data.inputs;
  feed.targets = options.data.targets;
  feed.drop_last = options.data.drop_last;
  auto train_feed = runtime::make_hdf5_feed(options.data.train_dir, feed, /*evaluation=*/false, *comm);
  std::unique_ptr<runtime::DataFeed> eval_feed;
  if (!options.data.eval_dir.empty()) {
    eval_feed = runtime::make_hdf5_feed(options.data.eval_dir, feed, /*evaluation=*/true, *comm);
  }

  torch::manual_seed(options.data.seed);
  std::unique_ptr<runtime::TrainableModel> model;
  if (!options.torchscript.empty()) {
    runtime::compat::prepare_torchscript_runtime();
    model = std::make_unique<runtime::ScriptModel>(options.torchscript);
  } else {
    jobs::ModelInput input{train_feed->sample_shape(), train_feed->classes()};
    model = std::make_unique<runtime::SequentialModel>(options.model, jobs::make_model(options.model, input));
  }
  if (comm->rank() == 0) {
    std::printf("dtrain: %s (%lld parameters) on %d ranks, %lld samples per step, %lld steps per epoch\n",
                model->name().c_str(), static_cast<long long>(model->parameter_count()), comm->size(),
                static_cast<long long>(train_feed->global_batch_size() * options.trainer.accumulation),
                static_cast<long long>(train_feed->batches_per_epoch() / options.trainer.accumulation));
  }

  runtime::Trainer trainer(options.trainer, *model, *train_feed, eval_feed.get(), *comm);
  const runtime::TrainResult result = trainer.run();
  if (comm->rank() == 0) {
    std::printf("dtrain: done: %lld steps, %lld epochs in %.1f s, train loss %.4f",
                static_cast<long long>(result.steps), static_cast<long long>(result.epochs_completed), result.seconds,
                result.final_train_loss);
    if (eval_feed) {
      std::printf(", eval accuracy %.4f (%lld samples)", result.last_eval.accuracy,
                  static_cast<long long>(result.last_eval.samples));
    }
    std::printf(", peak memory %.2f GB per rank%s\n", result.peak_memory_gb,
                result.stopped_early ? " (stopped early)" : "");
    if (options.quick_validation) {
      std::printf("quick validation: %.1f s, peak memory %.2f GB, accuracy %.4f — scale up if these look right\n",
                  result.seconds, result.peak_memory_gb, result.last_eval.accuracy);
    }
    if (!result.last_checkpoint.empty()) std::printf("dtrain: checkpoint %s\n", result.last_checkpoint.c_str());
  }
  return 0;
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
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);

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
    const auto topology = dtrain::comm::Topology::discover(MPI_COMM_WORLD);
    return parsed.options.dry_run ? dry_run(parsed.options, topology) : train(parsed.options, topology);
  } catch (const std::exception& e) {
    // After start-up the ranks may be anywhere (one waiting in a collective for another that failed): end them all.
    std::fprintf(stderr, "dtrain: error on rank %d: %s\n", rank, e.what());
    std::fflush(stderr);
    dtrain::comm::MpiEnvironment::abort_job(1);
  }
}
