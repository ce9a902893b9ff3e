#include "runtime/data/tensor_data_feed.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <stdexcept>

#include "sampler/sampler_state.h"

namespace dtrain::runtime {

namespace {

sampler::SamplerOptions with_size(sampler::SamplerOptions options, const at::Tensor& inputs) {
  options.dataset_size = inputs.size(0);
  return options;
}

}  // namespace

TensorDataFeed::TensorDataFeed(at::Tensor inputs, at::Tensor targets, std::int64_t classes,
                               sampler::SamplerOptions options)
    : inputs_(inputs.to(at::isIntegralType(inputs.scalar_type(), /*includeBool=*/false) ? at::kLong : at::kFloat)
                  .contiguous()),
      targets_(targets.to(at::kLong).contiguous()),
      classes_(classes),
      sampler_(with_size(std::move(options), inputs)) {
  if (inputs_.dim() < 1 || targets_.dim() < 1 || inputs_.size(0) != targets_.size(0)) {
    throw std::invalid_argument(fmt::format("inputs and targets must have the same number of samples (got {} and {})",
                                            inputs_.dim() ? inputs_.size(0) : 0, targets_.numel()));
  }
}

std::optional<Batch> TensorDataFeed::next() {
  std::optional<sampler::Batch> picked = sampler_.next();
  if (!picked) return std::nullopt;
  const auto n = static_cast<std::int64_t>(picked->indices.size());
  const at::Tensor index = at::from_blob(picked->indices.data(), {n}, at::kLong).clone();
  Batch batch;
  batch.inputs = inputs_.index_select(0, index);
  batch.targets = targets_.index_select(0, index);
  batch.valid = at::from_blob(picked->valid.data(), {n}, at::kByte).to(at::kBool);
  return batch;
}

std::string TensorDataFeed::state() const {
  return sampler::to_string(sampler_.state());
}

void TensorDataFeed::restore(const std::string& state) {
  sampler_.restore(sampler::parse_sampler_state(state));
}

std::int64_t TensorDataFeed::global_batch_size() const {
  return sampler_.options().batch_size * sampler_.options().world_size;
}

std::vector<std::int64_t> TensorDataFeed::sample_shape() const {
  auto sizes = inputs_.sizes().vec();
  sizes.erase(sizes.begin());
  return sizes;
}

}  // namespace dtrain::runtime
