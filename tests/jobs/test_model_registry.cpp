// The registry's ResNet-18 against the architecture's own arithmetic: parameters counted layer by layer from the
// paper's table (not from the module), the BatchNorm buffers, the output shape, and that every block is one layer a
// pipeline can cut at.

#include "jobs/model_registry.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace dtrain::jobs {
namespace {

std::int64_t conv(std::int64_t in, std::int64_t out, std::int64_t k) {
  return in * out * k * k;  // no bias: batch norm follows
}
std::int64_t bn(std::int64_t channels) {
  return 2 * channels;  // weight and bias
}
std::int64_t block(std::int64_t in, std::int64_t out) {
  const std::int64_t body = conv(in, out, 3) + bn(out) + conv(out, out, 3) + bn(out);
  return in == out ? body : body + conv(in, out, 1) + bn(out);
}

TEST(ModelRegistry, ResNet18HasThePapersParametersForOneChannelImages) {
  torch::nn::Sequential model = make_model("resnet18", {{28, 28}, 10});
  std::int64_t expected = conv(1, 64, 3) + bn(64);
  std::int64_t in = 64;
  for (std::int64_t out : {64, 128, 256, 512}) {
    expected += block(in, out) + block(out, out);
    in = out;
  }
  expected += 512 * 10 + 10;
  std::int64_t counted = 0;
  for (const auto& p : model->parameters()) counted += p.numel();
  EXPECT_EQ(counted, expected);
  EXPECT_EQ(expected, 11172810);
  // Running mean, running variance and batch count of each of the 20 batch norms (stem, 16 in blocks, 3 shortcuts).
  EXPECT_EQ(model->buffers().size(), 60u);
  // Unflatten, stem (conv, bn, relu), 8 blocks, pooling, flatten, linear: the pipeline's cut points.
  EXPECT_EQ(model->size(), 15u);
}

TEST(ModelRegistry, ResNet18ClassifiesImagesOfOneOrThreeChannels) {
  torch::manual_seed(0);
  torch::nn::Sequential gray = make_model("resnet18", {{28, 28}, 10});
  EXPECT_EQ(gray->forward(torch::rand({2, 28, 28})).sizes(), (std::vector<std::int64_t>{2, 10}));
  torch::nn::Sequential color = make_model("resnet18", {{3, 32, 32}, 100});
  EXPECT_EQ(color->forward(torch::rand({2, 3, 32, 32})).sizes(), (std::vector<std::int64_t>{2, 100}));
  EXPECT_THROW(make_model("resnet18", {{784}, 10}), std::invalid_argument);
}

}  // namespace
}  // namespace dtrain::jobs
