// What ZeRO and activation checkpointing save, measured (docs/memory.md). Run under mpirun (4 ranks by default in
// bench/run-all.sh):
//  1. an MLP of --layers square layers of --width and a head (24 x 2048: 100.7 M parameters) trained with Adam for
//     --steps steps at --zero-stage 0, 1, 2 and 3: each rank's peak resident memory above what it held before the
//     model existed, against the ZeRO paper's per-parameter bytes (4 + 4 + 8, 4 + 4 + 8/R, 4 + (4 + 8)/R, 16/R), and
//     the step time against stage 0 (the model is built whole on every rank, as LibTorch builds it, 4 bytes per
//     parameter, before stage 3 shards it: at 4 ranks that is exactly stage 3's formula);
//  2. the character Transformer with and without --activation-checkpointing: the peak memory above the training
//     state (parameters, gradients, optimizer state: activations and their temporaries) and the step time.
// The peer of every row is the same run at stage 0 (or without checkpointing) in the same process.

#include <malloc.h>
#include <mpi.h>
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <string>

#include "bench/square_mlp.h"
#include "bench/summary.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "jobs/char_transformer.h"
#include "runtime/data/tensor_data_feed.h"
#include "runtime/observability/memory_monitor.h"
#include "runtime/training/trainer.h"

namespace po = boost::program_options;
using namespace dtrain;

namespace {

struct Measured {
  double peak_bytes = 0;  // the largest rank's peak resident memory above its baseline
  double step_s = 0;
  runtime::TrainResult result;
};

// From here on, this process's peak resident memory (VmHWM) starts again at its current resident memory.
void restart_peak() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

double max_over_ranks(double mine) {
  double out = 0;
  MPI_Allreduce(&mine, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

// Trains `make_model()` for `steps` steps with `options` on random data of `features` inputs (or token sequences).
template <typename MakeModel>
Measured train(comm::Communicator& world, MakeModel make_model, runtime::TrainerOptions options, const at::Tensor& x,
               const at::Tensor& y, std::int64_t classes, std::int64_t batch) {
  sampler::SamplerOptions s;
  s.world_size = world.size();
  s.rank = world.rank();
  s.batch_size = batch;
  runtime::TensorDataFeed feed(x, y, classes, s);
  MPI_Barrier(MPI_COMM_WORLD);
  restart_peak();
  const double baseline = runtime::current_memory().resident_gb;
  Measured m;
  {
    runtime::SequentialModel model("bench", make_model());
    runtime::Trainer trainer(options, model, feed, nullptr, world);
    m.result = trainer.run();
  }
  m.peak_bytes = max_over_ranks((runtime::current_memory().peak_gb - baseline) * 1e9);
  m.step_s = m.result.seconds / static_cast<double>(m.result.steps);
  return m;
}

runtime::TrainerOptions quiet(int steps) {
  runtime::TrainerOptions o;
  o.progress = runtime::ProgressMode::kNone;
  o.max_steps = steps;
  o.log_every = steps;
  o.optimizer.kind = runtime::OptimizerKind::kAdam;
  o.optimizer.lr = 1e-4;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnvironment mpi(&argc, &argv);
  int width = 2048, layers = 24, steps = 3, batch = 8;
  std::string summary;
  po::options_description options("memory_bench");
  options.add_options()("width", po::value(&width)->default_value(width), "MLP layer width")(
      "layers", po::value(&layers)->default_value(layers), "MLP layers")(
      "steps", po::value(&steps)->default_value(steps), "steps per run")(
      "batch", po::value(&batch)->default_value(batch), "samples per rank and step")(
      "summary", po::value(&summary), "append the headline rows to this markdown file");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, options), vm);
  po::notify(vm);
  // Freed tensors must leave the resident set: a fixed mmap threshold stops glibc from serving later large tensors
  // from a heap it never returns (its threshold otherwise grows with every large free).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  torch::set_num_threads(1);  // one thread per rank, as its peer (bench/pytorch_zero_peer.py) runs
  auto world = comm::MpiCommunicator::create(MPI_COMM_WORLD);
  const int ranks = world->size();
  const bool print = world->rank() == 0;

  // 1. ZeRO stages on the MLP.
  const bench::RandomData data(static_cast<std::int64_t>(batch) * ranks * steps, width);
  const at::Tensor &x = data.x, &y = data.y;
  auto mlp = [&] { return bench::square_mlp(width, layers); };
  const std::int64_t parameters = bench::parameter_count(mlp());
  if (print) {
    std::printf("ZeRO on an MLP of %.1f M parameters, Adam, %d ranks, %d steps of %d samples per rank\n\n",
                static_cast<double>(parameters) / 1e6, ranks, steps, batch);
    std::printf("| stage | peak memory per rank | ZeRO formula | measured / formula | step time | vs stage 0 |\n");
    std::printf("|---|---|---|---|---|---|\n");
  }
  const double bytes_per_parameter[] = {16.0, 8.0 + 8.0 / ranks, 4.0 + 12.0 / ranks, 16.0 / ranks};
  double stage0_step = 0;
  for (int stage : {0, 1, 2, 3}) {
    runtime::TrainerOptions o = quiet(steps);
    o.zero_stage = stage;
    const Measured m = train(*world, mlp, o, x, y, 10, batch);
    if (stage == 0) stage0_step = m.step_s;
    const double formula = bytes_per_parameter[stage] * static_cast<double>(parameters);
    if (print) {
      std::printf("| %d | %.0f MB | %.0f MB | %.3f | %.2f s | %.3f |\n", stage, m.peak_bytes / 1e6, formula / 1e6,
                  m.peak_bytes / formula, m.step_s, m.step_s / stage0_step);
      std::fflush(stdout);
      bench::append_summary_row(summary, "memory_bench", "ZeRO " + std::to_string(stage) + " peak memory / formula",
                                std::to_string(static_cast<long long>(m.peak_bytes / 1e6)) + " MB", "ZeRO formula",
                                std::to_string(static_cast<long long>(formula / 1e6)) + " MB", formula / m.peak_bytes);
      if (stage > 0) {
        bench::append_summary_row(summary, "memory_bench", "ZeRO " + std::to_string(stage) + " step time",
                                  std::to_string(m.step_s) + " s", "stage 0", std::to_string(stage0_step) + " s",
                                  stage0_step / m.step_s);
      }
    }
  }

  // 2. Activation checkpointing on the character Transformer.
  jobs::CharTransformerOptions t;
  t.vocabulary = 64;
  t.context = 128;
  t.width = 256;
  t.blocks = 6;
  const std::int64_t sequences = 16;
  const at::Tensor tokens = torch::randint(0, t.vocabulary, {sequences * ranks * steps, t.context + 1});
  const at::Tensor inputs = tokens.narrow(1, 0, t.context), targets = tokens.narrow(1, 1, t.context);
  auto transformer = [&] {
    torch::manual_seed(3);
    return jobs::make_char_transformer(t);
  };
  if (print) {
    std::printf(
        "\nactivation checkpointing on the character Transformer (%lld blocks of width %lld, %lld tokens x "
        "%lld sequences per rank)\n\n| run | peak memory above the training state | step time |\n|---|---|---|\n",
        static_cast<long long>(t.blocks), static_cast<long long>(t.width), static_cast<long long>(t.context),
        static_cast<long long>(sequences));
  }
  Measured kept, recomputed;
  for (int every : {0, 1}) {
    runtime::TrainerOptions o = quiet(steps);
    o.activation_checkpoint_every = every;
    Measured m = train(*world, transformer, o, inputs, targets, t.vocabulary, sequences);
    const double state =
        static_cast<double>(m.result.parameter_bytes + m.result.gradient_bytes + m.result.optimizer_state_bytes);
    m.peak_bytes -= state;
    (every == 0 ? kept : recomputed) = m;
    if (print) {
      std::printf("| %s | %.0f MB | %.3f s |\n", every == 0 ? "activations kept" : "--activation-checkpointing",
                  m.peak_bytes / 1e6, m.step_s);
    }
  }
  if (print) {
    std::printf(
        "\nactivation memory with / without: %.3f (goal <= 0.5); step time with / without: %.3f (goal <= 1.4)\n",
        recomputed.peak_bytes / kept.peak_bytes, recomputed.step_s / kept.step_s);
    bench::append_summary_row(summary, "memory_bench", "activation memory, checkpointed",
                              std::to_string(static_cast<long long>(recomputed.peak_bytes / 1e6)) + " MB",
                              "activations kept", std::to_string(static_cast<long long>(kept.peak_bytes / 1e6)) + " MB",
                              kept.peak_bytes / recomputed.peak_bytes);
    bench::append_summary_row(summary, "memory_bench", "step time, checkpointed",
                              std::to_string(recomputed.step_s) + " s", "activations kept",
                              std::to_string(kept.step_s) + " s", kept.step_s / recomputed.step_s);
  }
  return 0;
}
