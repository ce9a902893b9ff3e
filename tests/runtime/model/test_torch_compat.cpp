// runtime/model/torch_compat.h on whichever LibTorch this is built against (1.13 on bookworm, 2.6 in .ci/trixie.sh):
// each call does what it promises, and both unscale paths agree exactly.

#include "runtime/model/torch_compat.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <limits>

namespace dtrain::runtime::compat {
namespace {

TEST(TorchCompat, AutocastScopeRunsLinearInBf16AndRestoresTheState) {
  torch::nn::Linear linear(4, 3);
  const auto x = torch::randn({2, 4});
  EXPECT_FALSE(autocast_enabled(torch::kCPU));
  {
    AutocastScope outer(true, torch::kCPU, torch::kBFloat16);
    EXPECT_TRUE(autocast_enabled(torch::kCPU));
    EXPECT_EQ(autocast_dtype(torch::kCPU), torch::kBFloat16);
    EXPECT_EQ(linear->forward(x).scalar_type(), torch::kBFloat16);
    {
      AutocastScope disabled(false, torch::kCPU, torch::kBFloat16);  // leaves the state alone
      EXPECT_TRUE(autocast_enabled(torch::kCPU));
    }
    EXPECT_EQ(linear->weight.scalar_type(), torch::kFloat);  // weights stay fp32
    EXPECT_FALSE(autocast_enabled(torch::kCUDA));            // the CPU scope leaves CUDA autocast alone
  }
  EXPECT_FALSE(autocast_enabled(torch::kCPU));
  EXPECT_EQ(linear->forward(x).scalar_type(), torch::kFloat);
}

TEST(TorchCompat, Fp16AutocastRunsExactlyWhereItIsClaimed) {
  torch::nn::Linear linear(4, 3);
  if (!cpu_fp16_autocast_supported()) {
    GTEST_SKIP() << "LibTorch " << TORCH_VERSION << " has no fp16 CPU kernels (they arrived in 2.x)";
  }
  AutocastScope scope(true, torch::kCPU, torch::kHalf);
  EXPECT_EQ(torch::relu(linear->forward(torch::randn({2, 4}))).scalar_type(), torch::kHalf);
}

TEST(TorchCompat, BothUnscalePathsGiveTheSameExactResult) {
  for (bool portable : {false, true}) {
    std::vector<torch::Tensor> grads = {torch::tensor({8.0f, -2.0f}), torch::tensor({0.5f})};
    EXPECT_EQ(unscale_and_find_non_finite(grads, 0.25, portable).item<float>(), 0.0f) << portable;
    EXPECT_TRUE(torch::equal(grads[0], torch::tensor({2.0f, -0.5f}))) << portable;
    EXPECT_TRUE(torch::equal(grads[1], torch::tensor({0.125f}))) << portable;
    std::vector<torch::Tensor> bad = {torch::tensor({1.0f}),
                                      torch::tensor({std::numeric_limits<float>::quiet_NaN(), 1.0f})};
    EXPECT_EQ(unscale_and_find_non_finite(bad, 0.5, portable).item<float>(), 1.0f) << portable;
    std::vector<torch::Tensor> inf = {torch::tensor({std::numeric_limits<float>::infinity()})};
    EXPECT_EQ(unscale_and_find_non_finite(inf, 0.5, portable).item<float>(), 1.0f) << portable;
  }
}

TEST(TorchCompat, OptimizerStateIsFoundByParameter) {
  torch::nn::Linear linear(2, 1);
  torch::optim::Adam adam(linear->parameters(), 0.1);
  EXPECT_EQ(optimizer_state(adam, linear->weight), nullptr);
  linear->forward(torch::ones({1, 2})).sum().backward();
  adam.step();
  auto* state = dynamic_cast<torch::optim::AdamParamState*>(optimizer_state(adam, linear->weight));
  ASSERT_NE(state, nullptr);
  EXPECT_EQ(state->step(), 1);
  EXPECT_EQ(state->exp_avg().sizes(), linear->weight.sizes());
}

TEST(TorchCompat, ZeroGradKeepsTheGradientTensors) {
  torch::nn::Linear linear(2, 1);
  torch::optim::SGD sgd(linear->parameters(), 0.1);
  linear->forward(torch::ones({1, 2})).sum().backward();
  const void* before = linear->weight.grad().data_ptr();
  zero_grad_in_place(sgd);
  ASSERT_TRUE(linear->weight.grad().defined());
  EXPECT_EQ(linear->weight.grad().data_ptr(), before);
  EXPECT_EQ(linear->weight.grad().abs().sum().item<float>(), 0.0f);
}

}  // namespace
}  // namespace dtrain::runtime::compat
