#pragma once
// What the trainer minimises and reports: cross-entropy for classifiers (logits [n, C], targets [n]) and for
// next-token models (logits [n, L, C], targets [n, L], every position a prediction). One place, so data-parallel
// steps, pipeline stages and evaluation all compute the same thing.

#include <ATen/core/Tensor.h>

namespace dtrain::runtime {

// Mean cross-entropy over all predictions of the batch, in float32 whatever the logits' dtype.
at::Tensor prediction_loss(const at::Tensor& logits, const at::Tensor& targets);

// Evaluation sums, float64 [4]: summed loss, correct predictions, predictions, samples; samples whose `valid` is
// false (evaluation padding, [n]) are left out.
at::Tensor evaluation_sums(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& valid);

}  // namespace dtrain::runtime
