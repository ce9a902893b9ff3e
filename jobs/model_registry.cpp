#include "jobs/model_registry.h"

#include "jobs/char_transformer.h"
#include "jobs/resnet.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <functional>
#include <map>
#include <numeric>
#include <stdexcept>

namespace dtrain::jobs {

namespace {

std::int64_t flat_size(const ModelInput& input) {
  return std::accumulate(input.sample_shape.begin(), input.sample_shape.end(), std::int64_t{1},
                         std::multiplies<std::int64_t>());
}

// The published Fashion-MNIST MLP baseline (256-128 hidden, ReLU): ~0.88 test accuracy.
torch::nn::Sequential mlp(const ModelInput& input) {
  return torch::nn::Sequential(torch::nn::Flatten(), torch::nn::Linear(flat_size(input), 256), torch::nn::ReLU(),
                               torch::nn::Linear(256, 128), torch::nn::ReLU(), torch::nn::Linear(128, input.classes));
}

// Two 3x3 convolutions with pooling and one linear layer (~50K parameters): ~0.91 on Fashion-MNIST in a few epochs.
torch::nn::Sequential cnn(const ModelInput& input) {
  if (input.sample_shape.size() != 2) {
    throw std::invalid_argument(fmt::format("model 'cnn' needs 2-D samples (height, width); the data has shape [{}]",
                                            fmt::join(input.sample_shape, ", ")));
  }
  const std::int64_t h = input.sample_shape[0] / 4;
  const std::int64_t w = input.sample_shape[1] / 4;
  return torch::nn::Sequential(torch::nn::Unflatten(torch::nn::UnflattenOptions(1, {1, input.sample_shape[0]})),
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).padding(1)), torch::nn::ReLU(),
                               torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)),
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)), torch::nn::ReLU(),
                               torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)), torch::nn::Flatten(),
                               torch::nn::Dropout(0.25), torch::nn::Linear(64 * h * w, input.classes));
}

// Character-level language model (~0.8M parameters): on the KJV text it gets well under the 3.38 bits per character
// of a bigram model within an epoch.
torch::nn::Sequential char_transformer(const ModelInput& input) {
  if (input.sample_shape.size() != 1) {
    throw std::invalid_argument(
        fmt::format("model 'char-transformer' needs token sequences (text shards from dtrain-shard --text, trained "
                    "with --targets next-token); the data has samples of shape [{}]",
                    fmt::join(input.sample_shape, ", ")));
  }
  CharTransformerOptions options;
  options.vocabulary = input.classes;
  options.context = input.sample_shape[0];
  return make_char_transformer(options);
}

const std::map<std::string, std::function<torch::nn::Sequential(const ModelInput&)>>& registry() {
  static const std::map<std::string, std::function<torch::nn::Sequential(const ModelInput&)>> models = {
      {"mlp", mlp},
      {"cnn", cnn},
      {"char-transformer", char_transformer},
      {"resnet18", [](const ModelInput& input) { return make_resnet18(input.sample_shape, input.classes); }},
  };
  return models;
}

}  // namespace

torch::nn::Sequential make_model(const std::string& name, const ModelInput& input) {
  const auto it = registry().find(name);
  if (it == registry().end()) {
    throw std::invalid_argument(fmt::format("unknown model '{}' (known: {})", name, fmt::join(model_names(), ", ")));
  }
  if (input.classes < 2) throw std::invalid_argument("a classifier needs at least 2 classes");
  return it->second(input);
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& entry : registry()) names.push_back(entry.first);
  return names;
}

}  // namespace dtrain::jobs
