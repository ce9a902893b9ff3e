#include "jobs/char_transformer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>
#include <stdexcept>

namespace dtrain::jobs {

namespace {

// Token plus learned position embeddings.
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(std::int64_t vocabulary, std::int64_t context, std::int64_t width)
      : tokens_(register_module("tokens", torch::nn::Embedding(vocabulary, width))),
        positions_(register_module("positions", torch::nn::Embedding(context, width))),
        context_(context) {
    // Small initial embeddings (GPT-2's 0.02), so the first blocks start near the identity.
    at::NoGradGuard no_grad;
    tokens_->weight.normal_(0.0, 0.02);
    positions_->weight.normal_(0.0, 0.02);
  }
  at::Tensor forward(const at::Tensor& ids) {
    const std::int64_t length = ids.size(1);
    if (length > context_) {
      throw std::invalid_argument(
          fmt::format("sequences of {} tokens are longer than the model's context of {}", length, context_));
    }
    return tokens_->forward(ids) + positions_->forward(at::arange(length, ids.options().dtype(at::kLong)));
  }

 private:
  torch::nn::Embedding tokens_, positions_;
  std::int64_t context_;
};
TORCH_MODULE(Embedding);

// Pre-norm block: x + causal self-attention(norm(x)), then x + MLP(norm(x)).
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(std::int64_t width, std::int64_t heads)
      : norm1_(register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})))),
        qkv_(register_module("qkv", torch::nn::Linear(width, 3 * width))),
        project_(register_module("project", torch::nn::Linear(width, width))),
        norm2_(register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})))),
        expand_(register_module("expand", torch::nn::Linear(width, 4 * width))),
        contract_(register_module("contract", torch::nn::Linear(4 * width, width))),
        heads_(heads) {}

  at::Tensor forward(const at::Tensor& x) {
    const std::int64_t n = x.size(0), length = x.size(1), width = x.size(2), head_width = width / heads_;
    // [n, L, 3, heads, head_width] -> three [n, heads, L, head_width]
    const auto qkv =
        qkv_->forward(norm1_->forward(x)).view({n, length, 3, heads_, head_width}).permute({2, 0, 3, 1, 4});
    at::Tensor scores = at::matmul(qkv[0], qkv[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(head_width));
    const at::Tensor future = at::ones({length, length}, x.options().dtype(at::kBool)).triu(1);
    scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
    const at::Tensor attended = at::matmul(at::softmax(scores, -1), qkv[2]).transpose(1, 2).reshape({n, length, width});
    const at::Tensor h = x + project_->forward(attended);
    return h + contract_->forward(torch::nn::functional::gelu(expand_->forward(norm2_->forward(h))));
  }

 private:
  torch::nn::LayerNorm norm1_;
  torch::nn::Linear qkv_, project_;
  torch::nn::LayerNorm norm2_;
  torch::nn::Linear expand_, contract_;
  std::int64_t heads_;
};
TORCH_MODULE(Block);

class HeadImpl : public torch::nn::Module {
 public:
  HeadImpl(std::int64_t width, std::int64_t vocabulary)
      : norm_(register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})))),
        output_(register_module("output", torch::nn::Linear(width, vocabulary))) {}
  at::Tensor forward(const at::Tensor& x) { return output_->forward(norm_->forward(x)); }

 private:
  torch::nn::LayerNorm norm_;
  torch::nn::Linear output_;
};
TORCH_MODULE(Head);

}  // namespace

torch::nn::Sequential make_char_transformer(const CharTransformerOptions& o) {
  if (o.vocabulary < 2 || o.context < 1 || o.width < 1 || o.heads < 1 || o.blocks < 1) {
    throw std::invalid_argument(
        fmt::format("char-transformer: sizes must be positive (vocabulary {}, context {}, "
                    "width {}, heads {}, blocks {})",
                    o.vocabulary, o.context, o.width, o.heads, o.blocks));
  }
  if (o.width % o.heads != 0) {
    throw std::invalid_argument(
        fmt::format("char-transformer: width {} is not a multiple of {} heads", o.width, o.heads));
  }
  torch::nn::Sequential model;
  model->push_back(Embedding(o.vocabulary, o.context, o.width));
  for (std::int64_t b = 0; b < o.blocks; ++b) model->push_back(Block(o.width, o.heads));
  model->push_back(Head(o.width, o.vocabulary));
  return model;
}

}  // namespace dtrain::jobs
