#pragma once
// A model's parameters and buffers as plain (name, tensor) pairs: the common ground of torch::nn::Module and
// TorchScript modules for the reducer and the checkpoints.

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace dtrain::runtime {

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};

// "fc1.weight Float [16, 12]": what must agree between ranks, and between a checkpoint and the model.
std::string signature(const NamedTensor& tensor);
std::vector<std::string> signatures(const std::vector<NamedTensor>& tensors);

}  // namespace dtrain::runtime
