// Activation checkpointing (runtime/model/activation_checkpoint.h) against the same run without it: bit-identical
// losses, gradients and weights with dropout in the model — on one rank in a plain loop, and at 2 and 4 ranks through
// the trainer with the reducer's overlap, ZeRO stage 2, bf16 autocast and accumulation. Evaluation keeps no graph.

#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include <vector>

#include "comm/mpi_communicator.h"
#include "runtime/data/tensor_data_feed.h"
#include "runtime/model/activation_checkpoint.h"
#include "runtime/model/model.h"
#include "runtime/training/trainer.h"

namespace dtrain::runtime {
namespace {

// Nine blocks, three of them dropout; the first has no parameters (nothing to recompute a gradient for).
torch::nn::Sequential with_dropout() {
  torch::manual_seed(21);
  return torch::nn::Sequential(torch::nn::Flatten(), torch::nn::Linear(10, 24), torch::nn::Dropout(0.3), torch::nn::Linear(24, 24),
                               torch::nn::GELU(), torch::nn::Dropout(0.2), torch::nn::Linear(24, 12),
                               torch::nn::Dropout(0.1), torch::nn::Linear(12, 4));
}

struct Trajectory {
  std::vector<float> losses;
  std::vector<torch::Tensor> weights;
};

Trajectory plain_loop(int checkpoint_every) {
  SequentialModel model("dropout", with_dropout());
  model.checkpoint_activations(checkpoint_every);
  model.set_training(true);
  torch::optim::SGD sgd(model.module()->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  torch::manual_seed(8);  // the data and every dropout mask from here
  Trajectory out;
  for (int step = 0; step < 6; ++step) {
    const torch::Tensor x = torch::randn({16, 10});
    const torch::Tensor y = torch::randint(0, 4, {16});
    const torch::Tensor loss = torch::nn::functional::cross_entropy(model.forward(x), y);
    loss.backward();
    sgd.step();
    sgd.zero_grad();
    out.losses.push_back(loss.item<float>());
  }
  for (const auto& p : model.parameters()) out.weights.push_back(p.tensor.detach().clone());
  return out;
}

void expect_identical(const Trajectory& a, const Trajectory& b, const std::string& what) {
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (std::size_t i = 0; i < a.losses.size(); ++i) EXPECT_EQ(a.losses[i], b.losses[i]) << what << " step " << i;
  ASSERT_EQ(a.weights.size(), b.weights.size());
  for (std::size_t i = 0; i < a.weights.size(); ++i) {
    EXPECT_TRUE(torch::equal(a.weights[i], b.weights[i])) << what << " parameter " << i;
  }
}

TEST(ActivationCheckpoint, EveryBlockOrEverySecondGivesTheLossesAndWeightsOfTheRunWithout) {
  const Trajectory kept = plain_loop(0);
  expect_identical(plain_loop(1), kept, "every block");
  expect_identical(plain_loop(2), kept, "every second block");
}

TEST(ActivationCheckpoint, TheBlockKeepsOnlyItsInputAndRecomputesInBackward) {
  torch::nn::Linear linear(6, 6);
  int forwards = 0;
  const Block block = [&](const torch::Tensor& x) {
    ++forwards;
    return torch::tanh(linear->forward(x));
  };
  const torch::Tensor x = torch::randn({3, 6}, torch::requires_grad());
  const torch::Tensor y = checkpointed(block, x);
  EXPECT_EQ(forwards, 1);
  ASSERT_TRUE(y.grad_fn());
  EXPECT_EQ(y.grad_fn()->name(), "CheckpointedBlock");
  EXPECT_EQ(y.grad_fn()->next_edges().size(), 1u) << "only the input: no edge into the block's own graph";
  y.sum().backward();
  EXPECT_EQ(forwards, 2) << "backward replays the block once";

  const torch::Tensor x2 = x.detach().clone().requires_grad_(true);
  linear->zero_grad();
  const torch::Tensor weight_grad = [&] {
    torch::tanh(linear->forward(x2)).sum().backward();
    return linear->weight.grad().clone();
  }();
  EXPECT_TRUE(torch::allclose(x.grad(), x2.grad(), 0, 0));
  EXPECT_TRUE(torch::equal(linear->weight.grad(), weight_grad));

  torch::NoGradGuard evaluation;
  EXPECT_FALSE(checkpointed(block, x).requires_grad());
}

TEST(ActivationCheckpoint, ATorchScriptModuleIsRefusedWithOneLine) {
  class Opaque final : public TrainableModel {
   public:
    std::string name() const override { return "torchscript:model.pt"; }
    at::Tensor forward(const at::Tensor& input) override { return input; }
    std::vector<NamedTensor> parameters() override { return {}; }
    std::vector<NamedTensor> buffers() override { return {}; }
    void set_training(bool) override {}
    void to(const c10::Device&) override {}
    void export_to(const std::string&) override {}
  } opaque;
  try {
    opaque.checkpoint_activations(2);
    FAIL() << "an opaque module was checkpointed";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "--activation-checkpointing needs a model made of blocks (a built-in model); torchscript:model.pt "
                 "is one opaque module");
  }
}

TEST(ActivationCheckpoint, TrainerRunsWithOverlapZeroAndAutocastAreBitIdenticalWithAndWithout) {
  auto world = comm::MpiCommunicator::create(MPI_COMM_WORLD);
  torch::manual_seed(4);
  const torch::Tensor labels = torch::randint(0, 4, {240});
  const torch::Tensor inputs = torch::randn({240, 10});
  auto run = [&](int zero_stage, bool bf16, int every) {
    sampler::SamplerOptions s;
    s.world_size = world->size();
    s.rank = world->rank();
    s.batch_size = 5;
    s.seed = 2;
    TensorDataFeed feed(inputs, labels, 4, s);
    SequentialModel model("dropout", with_dropout());
    TrainerOptions o;
    o.progress = ProgressMode::kNone;
    o.max_steps = 6;
    o.accumulation = 2;
    o.zero_stage = zero_stage;
    o.amp = bf16 ? Precision::kBf16 : Precision::kFp32;
    o.optimizer.kind = OptimizerKind::kAdam;
    o.activation_checkpoint_every = every;
    o.reducer.first_bucket_bytes = 256;  // several buckets, some launched while backward runs
    o.reducer.bucket_cap_bytes = 1024;
    torch::manual_seed(30 + world->rank());  // each rank its own dropout masks
    Trainer trainer(o, model, feed, nullptr, *world);
    const TrainResult result = trainer.run();
    EXPECT_GT(trainer.reducer().buckets_launched_in_backward(), 0u);
    Trajectory out;
    out.losses.push_back(static_cast<float>(result.final_train_loss));
    for (const auto& p : model.parameters()) out.weights.push_back(p.tensor.detach().clone());
    return out;
  };
  for (const auto& [zero_stage, bf16] : std::vector<std::pair<int, bool>>{{0, false}, {2, true}, {3, true}}) {
    const Trajectory kept = run(zero_stage, bf16, 0);
    expect_identical(run(zero_stage, bf16, 1), kept, "zero stage " + std::to_string(zero_stage));
  }
}

}  // namespace
}  // namespace dtrain::runtime
