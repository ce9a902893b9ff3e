#pragma once
// The built-in models, by name. To add a model: write a function that returns a torch::nn::Sequential for a
// ModelInput and add one line to the table in model_registry.cpp; configs and the command line can then name it.

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dtrain::jobs {

// What the data gives the model: the shape of one sample and the number of classes.
struct ModelInput {
  std::vector<std::int64_t> sample_shape;  // e.g. {28, 28} for Fashion-MNIST images
  std::int64_t classes = 10;               // or the vocabulary size, for token sequences
};

// Throws std::invalid_argument listing the known names if `name` is unknown, or if the input does not fit the model.
torch::nn::Sequential make_model(const std::string& name, const ModelInput& input);
std::vector<std::string> model_names();

}  // namespace dtrain::jobs
