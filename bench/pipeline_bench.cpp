// Pipeline bubble: runs the pipeline engine with p equal stages (each a block of linear layers, one per rank) for
// several micro-batch counts and both schedules, and prints the measured idle share of a step next to the theory
// (p-1)/(m+p-1) and next to the schedule simulated with the measured per-stage forward and backward times.
// Run it with p ranks: mpirun -np 2 build/bench/pipeline_bench. On this 2-core machine p = 2 is the fair case; with
// more ranks than cores the stages also wait for a core, which the table then counts as bubble.

#include <fmt/format.h>
#include <mpi.h>
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "bench/summary.h"
#include "comm/control_plane.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "runtime/pipeline/pipeline_engine.h"

namespace po = boost::program_options;
using namespace dtrain;

namespace {

struct Measured {
  double step_s = 0, compute_s = 0, forward_s = 0, backward_s = 0;  // per step, this stage
};

Measured run(runtime::ScheduleKind kind, int micro_batches, int steps, int64_t batch, int64_t width, int layers,
             comm::Communicator& pipeline, comm::ControlPlane& control) {
  torch::manual_seed(pipeline.rank());
  torch::nn::Sequential stage;
  for (int i = 0; i < layers; ++i) {
    stage->push_back(torch::nn::Linear(width, width));
    stage->push_back(torch::nn::Tanh());
  }
  runtime::PipelineEngine engine(
      pipeline, control, runtime::make_schedule(kind, pipeline.size(), pipeline.rank(), micro_batches), micro_batches);
  std::vector<torch::Tensor> inputs;
  if (engine.first()) {
    for (int m = 0; m < micro_batches; ++m) inputs.push_back(torch::randn({batch, width}));
  }
  runtime::StageFunctions functions;
  functions.forward = [&](const at::Tensor& x) { return stage->forward(x); };
  functions.loss = [&](const at::Tensor& out, int, double& loss) {
    at::Tensor l = out.pow(2).mean();
    loss = l.item<double>();
    return l / micro_batches;
  };
  Measured total;
  for (int s = -1; s < steps; ++s) {  // step -1 warms up
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = std::chrono::steady_clock::now();
    const runtime::PipelineStepStats stats = engine.train_step(functions, inputs, nullptr);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // The step ends when the slowest stage ends.
    double step = seconds;
    MPI_Allreduce(MPI_IN_PLACE, &step, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (s < 0) continue;
    total.step_s += step / steps;
    total.forward_s += stats.forward_s / steps;
    total.backward_s += stats.backward_s / steps;
    total.compute_s += (stats.forward_s + stats.backward_s) / steps;
    for (auto& p : stage->parameters()) p.mutable_grad() = at::Tensor();
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnvironment mpi(&argc, &argv);
  int steps = 5, layers = 4;
  int64_t batch = 64, width = 512;
  std::string summary;
  po::options_description options("pipeline_bench: measured pipeline bubble against theory");
  options.add_options()("help,h", "show this help")("steps", po::value(&steps)->default_value(steps), "timed steps")(
      "batch", po::value(&batch)->default_value(batch), "samples per micro-batch")(
      "width", po::value(&width)->default_value(width), "features of each linear layer")(
      "layers", po::value(&layers)->default_value(layers), "linear layers per stage")(
      "summary", po::value(&summary), "append each figure to this markdown file (bench/run-all.sh)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "pipeline_bench: error: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  torch::set_num_threads(1);
  auto world = comm::MpiCommunicator::create(MPI_COMM_WORLD);
  auto control = comm::ControlPlane::create(MPI_COMM_WORLD);
  const int p = world->size();
  if (world->rank() == 0) {
    std::printf("pipeline bubble, %d stages (one per rank), %d x Linear(%lld) + Tanh per stage, micro-batch %lld\n\n",
                p, layers, static_cast<long long>(width), static_cast<long long>(batch));
    std::printf(
        "| schedule | m | fwd ms/mb | bwd ms/mb | step ms | bubble measured | theory (p-1)/(m+p-1) | ratio | "
        "simulated with measured times |\n|---|---|---|---|---|---|---|---|---|\n");
  }
  for (auto kind : {runtime::ScheduleKind::kGPipe, runtime::ScheduleKind::k1F1B}) {
    for (int m : {1, 2, 4, 8, 16}) {
      const Measured mine = run(kind, m, steps, batch, width, layers, *world, *control);
      // The stages' mean compute; the bubble is the share of p x step time they did not compute.
      double compute = mine.compute_s, forward = mine.forward_s / m, backward = mine.backward_s / m;
      MPI_Allreduce(MPI_IN_PLACE, &compute, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      MPI_Allreduce(MPI_IN_PLACE, &forward, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      MPI_Allreduce(MPI_IN_PLACE, &backward, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      forward /= p;
      backward /= p;
      const double measured = 1.0 - compute / (p * mine.step_s);
      const double theory = static_cast<double>(p - 1) / (m + p - 1);
      std::vector<runtime::StageSchedule> stages;
      for (int s = 0; s < p; ++s) stages.push_back(runtime::make_schedule(kind, p, s, m));
      const double simulated = runtime::simulated_bubble_fraction(stages, forward, backward);
      if (world->rank() == 0) {
        std::printf("| %s | %d | %.2f | %.2f | %.1f | %.3f | %.3f | %s | %.3f |\n", runtime::to_string(kind), m,
                    1e3 * forward, 1e3 * backward, 1e3 * mine.step_s, measured, theory,
                    theory > 0 ? std::to_string(measured / theory).substr(0, 4).c_str() : "-", simulated);
        // ratio = theory / measured: 1 when the pipeline idles no more than the schedule must.
        dtrain::bench::append_summary_row(
            summary, "pipeline_bench", fmt::format("bubble, {}, p = {}, m = {}", runtime::to_string(kind), p, m),
            fmt::format("{:.3f}", measured), "theory (p-1)/(m+p-1)", fmt::format("{:.3f}", theory), theory / measured);
      }
    }
  }
  return 0;
}
