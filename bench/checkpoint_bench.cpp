// What a checkpoint costs the training it interrupts (Note [Background checkpoint writes]). Run under mpirun (2 ranks
// in bench/run-all.sh): an MLP of --layers square layers of --width (8 x 1024 by default: 8.4 M parameters, with Adam
// 101 MB of parameters and optimizer state) trains --steps steps with a checkpoint every --every steps, once with
// --checkpoint-async false (the peer: training waits until the files are written and fsync'ed) and once in the
// background. The table gives the time training was held per checkpoint (the largest rank's), the write itself, and
// whether both runs end with the same weights; then what the checksums (XXH3, Note [Verified checkpoints]) cost
// against the write. With --zero-stage 1 every rank writes its optimizer shard.

#include <mpi.h>
#include <torch/torch.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "bench/square_mlp.h"
#include "bench/summary.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "runtime/data/tensor_data_feed.h"
#include "runtime/training/checksums.h"
#include "runtime/training/trainer.h"

namespace po = boost::program_options;
using namespace dtrain;

namespace {

struct Measured {
  runtime::TrainResult result;
  std::vector<at::Tensor> weights;
};

double mean(const std::vector<double>& values) {
  return values.empty() ? 0 : std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnvironment mpi(&argc, &argv);
  int width = 1024, layers = 8, steps = 40, every = 10, batch = 16, zero_stage = 0;
  std::string folder = "/tmp/dtrain-checkpoint-bench", summary;
  po::options_description options("checkpoint_bench");
  options.add_options()("width", po::value(&width)->default_value(width), "MLP layer width")(
      "layers", po::value(&layers)->default_value(layers), "MLP layers")(
      "steps", po::value(&steps)->default_value(steps), "steps per run")(
      "every", po::value(&every)->default_value(every), "steps between checkpoints")(
      "batch", po::value(&batch)->default_value(batch), "samples per rank and step")(
      "zero-stage", po::value(&zero_stage)->default_value(zero_stage), "0: rank 0 writes all; 1-3: sharded")(
      "folder", po::value(&folder)->default_value(folder), "where the checkpoints go (emptied first and after)")(
      "summary", po::value(&summary), "append the headline rows to this markdown file");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, options), vm);
  po::notify(vm);
  torch::set_num_threads(1);
  auto world = comm::MpiCommunicator::create(MPI_COMM_WORLD);
  const int ranks = world->size();
  const bool print = world->rank() == 0;

  const bench::RandomData data(static_cast<std::int64_t>(batch) * ranks * steps, width);
  const at::Tensor &x = data.x, &y = data.y;
  auto mlp = [&] { return bench::square_mlp(width, layers); };
  const std::int64_t parameters = bench::parameter_count(mlp());

  auto train = [&](bool background) {
    if (print) std::filesystem::remove_all(folder);
    MPI_Barrier(MPI_COMM_WORLD);
    runtime::TrainerOptions o;
    o.progress = runtime::ProgressMode::kNone;
    o.max_steps = steps;
    o.log_every = steps;
    o.optimizer.kind = runtime::OptimizerKind::kAdam;
    o.optimizer.lr = 1e-4;
    o.zero_stage = zero_stage;
    o.checkpoint_dir = folder;
    o.checkpoint_every = every;
    o.keep_checkpoints = 2;
    o.checkpoint_async = background;
    sampler::SamplerOptions s;
    s.world_size = ranks;
    s.rank = world->rank();
    s.batch_size = batch;
    runtime::TensorDataFeed feed(x, y, 10, s);
    runtime::SequentialModel model("bench", mlp());
    Measured m;
    {
      runtime::Trainer trainer(o, model, feed, nullptr, *world);
      m.result = trainer.run();
    }
    for (const auto& p : model.parameters()) m.weights.push_back(p.tensor.detach().clone());
    return m;
  };
  const Measured sync = train(false);
  const Measured async = train(true);
  bool same = sync.weights.size() == async.weights.size();
  for (std::size_t i = 0; same && i < sync.weights.size(); ++i) same = torch::equal(sync.weights[i], async.weights[i]);

  // The checksums' share: XXH3 over as many bytes as the state a checkpoint holds (parameters and Adam's moments).
  const at::Tensor state = torch::randn({parameters * 3});
  const auto start = std::chrono::steady_clock::now();
  const std::string checksum = runtime::checksum_of(state);
  const double checksum_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (print) {
    const double state_mb = static_cast<double>(parameters) * 12 / 1e6;
    const double held_sync = mean(sync.result.checkpoint_blocking_seconds);
    const double held_async = mean(async.result.checkpoint_blocking_seconds);
    std::printf(
        "checkpoints of an MLP of %.1f M parameters (Adam: %.0f MB of parameters and optimizer state), %d "
        "ranks, --zero-stage %d, every %d of %d steps\n\n",
        static_cast<double>(parameters) / 1e6, state_mb, ranks, zero_stage, every, steps);
    std::printf("| writes | checkpoints | training held per checkpoint | the write | held / synchronous |\n");
    std::printf("|---|---|---|---|---|\n");
    std::printf("| synchronous (--checkpoint-async false) | %zu | %.3f s | %.3f s | 1.000 |\n",
                sync.result.checkpoint_blocking_seconds.size(), held_sync, mean(sync.result.checkpoint_write_seconds));
    std::printf("| background (default) | %zu | %.3f s | %.3f s | %.3f |\n",
                async.result.checkpoint_blocking_seconds.size(), held_async,
                mean(async.result.checkpoint_write_seconds), held_async / held_sync);
    std::printf("\ntraining held per checkpoint, synchronous:");
    for (double s : sync.result.checkpoint_blocking_seconds) std::printf(" %.3f", s);
    std::printf(" s; in the background:");
    for (double s : async.result.checkpoint_blocking_seconds) std::printf(" %.3f", s);
    std::printf(" s\n");
    std::printf("held in the background / synchronous: %.3f (goal <= 0.2); final weights %s\n", held_async / held_sync,
                same ? "identical" : "DIFFER");
    std::printf("XXH3 over %.0f MB: %.3f s, %.3f of a synchronous checkpoint's hold (checksum %s)\n", state_mb,
                checksum_s, checksum_s / held_sync, checksum.c_str());
    bench::append_summary_row(summary, "checkpoint_bench", "training held per checkpoint, background",
                              std::to_string(held_async) + " s", "synchronous write", std::to_string(held_sync) + " s",
                              held_sync / held_async);
    std::filesystem::remove_all(folder);
  }
  return same ? 0 : 1;
}
