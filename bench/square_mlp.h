#pragma once
// The benchmarks' large model: `layers` square Linear + ReLU layers of `width` and a 10-class head, the same initial
// weights in every call (seeded), with random data to train it on.

#include <torch/torch.h>

#include <cstdint>

namespace dtrain::bench {

inline torch::nn::Sequential square_mlp(int width, int layers) {
  torch::manual_seed(2);
  torch::nn::Sequential model;
  for (int l = 0; l < layers; ++l) {
    model->push_back(torch::nn::Linear(width, width));
    model->push_back(torch::nn::ReLU());
  }
  model->push_back(torch::nn::Linear(width, 10));
  return model;
}

inline std::int64_t parameter_count(const torch::nn::Sequential& model) {
  std::int64_t count = 0;
  for (const auto& p : model->parameters()) count += p.numel();
  return count;
}

// `samples` random inputs of `width` features and 10-class labels, the same in every call.
struct RandomData {
  at::Tensor x, y;
  RandomData(std::int64_t samples, int width) {
    torch::manual_seed(1);
    x = torch::randn({samples, width});
    y = torch::randint(0, 10, {samples});
  }
};

}  // namespace dtrain::bench
