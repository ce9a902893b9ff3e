// ZeRO stages 1, 2 and 3 (Note [Optimizer shards], Note [Parameter shards]) at 2 and 4 ranks, through the trainer:
// the same weights as stage 0 (replicated optimizer state) for SGD with momentum, Adam and AdamW, with clipping,
// accumulation and loss scaling; each rank holds only its shard of the state (in stage 2 also of the gradients, in
// stage 3 also of the parameters, which have memory only around their block's use); sharded checkpoints resume bit
// for bit, and a missing shard or another stage is refused on every rank.

#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "comm/error.h"
#include "comm/mpi_communicator.h"
#include "runtime/data/tensor_data_feed.h"
#include "runtime/training/checkpoint.h"
#include "runtime/training/trainer.h"
#include "shared_scratch_folder.h"

namespace dtrain::runtime {
namespace {

namespace fs = std::filesystem;

// Three layers of 117, 98 and 24 parameters: with the bucket caps below, three buckets whose sizes are not multiples
// of 2 or 4, so shards are padded.
torch::nn::Sequential three_layers() {
  return torch::nn::Sequential(torch::nn::Linear(8, 13), torch::nn::Tanh(), torch::nn::Dropout(0.2),
                               torch::nn::Linear(13, 7), torch::nn::ReLU(), torch::nn::Linear(7, 3));
}

struct Case {
  std::string name;
  OptimizerKind kind = OptimizerKind::kSgd;
  double clip = 0;
  int accumulation = 1;
  bool bf16_with_loss_scaling = false;
};

struct Outcome {
  TrainResult result;
  std::vector<torch::Tensor> weights;
  std::vector<Reducer::BucketLayout> layout;
};

class ShardedOptimizerTest : public testing::Test {
 protected:
  void SetUp() override {
    comm_ = comm::MpiCommunicator::create(MPI_COMM_WORLD);
    scratch_ = std::make_unique<testing_support::SharedScratchFolder>("dtrain-zero");
    folder_ = scratch_->path();
    torch::manual_seed(3);
    labels_ = torch::randint(0, 3, {400});
    inputs_ = torch::randn({400, 8}) + torch::nn::functional::one_hot(labels_, 8).to(torch::kFloat) * 2;
  }

  TrainerOptions options_for(const Case& c, int zero_stage) const {
    TrainerOptions o;
    o.progress = ProgressMode::kNone;
    o.log_every = 1;
    o.zero_stage = zero_stage;
    o.optimizer.kind = c.kind;
    o.optimizer.lr = c.kind == OptimizerKind::kSgd ? 0.1 : 0.01;
    o.optimizer.momentum = c.kind == OptimizerKind::kSgd ? 0.9 : 0.0;
    o.optimizer.weight_decay = c.kind == OptimizerKind::kAdamW ? 0.1 : 0.0;
    o.clip_grad_norm = c.clip;
    o.accumulation = c.accumulation;
    o.max_steps = 8;
    o.reducer.first_bucket_bytes = 100;
    o.reducer.bucket_cap_bytes = 400;
    if (c.bf16_with_loss_scaling) {
      o.amp = Precision::kBf16;
      o.scaler.enabled = true;
    }
    return o;
  }

  Outcome train(const TrainerOptions& o, std::int64_t init_seed = 11) {
    sampler::SamplerOptions s;
    s.world_size = comm_->size();
    s.rank = comm_->rank();
    s.batch_size = 6;
    s.seed = 5;
    TensorDataFeed feed(inputs_, labels_, 3, s);
    torch::manual_seed(init_seed);  // the same initial weights and dropout stream in every run
    SequentialModel model("three-layers", three_layers());
    Trainer trainer(o, model, feed, nullptr, *comm_);
    Outcome outcome;
    outcome.result = trainer.run();
    for (const auto& p : model.parameters()) outcome.weights.push_back(p.tensor.detach().clone());
    outcome.layout = trainer.reducer().layout();
    return outcome;
  }

  // Two SGD steps at `zero_stage` with a checkpoint after them; returns the options that wrote it.
  TrainerOptions checkpointed_two_steps(int zero_stage) {
    TrainerOptions o = options_for(Case{"sgd", OptimizerKind::kSgd}, zero_stage);
    o.max_steps = 2;
    o.checkpoint_dir = folder_;
    train(o);
    return o;
  }

  std::unique_ptr<comm::Communicator> comm_;
  std::unique_ptr<testing_support::SharedScratchFolder> scratch_;
  std::string folder_;
  torch::Tensor inputs_, labels_;
};

TEST_F(ShardedOptimizerTest, EveryStageGivesTheWeightsOfStageZero) {
  const std::vector<Case> cases = {{"sgd momentum, clipped, accumulation 2", OptimizerKind::kSgd, 0.5, 2},
                                   {"sgd momentum", OptimizerKind::kSgd, 0, 1},
                                   {"adam, clipped", OptimizerKind::kAdam, 0.3, 1},
                                   {"adamw, clipped, accumulation 3", OptimizerKind::kAdamW, 0.3, 3},
                                   {"adam, bf16 with loss scaling", OptimizerKind::kAdam, 0.3, 2, true}};
  for (const Case& c : cases) {
    const Outcome replicated = train(options_for(c, 0));
    ASSERT_GE(replicated.layout.size(), 3u) << "the model must span several buckets";
    for (int stage : {1, 2, 3}) {
      const Outcome sharded = train(options_for(c, stage));
      EXPECT_EQ(sharded.result.steps, replicated.result.steps);
      EXPECT_EQ(sharded.result.skipped_steps, replicated.result.skipped_steps);
      double largest = 0;
      for (std::size_t i = 0; i < replicated.weights.size(); ++i) {
        largest = std::max(largest, (sharded.weights[i] - replicated.weights[i]).abs().max().item<double>());
      }
      EXPECT_LE(largest, 1e-6) << c.name << ", zero stage " << stage << ", rank " << comm_->rank();
      EXPECT_NEAR(sharded.result.final_train_loss, replicated.result.final_train_loss, 1e-6) << c.name;
    }
  }
}

// Adam keeps two moments per element: 8 bytes per parameter replicated, 8 per element of this rank's shards when
// sharded; stage 2 holds the gradient shards only, stage 3 the parameter shards too.
TEST_F(ShardedOptimizerTest, EachRankKeepsOnlyItsShardOfTheStateInStageTwoOfTheGradientsInStageThreeOfAll) {
  const Case adam{"adam", OptimizerKind::kAdam};
  std::int64_t parameters = 0;
  for (const auto& p : three_layers()->parameters()) parameters += p.numel();
  for (int stage : {0, 1, 2, 3}) {
    const Outcome outcome = train(options_for(adam, stage));
    std::int64_t shard_elements = 0, padded_buckets = 0;
    for (const auto& bucket : outcome.layout) {
      shard_elements += bucket.shard_numel;
      padded_buckets += bucket.shard_numel * comm_->size() + 1;  // + the unused-parameter slot
    }
    const std::int64_t padded = padded_buckets - static_cast<std::int64_t>(outcome.layout.size());
    EXPECT_EQ(outcome.result.parameter_bytes, stage == 0 ? 4 * parameters : stage < 3 ? 4 * padded : 4 * shard_elements)
        << "stage " << stage;
    EXPECT_EQ(outcome.result.optimizer_state_bytes, stage == 0 ? 8 * parameters : 8 * shard_elements)
        << "stage " << stage;
    EXPECT_EQ(outcome.result.gradient_bytes, stage >= 2 ? 4 * shard_elements : 4 * padded_buckets)
        << "stage " << stage;
    if (stage == 3) {
      EXPECT_EQ(outcome.layout.size(), 3u) << "a bucket per block with parameters";
    }
    if (stage > 0) {
      EXPECT_LT(shard_elements, parameters / comm_->size() + static_cast<int>(outcome.layout.size()));
    }
  }
}

// Around each block only that block and the next (gathered ahead) have memory; between steps none, after the run (ShardedOptimizer::finish) all.
TEST_F(ShardedOptimizerTest, InStageThreeABlocksParametersHaveMemoryOnlyAroundItsUse) {
  torch::nn::Linear first(8, 13), second(13, 7), third(7, 3);
  const std::vector<at::Tensor> weights{first->weight, second->weight, third->weight};  // the model's own tensors
  const auto whole = [&] {
    std::string out;
    for (const at::Tensor& w : weights) out += w.storage().nbytes() > 0 ? "W" : "-";
    return out;
  };
  std::vector<std::string> seen_forward, seen_backward;
  // After each Linear: what is whole now (forward), and when its gradient passes back through (backward).
  const auto probe = [&] {
    return torch::nn::Functional([&](const at::Tensor& x) {
      if (at::GradMode::is_enabled()) seen_forward.push_back(whole());
      at::Tensor y = x.view_as(x);
      y.register_hook([&](const at::Tensor&) { seen_backward.push_back(whole()); });
      return y;
    });
  };
  torch::nn::Sequential probed(first, probe(), torch::nn::Functional(torch::tanh), second, probe(),
                               torch::nn::Functional(torch::tanh), third, probe());
  TrainerOptions o = options_for(Case{"sgd", OptimizerKind::kSgd}, 3);
  o.max_steps = 1;
  sampler::SamplerOptions s;
  s.world_size = comm_->size();
  s.rank = comm_->rank();
  s.batch_size = 6;
  TensorDataFeed feed(inputs_, labels_, 3, s);
  SequentialModel model("probed", probed);
  {
    Trainer trainer(o, model, feed, nullptr, *comm_);
    EXPECT_EQ(whole(), "---") << "before the first step";
    trainer.run();
  }
  // Forward: after block k, block k+1 is being gathered. Backward (from the last block's gradient on): the block whose
  // output gradient arrives is whole before its backward (its hook runs after the probe's), the one before is prefetched.
  EXPECT_EQ(seen_forward, (std::vector<std::string>{"-W-", "--W", "---"}));
  EXPECT_EQ(seen_backward, (std::vector<std::string>{"---", "-W-", "W--"}));
  EXPECT_EQ(whole(), "WWW") << "after the run";
}

TEST_F(ShardedOptimizerTest, ASplitShardedRunResumesBitForBitFromEveryRanksShard) {
  const Case adam{"adamw", OptimizerKind::kAdamW, 0.3, 2};
  for (int stage : {1, 2, 3}) {
    const Outcome straight = train(options_for(adam, stage));
    if (comm_->rank() == 0) fs::remove_all(folder_);
    MPI_Barrier(MPI_COMM_WORLD);
    TrainerOptions first = options_for(adam, stage);
    first.max_steps = 3;
    first.checkpoint_dir = folder_;
    train(first);
    for (int r = 0; r < comm_->size(); ++r) {
      const std::string shard = optimizer_shard_file(folder_ + "/checkpoint-000000003.pt", r, comm_->size());
      EXPECT_TRUE(fs::exists(shard)) << shard;
    }
    torch::serialize::InputArchive main_file;
    main_file.load_from(folder_ + "/checkpoint-000000003.pt");
    c10::IValue parameters;
    EXPECT_EQ(main_file.try_read("parameters", parameters), stage != 3)
        << "stage " << stage << ": stage 3 writes its parameters as every rank's shards, never gathered whole";
    TrainerOptions second = options_for(adam, stage);
    second.checkpoint_dir = folder_;
    second.resume = "auto";
    const Outcome resumed = train(second, /*init_seed=*/999);  // other weights: the checkpoint must override them
    EXPECT_EQ(resumed.result.final_train_loss, straight.result.final_train_loss) << "stage " << stage;
    for (std::size_t i = 0; i < straight.weights.size(); ++i) {
      EXPECT_TRUE(torch::equal(resumed.weights[i], straight.weights[i])) << "stage " << stage << " parameter " << i;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (comm_->rank() == 0) fs::remove_all(folder_);
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

TEST_F(ShardedOptimizerTest, AMissingShardIsOneErrorOnEveryRankNamingTheShard) {
  TrainerOptions o = checkpointed_two_steps(1);
  const int last = comm_->size() - 1;
  const std::string checkpoint = folder_ + "/checkpoint-000000002.pt";
  const std::string missing = optimizer_shard_file(checkpoint, last, comm_->size());
  MPI_Barrier(MPI_COMM_WORLD);
  if (comm_->rank() == 0) fs::remove(missing);
  MPI_Barrier(MPI_COMM_WORLD);
  o.max_steps = 4;
  o.resume = checkpoint;
  try {
    train(o);
    FAIL() << "resumed without a shard";
  } catch (const comm::AgreedError& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer shard " + missing + " is missing"), std::string::npos)
        << e.what();
    EXPECT_EQ(e.where(), "on rank " + std::to_string(last));
  }
  // "auto" passes over it to an older checkpoint; here there is none, and a fresh start would lose the run.
  o.resume = "auto";
  try {
    train(o);
    FAIL() << "resumed without a shard";
  } catch (const comm::AgreedError& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer shard " + missing + " is missing (on rank " +
                                         std::to_string(last) + ")"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(ShardedOptimizerTest, ACheckpointOfAnotherStageIsRefusedWithTheStageToUse) {
  TrainerOptions o = checkpointed_two_steps(0);
  o.resume = "auto";
  o.zero_stage = 2;
  try {
    train(o);
    FAIL() << "a replicated optimizer state was resumed as shards";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("is not sharded (--zero-stage 0); resume with --zero-stage 0"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace dtrain::runtime
