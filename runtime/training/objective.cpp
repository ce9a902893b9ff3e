#include "runtime/training/objective.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/nn/functional/loss.h>

#include <stdexcept>

namespace dtrain::runtime {

namespace {

// Logits as [predictions, C] and targets as [predictions].
std::pair<at::Tensor, at::Tensor> flatten_predictions(const at::Tensor& logits, const at::Tensor& targets) {
  if (logits.dim() != targets.dim() + 1 || logits.sizes().slice(0, targets.dim()) != targets.sizes()) {
    throw std::invalid_argument(
        fmt::format("the model's output [{}] does not fit targets of shape [{}]: a "
                    "classifier gives [n, classes], a next-token model [n, length, classes]",
                    fmt::join(logits.sizes(), ", "), fmt::join(targets.sizes(), ", ")));
  }
  return {logits.reshape({-1, logits.size(-1)}).to(at::kFloat), targets.reshape({-1})};
}

}  // namespace

at::Tensor prediction_loss(const at::Tensor& logits, const at::Tensor& targets) {
  auto [flat_logits, flat_targets] = flatten_predictions(logits, targets);
  return torch::nn::functional::cross_entropy(flat_logits, flat_targets);
}

at::Tensor evaluation_sums(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& valid) {
  auto [flat_logits, flat_targets] = flatten_predictions(logits, targets);
  const at::Tensor losses = torch::nn::functional::cross_entropy(
      flat_logits, flat_targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  // Each sample's validity, repeated for each of its predictions.
  const std::int64_t per_sample = targets.numel() / std::max<std::int64_t>(1, targets.size(0));
  const at::Tensor weight = valid.to(at::kDouble).repeat_interleave(per_sample);
  const at::Tensor correct = flat_logits.argmax(1).eq(flat_targets).to(at::kDouble);
  return at::stack(
      {(losses.to(at::kDouble) * weight).sum(), (correct * weight).sum(), weight.sum(), valid.to(at::kDouble).sum()});
}

}  // namespace dtrain::runtime
