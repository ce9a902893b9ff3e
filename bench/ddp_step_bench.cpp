// dtrain's side of the PyTorch DDP comparison (bench/pytorch_ddp_peer.py runs both): trains an MLP
// (784-1024-1024-10) with dtrain's DistributedDataParallel for --steps SGD steps from the initial weights and data in
// --input (written by the peer script with torch.save), writes the final weights to --output and prints the mean
// step time. Also measures the overlap: the same steps with gradients reduced only after backward (one bucket), and
// with no communication at all.

#include <mpi.h>
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>

#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "runtime/data_parallel/distributed_data_parallel.h"

namespace po = boost::program_options;
using namespace dtrain;

namespace {

torch::nn::Sequential mlp() {
  return torch::nn::Sequential(torch::nn::Linear(784, 1024), torch::nn::ReLU(), torch::nn::Linear(1024, 1024),
                               torch::nn::ReLU(), torch::nn::Linear(1024, 10));
}

c10::IValue load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes);
}

struct Run {
  double step_ms = 0;
  std::vector<torch::Tensor> weights;
};

// kind: "overlapped" (default buckets), "after-backward" (one bucket, launched when backward ends), "local" (none).
Run train(const std::string& kind, const c10::List<at::Tensor>& initial, const torch::Tensor& x, const torch::Tensor& y,
          int steps, int warmup, int64_t batch, comm::Communicator& comm) {
  auto model = mlp();
  {
    torch::NoGradGuard no_grad;
    auto params = model->parameters();
    for (std::size_t i = 0; i < params.size(); ++i) params[i].copy_(initial.get(i));
  }
  runtime::ReducerOptions options;
  if (kind == "after-backward") options.first_bucket_bytes = options.bucket_cap_bytes = std::size_t{1} << 40;
  std::unique_ptr<runtime::DistributedDataParallel> ddp;
  if (kind != "local") ddp = std::make_unique<runtime::DistributedDataParallel>(model.ptr(), comm, options);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const int64_t global = batch * comm.size();
  double seconds = 0;
  for (int s = 0; s < warmup + steps; ++s) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = std::chrono::steady_clock::now();
    const int64_t row = (s % (x.size(0) / global)) * global + comm.rank() * batch;
    optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(x.narrow(0, row, batch)), y.narrow(0, row, batch));
    if (ddp) {
      ddp->backward(loss);
    } else {
      loss.backward();
    }
    optimizer.step();
    if (s >= warmup) seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  Run run;
  run.step_ms = 1e3 * seconds / steps;
  for (const auto& p : model->parameters()) run.weights.push_back(p.detach().clone());
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnvironment mpi(&argc, &argv);
  std::string input, output;
  int steps = 20, warmup = 3;
  int64_t batch = 64;
  po::options_description options("ddp_step_bench (run by bench/pytorch_ddp_peer.py under mpirun)");
  options.add_options()("input", po::value(&input)->required(), "initial weights and data (torch.save'd list)")(
      "output", po::value(&output)->required(), "where to write the final weights")(
      "steps", po::value(&steps)->default_value(steps), "timed SGD steps")(
      "warmup", po::value(&warmup)->default_value(warmup), "untimed steps before them (0 for the weight comparison)")(
      "batch", po::value(&batch)->default_value(batch), "samples per rank per step");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddp_step_bench: %s\n", e.what());
    return 2;
  }
  torch::set_num_threads(1);
  auto comm = comm::MpiCommunicator::create(MPI_COMM_WORLD);
  const auto items = load(input).toList();  // [x, y, weights...]
  const torch::Tensor x = items.get(0).toTensor();
  const torch::Tensor y = items.get(1).toTensor();
  c10::List<at::Tensor> initial;
  for (std::size_t i = 2; i < items.size(); ++i) initial.push_back(items.get(i).toTensor());

  // The weight comparison needs the peer's exact step sequence: no warm-up steps for the compared run.
  const Run compared = train("overlapped", initial, x, y, steps, 0, batch, *comm);
  const Run overlapped = train("overlapped", initial, x, y, steps, warmup, batch, *comm);
  const Run after = train("after-backward", initial, x, y, steps, warmup, batch, *comm);
  const Run local = train("local", initial, x, y, steps, warmup, batch, *comm);
  if (comm->rank() == 0) {
    c10::List<at::Tensor> weights;
    for (const auto& w : compared.weights) weights.push_back(w);
    const std::vector<char> bytes = torch::pickle_save(c10::IValue(weights));
    std::ofstream(output, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::printf("dtrain_step_ms %.3f\nafter_backward_step_ms %.3f\nlocal_step_ms %.3f\n", overlapped.step_ms,
                after.step_ms, local.step_ms);
  }
  return 0;
}
