#pragma once
// The optimizers dtrain's trainer offers, built from plain options so that a config file can choose them.

#include <torch/optim/optimizer.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dtrain::runtime {

enum class OptimizerKind { kSgd, kAdam, kAdamW };
const char* to_string(OptimizerKind kind);  // "sgd", "adam", "adamw": the --optimizer names, kept in checkpoints

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kSgd;
  double lr = 0.01;
  double momentum = 0.0;  // sgd
  bool nesterov = false;  // sgd (needs momentum > 0)
  double weight_decay = 0.0;
  double beta1 = 0.9;  // adam, adamw
  double beta2 = 0.999;
  double eps = 1e-8;
};

// Throws std::invalid_argument naming the offending option.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerOptions& options,
                                                        const std::vector<at::Tensor>& parameters);

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// A param group's options as named numbers ("lr", "momentum", "beta1", "amsgrad" as 0 or 1, ...): what a checkpoint
// keeps of them. Throws std::invalid_argument for an optimizer dtrain does not build (sgd, adam, adamw), or when
// set_group_options lacks one of them.
std::map<std::string, double> group_options(torch::optim::Optimizer& optimizer, std::size_t group);
void set_group_options(torch::optim::Optimizer& optimizer, std::size_t group,
                       const std::map<std::string, double>& options);

// One parameter's optimizer state as named tensors shaped like the parameter (SGD: "momentum_buffer"; Adam, AdamW:
// "exp_avg", "exp_avg_sq" and with amsgrad "max_exp_avg_sq") and Adam's step count: what re-sharding a checkpoint
// moves element by element (Note [Re-sharding]). No tensors: no state yet (LibTorch makes it at the first step).
struct ParameterState {
  std::int64_t step = 0;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
};
ParameterState parameter_state(torch::optim::Optimizer& optimizer, const at::Tensor& parameter);
// Replaces the parameter's state with `state` (removes it when `state` has no tensors).
void set_parameter_state(torch::optim::Optimizer& optimizer, const at::Tensor& parameter, const ParameterState& state);

// Bytes of the state `optimizer` keeps (momentum buffers, Adam's moments); 0 before its first step.
std::int64_t optimizer_state_bytes(torch::optim::Optimizer& optimizer);

}  // namespace dtrain::runtime
