#pragma once
// DistributedDataParallel for LibTorch modules: wraps a torch::nn::Module (or a TorchScript module) and a
// communicator; gradients are averaged across ranks while backward runs (see Note [Gradient buckets]).
//
//   dtrain::runtime::DistributedDataParallel ddp(model, *comm);
//   auto loss = criterion(model->forward(x), y);
//   ddp.backward(loss);          // loss.backward() + the overlapped gradient allreduce
//   optimizer.step();

#include <torch/nn/module.h>
#include <torch/script.h>

#include <memory>

#include "comm/communicator.h"
#include "runtime/data_parallel/reducer.h"

namespace dtrain::runtime {

class DistributedDataParallel {
 public:
  // Collective over `comm`: broadcasts rank 0's parameters and buffers (and checks that the models agree).
  DistributedDataParallel(const std::shared_ptr<torch::nn::Module>& module, comm::Communicator& comm,
                          ReducerOptions options = {});
  DistributedDataParallel(const torch::jit::Module& module, comm::Communicator& comm, ReducerOptions options = {});

  // loss.backward(), then waits for the averaged gradients. Inside a Reducer::NoSync only accumulates locally.
  void backward(const at::Tensor& loss);

  Reducer& reducer() { return *reducer_; }

 private:
  std::unique_ptr<Reducer> reducer_;
};

}  // namespace dtrain::runtime
