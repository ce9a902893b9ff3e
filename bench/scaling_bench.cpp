// Data-parallel scaling on this machine: N ranks training one model with dtrain's DistributedDataParallel against
// the same N processes each training alone (the same compute, no communication), in the same run and interleaved,
// so both see the same machine. On a 2-core machine two busy processes already slow each other down (memory
// bandwidth), so "alone in parallel" is the real ceiling, not N times one process. Goal: ratio >= 0.95.
//   mpirun -np 2 build/bench/scaling_bench

#include <fmt/format.h>
#include <mpi.h>
#include <torch/torch.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <vector>

#include "bench/summary.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "runtime/data_parallel/distributed_data_parallel.h"

namespace po = boost::program_options;
using namespace dtrain;

namespace {

// Seconds per step (the slowest rank's mean) of `steps` SGD steps of an MLP, reduced across ranks or not.
double run(bool data_parallel, int steps, int64_t batch, double bucket_mb, comm::Communicator& comm) {
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(784, 1024), torch::nn::ReLU(), torch::nn::Linear(1024, 1024),
                              torch::nn::ReLU(), torch::nn::Linear(1024, 10));
  std::unique_ptr<runtime::DistributedDataParallel> ddp;
  runtime::ReducerOptions reducer;
  reducer.bucket_cap_bytes = static_cast<std::size_t>(bucket_mb * (1 << 20));
  if (data_parallel) ddp = std::make_unique<runtime::DistributedDataParallel>(model.ptr(), comm, reducer);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const torch::Tensor x = torch::rand({batch, 784}), y = torch::randint(0, 10, {batch});
  auto step = [&] {
    optimizer.zero_grad();
    const torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    if (ddp) {
      ddp->backward(loss);
    } else {
      loss.backward();
    }
    optimizer.step();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / steps;
  MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return seconds;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnvironment mpi(&argc, &argv);
  int steps = 40, rounds = 3;
  double bucket_mb = 25;
  int64_t batch = 64;
  std::string summary;
  po::options_description options("scaling_bench: data-parallel throughput against independent processes");
  options.add_options()("help,h", "show this help")("steps", po::value(&steps)->default_value(steps),
                                                    "timed steps per measurement")(
      "rounds", po::value(&rounds)->default_value(rounds), "measurements of each kind, interleaved (median kept)")(
      "batch", po::value(&batch)->default_value(batch), "samples per rank per step")(
      "bucket-mb", po::value(&bucket_mb)->default_value(bucket_mb), "gradient bucket cap, MiB")(
      "summary", po::value(&summary), "append the headline figure to this markdown file (bench/run-all.sh)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "scaling_bench: error: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  torch::set_num_threads(1);
  auto comm = comm::MpiCommunicator::create(MPI_COMM_WORLD);
  std::vector<double> alone, together;
  for (int r = 0; r < rounds; ++r) {
    alone.push_back(run(false, steps, batch, bucket_mb, *comm));
    together.push_back(run(true, steps, batch, bucket_mb, *comm));
  }
  const double t_alone = median(alone), t_ddp = median(together);
  const double samples = static_cast<double>(batch * comm->size());
  if (comm->rank() == 0) {
    std::printf("scaling: %d ranks, MLP 784-1024-1024-10, batch %lld per rank, 1 thread per rank, median of %d\n\n",
                comm->size(), static_cast<long long>(batch), rounds);
    std::printf("| run | ms per step | samples/s (all ranks) |\n|---|---|---|\n");
    std::printf("| %d independent processes (no communication) | %.2f | %.0f |\n", comm->size(), 1e3 * t_alone,
                samples / t_alone);
    std::printf("| dtrain DDP over %d ranks | %.2f | %.0f |\n", comm->size(), 1e3 * t_ddp, samples / t_ddp);
    std::printf("\nratio = DDP throughput / independent throughput = %.3f (goal >= 0.95)\n", t_alone / t_ddp);
    dtrain::bench::append_summary_row(summary, "scaling_bench", fmt::format("{}-rank DDP samples/s", comm->size()),
                                      fmt::format("{:.0f}", samples / t_ddp), "independent processes",
                                      fmt::format("{:.0f}", samples / t_alone), t_alone / t_ddp);
  }
  return 0;
}
