// dtrain's side of tests/runtime/data_parallel/pytorch_ddp_parity.py, under mpirun: trains the MLP of that script
// with dtrain's DistributedDataParallel for --steps steps (SGD with momentum, or Adam) from the weights and data in
// --input (torch.save'd [x, y, weights...]), each rank on its slice of every global batch, with the optimizer state
// replicated or sharded (--zero-stage 1, 2: runtime/data_parallel/sharded_optimizer.h), and writes each rank's
// [losses, weights...] to <--output>.rank<r>.pt. Prints the LibTorch version it was built against (the script
// compares bits only against the same LibTorch).

#include <mpi.h>
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "runtime/data_parallel/distributed_data_parallel.h"
#include "runtime/data_parallel/sharded_optimizer.h"

namespace po = boost::program_options;
using namespace dtrain;

namespace {

c10::IValue load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes);
}

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnvironment mpi(&argc, &argv);
  std::string input, output;
  int steps = 10;
  int64_t batch = 16;
  std::size_t bucket_cap_bytes = 16384;
  std::string optimizer_name = "sgd";
  int zero_stage = 0;
  po::options_description options("ddp_steps (run by pytorch_ddp_parity.py under mpirun)");
  options.add_options()("input", po::value(&input)->required(), "initial weights and data (torch.save'd list)")(
      "output", po::value(&output)->required(), "prefix of the files of each rank's losses and final weights")(
      "steps", po::value(&steps)->default_value(steps), "SGD steps")("batch", po::value(&batch)->default_value(batch),
                                                                     "samples per rank per step")(
      "bucket-cap-bytes", po::value(&bucket_cap_bytes)->default_value(bucket_cap_bytes),
      "gradient bucket size: small, so that several allreduces overlap backward")(
      "optimizer", po::value(&optimizer_name)->default_value(optimizer_name), "sgd (lr 0.05, momentum 0.9) | adam (lr 0.01)")(
      "zero-stage", po::value(&zero_stage)->default_value(zero_stage), "0 replicated | 1 | 2 sharded optimizer state");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddp_steps: %s\n", e.what());
    return 2;
  }
  torch::set_num_threads(1);
  auto comm = comm::MpiCommunicator::create(MPI_COMM_WORLD);
  const auto items = load(input).toList();  // [x, y, weights...]
  const torch::Tensor x = items.get(0).toTensor();
  const torch::Tensor y = items.get(1).toTensor();
  auto model = torch::nn::Sequential(torch::nn::Linear(x.size(1), 128), torch::nn::ReLU(), torch::nn::Linear(128, 128),
                                     torch::nn::ReLU(), torch::nn::Linear(128, 10));
  {
    // Rank 0 starts from the script's weights, the others from their own: DDP's start-up broadcast must fix that.
    torch::NoGradGuard no_grad;
    auto params = model->parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (comm->rank() == 0) params[i].copy_(items.get(i + 2).toTensor());
    }
  }
  runtime::ReducerOptions reducer;
  reducer.first_bucket_bytes = bucket_cap_bytes;
  reducer.bucket_cap_bytes = bucket_cap_bytes;
  reducer.rebuild_buckets = zero_stage == 0;
  reducer.shard_gradients = zero_stage == 2;
  runtime::DistributedDataParallel ddp(model.ptr(), *comm, reducer);
  runtime::OptimizerOptions o;
  o.kind = optimizer_name == "adam" ? runtime::OptimizerKind::kAdam : runtime::OptimizerKind::kSgd;
  o.lr = optimizer_name == "adam" ? 0.01 : 0.05;
  o.momentum = optimizer_name == "adam" ? 0.0 : 0.9;
  std::unique_ptr<runtime::ModelOptimizer> optimizer;
  if (zero_stage == 0) {
    optimizer = std::make_unique<runtime::ReplicatedOptimizer>(o, model->parameters());
  } else {
    optimizer = std::make_unique<runtime::ShardedOptimizer>(o, ddp.reducer(), *comm);
  }
  const int64_t global = batch * comm->size();
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    const int64_t row = (s % (x.size(0) / global)) * global + comm->rank() * batch;
    optimizer->zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(x.narrow(0, row, batch)), y.narrow(0, row, batch));
    losses.push_back(loss.item<double>());
    ddp.backward(loss);
    optimizer->step();
  }
  c10::List<at::Tensor> out;
  out.push_back(torch::tensor(losses, torch::kDouble));
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(out));
  std::ofstream(output + ".rank" + std::to_string(comm->rank()) + ".pt", std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (comm->rank() == 0)
    std::printf("libtorch %d.%d.%d\n", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
  return 0;
}
