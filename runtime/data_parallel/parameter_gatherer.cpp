#include "runtime/data_parallel/parameter_gatherer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <map>
#include <stdexcept>

namespace dtrain::runtime {

namespace {

class GradientArrived final : public torch::autograd::FunctionPostHook {
 public:
  GradientArrived(ParameterGatherer* gatherer, std::size_t bucket) : gatherer_(gatherer), bucket_(bucket) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    gatherer_->gradient_arrived(bucket_);
    return outputs;
  }

 private:
  ParameterGatherer* gatherer_;
  std::size_t bucket_;
};

}  // namespace

ParameterGatherer::ParameterGatherer(const std::vector<std::vector<std::string>>& blocks,
                                     const std::vector<NamedTensor>& parameters, const Reducer& reducer,
                                     ShardedOptimizer& optimizer)
    : optimizer_(optimizer) {
  std::map<std::string, std::size_t> block_of_name;
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    for (const std::string& name : blocks[b]) block_of_name[name] = b;
  }
  std::map<const c10::TensorImpl*, std::size_t> block_of_tensor;
  for (const NamedTensor& p : parameters) {
    const auto it = block_of_name.find(p.name);
    if (it != block_of_name.end()) block_of_tensor[p.tensor.unsafeGetTensorImpl()] = it->second;
  }

  bucket_of_block_.resize(blocks.size());
  const std::vector<Reducer::BucketLayout> layout = reducer.layout();
  parameters_in_bucket_.resize(layout.size());
  gradients_arrived_.assign(layout.size(), 0);
  for (std::size_t bucket = 0; bucket < layout.size(); ++bucket) {
    for (const at::Tensor& parameter : layout[bucket].parameters) {
      const std::size_t block = block_of_tensor.at(parameter.unsafeGetTensorImpl());
      if (bucket_of_block_[block] && *bucket_of_block_[block] != bucket) {
        throw std::logic_error(fmt::format("block {} spans two gradient buckets", block));
      }
      bucket_of_block_[block] = bucket;
      ++parameters_in_bucket_[bucket];
      auto accumulator = torch::autograd::impl::grad_accumulator(parameter);
      hook_keys_.push_back(accumulator->add_post_hook(std::make_unique<GradientArrived>(this, bucket)));
      accumulators_.push_back(std::move(accumulator));
    }
  }
  next_bucket_.resize(blocks.size());
  previous_bucket_.resize(blocks.size());
  for (std::size_t i = blocks.size(); i-- > 1;) {
    next_bucket_[i - 1] = bucket_of_block_[i] ? bucket_of_block_[i] : next_bucket_[i];
  }
  for (std::size_t i = 1; i < blocks.size(); ++i) {
    previous_bucket_[i] = bucket_of_block_[i - 1] ? bucket_of_block_[i - 1] : previous_bucket_[i - 1];
  }
}

ParameterGatherer::~ParameterGatherer() {
  for (std::size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void ParameterGatherer::before_forward(std::size_t block) {
  const auto bucket = bucket_of_block_.at(block);
  if (!bucket) return;
  gradients_arrived_[*bucket] = 0;  // a new use: a gradient that never came last time (unused) is not counted
  optimizer_.wait_gathered(*bucket);
  if (next_bucket_[block]) optimizer_.start_gather(*next_bucket_[block]);
}

at::Tensor ParameterGatherer::after_forward(std::size_t block, const at::Tensor& output) {
  const auto bucket = bucket_of_block_.at(block);
  if (!bucket) return output;
  if (at::GradMode::is_enabled() && output.requires_grad()) {
    const std::optional<std::size_t> previous = previous_bucket_[block];
    output.register_hook([this, bucket = *bucket, previous](const at::Tensor&) {
      optimizer_.wait_gathered(bucket);
      if (previous) optimizer_.start_gather(*previous);
    });
  }
  optimizer_.release(*bucket);
  return output;
}

void ParameterGatherer::gradient_arrived(std::size_t bucket) {
  if (++gradients_arrived_[bucket] < parameters_in_bucket_[bucket]) return;
  gradients_arrived_[bucket] = 0;
  optimizer_.release(bucket);
}

}  // namespace dtrain::runtime
