// dtrain's side of the PyTorch DDP comparison (bench/pytorch_ddp_peer.py runs both): trains an MLP
// (784-1024-1024-10) with dtrain's DistributedDataParallel for --steps SGD steps from the initial weights and data in
// --input (written by the peer script with torch.save) and prints the mean step time. Also measures the overlap: the
// same steps with gradients reduced only after backward (one bucket), and with no communication at all.

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

// kind: "overlapped" (default buckets), "after-backward" (one bucket, launched when backward ends), "local" (none).
double step_ms(const std::string& kind, const c10::List<at::Tensor>& initial, const torch::Tensor& x,
               const torch::Tensor& y, int steps, int warmup, int64_t batch, comm::Communicator& comm) {
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
  return 1e3 * seconds / steps;
}

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnvironment mpi(&argc, &argv);
  std::string input;
  int steps = 20, warmup = 3;
  int64_t batch = 64;
  po::options_description options("ddp_step_bench (run by bench/pytorch_ddp_peer.py under mpirun)");
  options.add_options()("input", po::value(&input)->required(), "initial weights and data (torch.save'd list)")(
      "steps", po::value(&steps)->default_value(steps), "timed SGD steps")(
      "warmup", po::value(&warmup)->default_value(warmup), "untimed steps before them")(
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

  const double overlapped = step_ms("overlapped", initial, x, y, steps, warmup, batch, *comm);
  const double after = step_ms("after-backward", initial, x, y, steps, warmup, batch, *comm);
  const double local = step_ms("local", initial, x, y, steps, warmup, batch, *comm);
  if (comm->rank() == 0) {
    std::printf("dtrain_step_ms %.3f\nafter_backward_step_ms %.3f\nlocal_step_ms %.3f\n", overlapped, after, local);
  }
  return 0;
}
