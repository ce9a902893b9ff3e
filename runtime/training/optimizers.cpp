#include "runtime/training/optimizers.h"

#include <fmt/format.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <stdexcept>

#include "runtime/model/torch_compat.h"

namespace dtrain::runtime {

const char* to_string(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return "sgd";
    case OptimizerKind::kAdam:
      return "adam";
    case OptimizerKind::kAdamW:
      return "adamw";
  }
  return "?";
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerOptions& o,
                                                        const std::vector<at::Tensor>& parameters) {
  if (!(o.lr > 0)) throw std::invalid_argument(fmt::format("optimizer: lr must be positive (got {})", o.lr));
  if (o.weight_decay < 0) throw std::invalid_argument("optimizer: weight decay must be >= 0");
  if (o.kind == OptimizerKind::kSgd) {
    if (o.momentum < 0) throw std::invalid_argument("optimizer: momentum must be >= 0");
    if (o.nesterov && o.momentum <= 0) throw std::invalid_argument("optimizer: nesterov needs momentum > 0");
    return std::make_unique<torch::optim::SGD>(
        parameters,
        torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
  }
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) {
    throw std::invalid_argument("optimizer: betas must be in [0, 1)");
  }
  if (!(o.eps > 0)) throw std::invalid_argument("optimizer: eps must be positive");
  if (o.kind == OptimizerKind::kAdam) {
    return std::make_unique<torch::optim::Adam>(
        parameters, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  }
  return std::make_unique<torch::optim::AdamW>(
      parameters, torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

std::map<std::string, double> group_options(torch::optim::Optimizer& optimizer, std::size_t group) {
  torch::optim::OptimizerOptions& options = optimizer.param_groups().at(group).options();
  if (auto* sgd = dynamic_cast<torch::optim::SGDOptions*>(&options)) {
    return {{"lr", sgd->lr()},
            {"momentum", sgd->momentum()},
            {"dampening", sgd->dampening()},
            {"weight_decay", sgd->weight_decay()},
            {"nesterov", sgd->nesterov() ? 1.0 : 0.0}};
  }
  const auto adam_like = [](auto& adam) {
    return std::map<std::string, double>{
        {"lr", adam.lr()},   {"beta1", std::get<0>(adam.betas())},  {"beta2", std::get<1>(adam.betas())},
        {"eps", adam.eps()}, {"weight_decay", adam.weight_decay()}, {"amsgrad", adam.amsgrad() ? 1.0 : 0.0}};
  };
  if (auto* adamw = dynamic_cast<torch::optim::AdamWOptions*>(&options)) return adam_like(*adamw);
  if (auto* adam = dynamic_cast<torch::optim::AdamOptions*>(&options)) return adam_like(*adam);
  throw std::invalid_argument("group_options: not an optimizer dtrain builds (sgd, adam, adamw)");
}

void set_group_options(torch::optim::Optimizer& optimizer, std::size_t group,
                       const std::map<std::string, double>& values) {
  const auto value = [&](const char* name) {
    const auto it = values.find(name);
    if (it == values.end()) throw std::invalid_argument(fmt::format("optimizer options lack '{}'", name));
    return it->second;
  };
  torch::optim::OptimizerOptions& options = optimizer.param_groups().at(group).options();
  if (auto* sgd = dynamic_cast<torch::optim::SGDOptions*>(&options)) {
    sgd->lr(value("lr"));
    sgd->momentum(value("momentum"));
    sgd->dampening(value("dampening"));
    sgd->weight_decay(value("weight_decay"));
    sgd->nesterov(value("nesterov") != 0);
    return;
  }
  const auto adam_like = [&](auto& adam) {
    adam.lr(value("lr"));
    adam.betas(std::make_tuple(value("beta1"), value("beta2")));
    adam.eps(value("eps"));
    adam.weight_decay(value("weight_decay"));
    adam.amsgrad(value("amsgrad") != 0);
  };
  if (auto* adamw = dynamic_cast<torch::optim::AdamWOptions*>(&options)) return adam_like(*adamw);
  if (auto* adam = dynamic_cast<torch::optim::AdamOptions*>(&options)) return adam_like(*adam);
  throw std::invalid_argument("set_group_options: not an optimizer dtrain builds (sgd, adam, adamw)");
}

ParameterState parameter_state(torch::optim::Optimizer& optimizer, const at::Tensor& parameter) {
  ParameterState out;
  const torch::optim::OptimizerParamState* state = compat::optimizer_state(optimizer, parameter);
  const auto add = [&](const char* name, const at::Tensor& t) {
    if (t.defined()) out.tensors.emplace_back(name, t);
  };
  if (const auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(state)) {
    add("momentum_buffer", sgd->momentum_buffer());
  } else if (const auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(state)) {
    out.step = adam->step();
    add("exp_avg", adam->exp_avg());
    add("exp_avg_sq", adam->exp_avg_sq());
    add("max_exp_avg_sq", adam->max_exp_avg_sq());
  } else if (const auto* adamw = dynamic_cast<const torch::optim::AdamWParamState*>(state)) {
    out.step = adamw->step();
    add("exp_avg", adamw->exp_avg());
    add("exp_avg_sq", adamw->exp_avg_sq());
    add("max_exp_avg_sq", adamw->max_exp_avg_sq());
  }
  return out;
}

void set_parameter_state(torch::optim::Optimizer& optimizer, const at::Tensor& parameter, const ParameterState& state) {
  if (state.tensors.empty()) {
    compat::set_optimizer_state(optimizer, parameter, nullptr);
    return;
  }
  const auto named = [&](const char* name) {
    for (const auto& [key, t] : state.tensors) {
      if (key == name) return t;
    }
    return at::Tensor();
  };
  // Adam and AdamW keep the same fields under two types; each reads only its own.
  const auto fill = [&](auto adam) {
    adam->step(state.step);
    adam->exp_avg(named("exp_avg"));
    adam->exp_avg_sq(named("exp_avg_sq"));
    adam->max_exp_avg_sq(named("max_exp_avg_sq"));
    return adam;
  };
  std::unique_ptr<torch::optim::OptimizerParamState> made;
  if (dynamic_cast<torch::optim::SGD*>(&optimizer) != nullptr) {
    auto sgd = std::make_unique<torch::optim::SGDParamState>();
    sgd->momentum_buffer(named("momentum_buffer"));
    made = std::move(sgd);
  } else if (dynamic_cast<torch::optim::AdamW*>(&optimizer) != nullptr) {
    made = fill(std::make_unique<torch::optim::AdamWParamState>());
  } else if (dynamic_cast<torch::optim::Adam*>(&optimizer) != nullptr) {
    made = fill(std::make_unique<torch::optim::AdamParamState>());
  } else {
    throw std::invalid_argument("set_parameter_state: not an optimizer dtrain builds (sgd, adam, adamw)");
  }
  compat::set_optimizer_state(optimizer, parameter, std::move(made));
}

std::int64_t optimizer_state_bytes(torch::optim::Optimizer& optimizer) {
  std::int64_t bytes = 0;
  auto add = [&](const at::Tensor& t) {
    if (t.defined()) bytes += t.numel() * static_cast<std::int64_t>(t.element_size());
  };
  for (const auto& [key, state] : optimizer.state()) {
    if (const auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(state.get())) {
      add(sgd->momentum_buffer());
    } else if (const auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(state.get())) {
      add(adam->exp_avg());
      add(adam->exp_avg_sq());
      add(adam->max_exp_avg_sq());
    } else if (const auto* adamw = dynamic_cast<const torch::optim::AdamWParamState*>(state.get())) {
      add(adamw->exp_avg());
      add(adamw->exp_avg_sq());
      add(adamw->max_exp_avg_sq());
    }
  }
  return bytes;
}

}  // namespace dtrain::runtime
