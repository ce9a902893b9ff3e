#include "runtime/training/model_optimizer.h"

#include "runtime/model/torch_compat.h"

namespace dtrain::runtime {

ReplicatedOptimizer::ReplicatedOptimizer(const OptimizerOptions& options, const std::vector<at::Tensor>& parameters)
    : parameters_(parameters), optimizer_(make_optimizer(options, parameters)) {}

std::int64_t ReplicatedOptimizer::parameter_bytes() const {
  std::int64_t bytes = 0;
  for (const at::Tensor& p : parameters_) bytes += p.numel() * static_cast<std::int64_t>(p.element_size());
  return bytes;
}

void ReplicatedOptimizer::set_learning_rate(double lr) {
  runtime::set_learning_rate(*optimizer_, lr);
}

void ReplicatedOptimizer::step() {
  optimizer_->step();
}

void ReplicatedOptimizer::zero_grad() {
  compat::zero_grad_in_place(*optimizer_);
}

}  // namespace dtrain::runtime
