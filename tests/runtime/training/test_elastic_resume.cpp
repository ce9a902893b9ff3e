// Elastic resume (at 4 ranks): a checkpoint written by 4 ranks resumes on 2, and one written by 2 resumes on 4, with
// replicated optimizer state and with ZeRO stages 1, 2 and 3 (the shards re-cut on load: Note [Re-sharding]). From
// the step after the checkpoint on, every step equals an independent single-process computation of data
// parallelism: SGD with momentum (or Adam) on the mean loss of the step's samples, which are the next R x b positions
// of the sampler's global order (docs/sampler.md: the order does not depend on the world size), R being the number
// of ranks of that step.

#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "runtime/data/tensor_data_feed.h"
#include "runtime/training/trainer.h"
#include "sampler/distributed_sampler.h"
#include "shared_scratch_folder.h"

namespace dtrain::runtime {
namespace {

constexpr std::int64_t kSamples = 400, kBatch = 5, kClasses = 3;
constexpr std::uint64_t kSeed = 7;
constexpr std::int64_t kCheckpointStep = 4;

torch::nn::Sequential net() {
  torch::manual_seed(2);
  return torch::nn::Sequential(torch::nn::Linear(6, 8), torch::nn::Tanh(), torch::nn::Linear(8, kClasses));
}

struct Data {
  torch::Tensor x, y;
  Data() {
    torch::manual_seed(1);
    y = torch::randint(0, kClasses, {kSamples});
    x = torch::randn({kSamples, 6}) + torch::nn::functional::one_hot(y, 6).to(torch::kFloat);
  }
};

struct Case {
  int zero_stage = 0;
  OptimizerKind kind = OptimizerKind::kSgd;
};

TrainerOptions options_for(const Case& c, std::int64_t max_steps) {
  TrainerOptions o;
  o.progress = ProgressMode::kNone;
  o.max_steps = max_steps;
  o.zero_stage = c.zero_stage;
  o.optimizer.kind = c.kind;
  o.optimizer.lr = c.kind == OptimizerKind::kSgd ? 0.1 : 0.01;
  o.optimizer.momentum = c.kind == OptimizerKind::kSgd ? 0.9 : 0.0;
  // Several buckets (stages 1 and 2) of 16, 40 and 27 elements: none a multiple of 2 or 4, so every cut pads and
  // moves shard borders.
  o.reducer.first_bucket_bytes = 64;
  o.reducer.bucket_cap_bytes = 160;
  return o;
}

// The weights of the independent computation after each of `steps` steps, the i-th taking ranks[i] x kBatch samples.
std::vector<std::vector<torch::Tensor>> single_process(const Data& data, const std::vector<int>& ranks,
                                                       OptimizerKind kind) {
  sampler::SamplerOptions s;
  s.dataset_size = kSamples;
  s.seed = kSeed;
  const std::vector<std::int64_t> order = sampler::global_order(s, 0);
  auto model = net();
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (kind == OptimizerKind::kSgd) {
    optimizer = std::make_unique<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  } else {
    optimizer = std::make_unique<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(0.01));
  }
  std::vector<std::vector<torch::Tensor>> after;
  std::int64_t position = 0;
  for (int r : ranks) {
    const auto take = static_cast<std::int64_t>(r) * kBatch;
    const torch::Tensor index =
        torch::tensor(std::vector<std::int64_t>(order.begin() + position, order.begin() + position + take));
    position += take;
    optimizer->zero_grad();
    torch::nn::functional::cross_entropy(model->forward(data.x.index_select(0, index)), data.y.index_select(0, index))
        .backward();
    optimizer->step();
    std::vector<torch::Tensor> weights;
    for (const auto& p : model->parameters()) weights.push_back(p.detach().clone());
    after.push_back(weights);
  }
  return after;
}

class ElasticResumeTest : public testing::Test {
 protected:
  void SetUp() override {
    scratch_ = std::make_unique<testing_support::SharedScratchFolder>("dtrain-elastic");
    folder_ = scratch_->path();
  }

  // Trains on the first `ranks` ranks of the world (the others wait); returns the weights on those ranks.
  std::vector<torch::Tensor> train(int ranks, TrainerOptions o) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm sub;
    MPI_Comm_split(MPI_COMM_WORLD, rank < ranks ? 0 : MPI_UNDEFINED, rank, &sub);
    std::vector<torch::Tensor> weights;
    if (sub != MPI_COMM_NULL) {
      {
        auto comm = comm::MpiCommunicator::create(sub);
        sampler::SamplerOptions s;
        s.world_size = ranks;
        s.rank = rank;
        s.batch_size = kBatch;
        s.seed = kSeed;
        TensorDataFeed feed(data_.x, data_.y, kClasses, s);
        SequentialModel model("elastic", net());
        torch::manual_seed(50 + rank);
        Trainer trainer(o, model, feed, nullptr, *comm);
        trainer.run();
        for (const auto& p : model.parameters()) weights.push_back(p.tensor.detach().clone());
      }
      MPI_Comm_free(&sub);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return weights;
  }

  void expect_each_step_equal(int before, int after, const Case& c = {}) {
    std::vector<int> ranks(kCheckpointStep, before);
    for (int i = 0; i < 3; ++i) ranks.push_back(after);
    const auto expected = single_process(data_, ranks, c.kind);
    TrainerOptions first = options_for(c, kCheckpointStep);
    first.checkpoint_dir = folder_ + "/zero-stage-" + std::to_string(c.zero_stage) + "-from-" + std::to_string(before);
    const auto at_checkpoint = train(before, first);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (std::size_t i = 0; i < at_checkpoint.size(); ++i) {
      EXPECT_TRUE(torch::allclose(at_checkpoint[i], expected[kCheckpointStep - 1][i], 0, 1e-6)) << "parameter " << i;
    }
    for (std::int64_t extra = 1; extra <= 3; ++extra) {
      TrainerOptions resumed = options_for(c, kCheckpointStep + extra);
      resumed.resume = first.checkpoint_dir + "/checkpoint-000000004.pt";
      const auto weights = train(after, resumed);
      for (std::size_t i = 0; i < weights.size(); ++i) {
        EXPECT_TRUE(torch::allclose(weights[i], expected[kCheckpointStep - 1 + extra][i], 0, 1e-6))
            << before << " -> " << after << " ranks, zero stage " << c.zero_stage << ", step "
            << kCheckpointStep + extra << ", parameter " << i << ", rank " << rank;
      }
    }
  }

  Data data_;
  std::unique_ptr<testing_support::SharedScratchFolder> scratch_;
  std::string folder_;
};

TEST_F(ElasticResumeTest, AFourRankCheckpointResumesOnTwoRanksStepForStep) {
  expect_each_step_equal(4, 2);
}

TEST_F(ElasticResumeTest, ATwoRankCheckpointResumesOnFourRanksStepForStep) {
  expect_each_step_equal(2, 4);
}

TEST_F(ElasticResumeTest, ShardedOptimizerStateIsRecutFromFourRanksToTwo) {
  expect_each_step_equal(4, 2, {1, OptimizerKind::kSgd});
  expect_each_step_equal(4, 2, {2, OptimizerKind::kAdam});
}

TEST_F(ElasticResumeTest, ShardedOptimizerStateIsRecutFromTwoRanksToFour) {
  expect_each_step_equal(2, 4, {1, OptimizerKind::kAdam});
  expect_each_step_equal(2, 4, {2, OptimizerKind::kSgd});
}

TEST_F(ElasticResumeTest, ShardedParametersAreRecutInStageThreeBothWays) {
  expect_each_step_equal(4, 2, {3, OptimizerKind::kAdam});
  expect_each_step_equal(2, 4, {3, OptimizerKind::kSgd});
}

}  // namespace
}  // namespace dtrain::runtime
