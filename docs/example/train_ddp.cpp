// Trains a small regression MLP on synthetic data with dtrain's DistributedDataParallel on every rank that mpirun
// started: each rank draws its own share of the data, gradients are averaged across ranks during backward, and at
// the end every rank holds the same weights (checked).
#include <torch/torch.h>

#include <cstdio>

#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "runtime/data_parallel/distributed_data_parallel.h"

int main(int argc, char** argv) {
  dtrain::comm::MpiEnvironment mpi(&argc, &argv);
  auto comm = dtrain::comm::MpiCommunicator::create(MPI_COMM_WORLD);
  torch::set_num_threads(1);

  torch::nn::Sequential model(torch::nn::Linear(4, 32), torch::nn::Tanh(), torch::nn::Linear(32, 1));
  dtrain::runtime::DistributedDataParallel ddp(model.ptr(), *comm);  // every rank starts from rank 0's weights
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));

  torch::manual_seed(100 + comm->rank());  // each rank its own samples of y = sin(x0) + x1 * x2 - x3
  double loss_value = 0;
  for (int step = 1; step <= 300; ++step) {
    const torch::Tensor x = torch::rand({32, 4}) * 2 - 1;
    const torch::Tensor y = torch::sin(x.select(1, 0)) + x.select(1, 1) * x.select(1, 2) - x.select(1, 3);
    const torch::Tensor loss = torch::mse_loss(model->forward(x).squeeze(1), y);
    optimizer.zero_grad();
    ddp.backward(loss);  // averaged across ranks, overlapped with backward
    optimizer.step();
    loss_value = loss.item<double>();
    if (comm->rank() == 0 && step % 100 == 0) std::printf("step %d: loss %.4f\n", step, loss_value);
  }

  // The same weights everywhere: the largest and smallest of every parameter across ranks agree.
  bool same = true;
  for (const auto& p : model->parameters()) {
    torch::Tensor high = p.detach().clone(), low = p.detach().clone();
    comm->allreduce(high, dtrain::comm::ReduceOp::kMax)->wait();
    comm->allreduce(low, dtrain::comm::ReduceOp::kMin)->wait();
    same = same && torch::equal(high, low);
  }
  if (comm->rank() == 0) std::printf("%s; final loss %.4f\n", same ? "weights identical on every rank" : "WEIGHTS DIFFER", loss_value);
  return same && loss_value < 0.05 ? 0 : 1;
}
