// The activation bytes the trainer reports (Note [Activation bytes]) against the bytes autograd must keep, counted by
// hand from the model: four blocks Linear(W, 4W) -> Tanh -> Linear(4W, W) and a head. Without checkpointing a block
// keeps its Tanh output (4W floats per sample, saved by Tanh and by the second Linear) and its output (W, saved by
// the next block's first Linear); with every block checkpointed only each block's input is kept. At 2 ranks.

#include "runtime/observability/activation_meter.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include "comm/mpi_communicator.h"
#include "runtime/data/tensor_data_feed.h"
#include "runtime/training/trainer.h"

namespace dtrain::runtime {
namespace {

constexpr std::int64_t kWidth = 256, kBlocks = 4, kBatch = 256, kClasses = 10;
constexpr std::int64_t kFloat = 4;

struct BlockImpl : torch::nn::Module {
  BlockImpl()
      : widen(register_module("widen", torch::nn::Linear(kWidth, 4 * kWidth))),
        narrow(register_module("narrow", torch::nn::Linear(4 * kWidth, kWidth))) {}
  torch::Tensor forward(const torch::Tensor& x) { return narrow(torch::tanh(widen(x))); }
  torch::nn::Linear widen, narrow;
};
TORCH_MODULE(Block);

torch::nn::Sequential blocks() {
  torch::manual_seed(5);
  torch::nn::Sequential model;
  for (std::int64_t b = 0; b < kBlocks; ++b) model->push_back(Block());
  model->push_back(torch::nn::Linear(kWidth, kClasses));
  return model;
}

std::int64_t measured_activation_bytes(comm::Communicator& world, int checkpoint_every) {
  torch::manual_seed(6);
  const torch::Tensor inputs = torch::randn({4 * kBatch * world.size(), kWidth});
  const torch::Tensor labels = torch::randint(0, kClasses, {inputs.size(0)});
  sampler::SamplerOptions s;
  s.world_size = world.size();
  s.rank = world.rank();
  s.batch_size = kBatch;
  TensorDataFeed feed(inputs, labels, kClasses, s);
  SequentialModel model("blocks", blocks());
  TrainerOptions o;
  o.progress = ProgressMode::kNone;
  o.max_steps = 3;
  o.activation_checkpoint_every = checkpoint_every;
  Trainer trainer(o, model, feed, nullptr, world);
  return trainer.run().peak_activation_bytes;
}

TEST(ActivationMeter, TheTrainerReportsTheBytesAutogradKeepsAndWhatCheckpointingSaves) {
  auto world = comm::MpiCommunicator::create(MPI_COMM_WORLD);
  const std::int64_t row = kBatch * kWidth * kFloat;           // one block-wide activation of the batch
  const std::int64_t logits = 2 * kBatch * kClasses * kFloat;  // the head's output and log-softmax's
  const std::int64_t kept_by_hand = kBlocks * (4 * row + row) + logits;
  // Checkpointed: the input of every block but the first (whose input is the batch, held before the step).
  const std::int64_t checkpointed_by_hand = kBlocks * row + logits;
  const std::int64_t slack = 64 << 10;  // autograd's nodes, malloc's chunk headers, the loss

  const std::int64_t kept = measured_activation_bytes(*world, 0);
  EXPECT_GE(kept, kept_by_hand);
  EXPECT_LE(kept, kept_by_hand + slack) << "by hand " << kept_by_hand;
  const std::int64_t checkpointed = measured_activation_bytes(*world, 1);
  EXPECT_GE(checkpointed, checkpointed_by_hand);
  EXPECT_LE(checkpointed, checkpointed_by_hand + slack) << "by hand " << checkpointed_by_hand;
}

}  // namespace
}  // namespace dtrain::runtime
