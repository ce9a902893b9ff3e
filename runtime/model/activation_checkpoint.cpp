#include "runtime/model/activation_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/variable.h>

#include <mutex>

#include "runtime/model/torch_compat.h"

namespace dtrain::runtime {

namespace {

at::Tensor generator_state(at::Generator& generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void set_generator_state(at::Generator& generator, const at::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

class CheckpointedBlock final : public torch::autograd::Node {
 public:
  CheckpointedBlock(Block block, at::Tensor input, at::Generator generator)
      : block_(std::move(block)),
        input_(input.detach()),
        input_requires_grad_(input.requires_grad()),
        generator_(std::move(generator)),
        rng_before_(generator_state(generator_)),
        autocast_(compat::autocast_enabled(input.device().type())),
        autocast_dtype_(compat::autocast_dtype(input.device().type())) {}

  std::string name() const override { return "CheckpointedBlock"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    const at::Tensor rng_now = generator_state(generator_);
    set_generator_state(generator_, rng_before_);
    at::Tensor input = input_.detach().requires_grad_(input_requires_grad_);
    at::Tensor output;
    {
      at::AutoGradMode grad_on(true);
      compat::AutocastScope autocast(autocast_, input.device().type(), autocast_dtype_);
      output = block_(input);
    }
    set_generator_state(generator_, rng_now);
    // The block's parameters get their gradients here; the input's is this node's result. A block without
    // parameters on an input without gradient (a Flatten first) has nothing to send back.
    if (output.requires_grad()) torch::autograd::backward({output}, {grads[0]});
    torch::autograd::variable_list result{input_requires_grad_ ? input.grad() : at::Tensor()};
    input_ = at::Tensor();  // once per step: free the input now, not when the graph goes
    return result;
  }

 private:
  Block block_;
  at::Tensor input_;
  bool input_requires_grad_;
  at::Generator generator_;
  at::Tensor rng_before_;
  bool autocast_;
  c10::ScalarType autocast_dtype_;
};

}  // namespace

at::Tensor checkpointed(const Block& block, const at::Tensor& input) {
  if (!at::GradMode::is_enabled()) return block(input);  // evaluation: nothing to keep anyway
  at::Generator generator = at::globalContext().defaultGenerator(input.device());
  auto node = std::make_shared<CheckpointedBlock>(block, input, generator);
  at::Tensor output;
  {
    at::NoGradGuard no_grad;
    output = block(input).detach();  // detached: a fresh tensor whose history is the node's
  }
  node->set_next_edges(torch::autograd::collect_next_edges(input));
  torch::autograd::set_history(output, node);
  return output;
}

}  // namespace dtrain::runtime
