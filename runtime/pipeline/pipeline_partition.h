#pragma once
// Cutting a sequential model into pipeline stages: contiguous runs of layers, balanced by parameter count or by
// measured forward+backward time, so that the slowest stage (which sets the pipeline's pace) is as fast as it can be.

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "comm/control_plane.h"

namespace dtrain::runtime {

// Layers [begin, end) of the full model.
struct LayerRange {
  int begin = 0;
  int end = 0;
};

// Splits `costs` (one per layer, >= 0) into `stages` contiguous, non-empty ranges so that the largest sum is as small
// as possible (ties: later stages take fewer layers; the last one also computes the loss). Throws std::invalid_argument
// if there are fewer layers than stages.
std::vector<LayerRange> balance_layers(const std::vector<double>& costs, int stages);

// What the built-in model's stages are balanced by (--partition): parameter counts or measured time.
enum class PartitionCost { kParameters, kTime };
const char* to_string(PartitionCost cost);  // "parameters", "time"

// One cost per layer: its parameter count.
std::vector<double> parameter_costs(const torch::nn::Sequential& model);

// One cost per layer: its forward plus backward time (seconds, median of `repeats`) on `sample_input`. Collective:
// world rank 0 measures and broadcasts its figures, so every rank partitions alike.
std::vector<double> measured_costs(const torch::nn::Sequential& model, const at::Tensor& sample_input, int repeats,
                                   comm::ControlPlane& world);

// A new Sequential of layers [range.begin, range.end) of `model`, sharing their parameters and keeping their names
// ("3.weight" stays "3.weight"), so that checkpoints and errors use the full model's names.
torch::nn::Sequential slice_layers(const torch::nn::Sequential& model, LayerRange range);

// "stage 0: layers 0-2 (1,234 parameters); stage 1: ..." for the start-up line.
std::string describe_partition(const torch::nn::Sequential& model, const std::vector<LayerRange>& ranges);

}  // namespace dtrain::runtime
