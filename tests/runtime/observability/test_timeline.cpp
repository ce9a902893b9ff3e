// The merged timeline at 2 ranks: every rank is a process row with its steps, each gradient bucket's allreduce and,
// in a pipeline, its transfers; the clocks are aligned (the ranks leave each step's allreduce together); nothing is
// recorded when tracing is off.

#include "runtime/observability/timeline.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <map>

#include "comm/mpi_communicator.h"
#include "runtime/data/tensor_data_feed.h"
#include "runtime/pipeline/pipeline_partition.h"
#include "runtime/training/trainer.h"
#include "shared_scratch_folder.h"

namespace dtrain::runtime {
namespace {

constexpr int64_t kSteps = 6;

struct Data {
  torch::Tensor x = torch::randn({512, 64}), y = torch::randint(0, 4, {512});
};

torch::nn::Sequential model() {
  torch::manual_seed(1);
  return torch::nn::Sequential(torch::nn::Linear(64, 256), torch::nn::ReLU(), torch::nn::Linear(256, 256),
                               torch::nn::ReLU(), torch::nn::Linear(256, 4));
}

TrainerOptions options(const std::string& trace) {
  TrainerOptions o;
  o.progress = ProgressMode::kNone;
  o.max_steps = kSteps;
  o.accumulation = 2;
  o.trace_file = trace;
  // Small buckets, so that each step has several allreduces.
  o.reducer.first_bucket_bytes = o.reducer.bucket_cap_bytes = 64 * 1024;
  return o;
}

sampler::SamplerOptions sampling(int rank, int world) {
  sampler::SamplerOptions o;
  o.rank = rank;
  o.world_size = world;
  o.batch_size = 8;
  return o;
}

// Complete events by (rank, name without its index).
std::map<std::pair<int, std::string>, std::vector<nlohmann::json>> spans(const std::string& path) {
  std::ifstream in(path);
  const nlohmann::json trace = nlohmann::json::parse(in);
  std::map<std::pair<int, std::string>, std::vector<nlohmann::json>> out;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X") continue;
    std::string name = e["name"];
    if (std::isdigit(static_cast<unsigned char>(name.back()))) name = name.substr(0, name.rfind(' '));
    out[{e["pid"].get<int>(), name}].push_back(e);
  }
  return out;
}

class TimelineTest : public testing::Test {
 protected:
  void SetUp() override {
    world_ = comm::MpiCommunicator::create(MPI_COMM_WORLD);
    scratch_ = std::make_unique<testing_support::SharedScratchFolder>("dtrain-timeline");
  }
  Data data_;
  std::unique_ptr<comm::Communicator> world_;
  std::unique_ptr<testing_support::SharedScratchFolder> scratch_;
};

TEST_F(TimelineTest, DataParallelStepsAndBucketAllreducesOfEveryRankOnOneClock) {
  const std::string path = scratch_->path() + "/trace.json";
  SequentialModel m("mlp", model());
  TensorDataFeed feed(data_.x, data_.y, 4, sampling(world_->rank(), world_->size()));
  Trainer trainer(options(path), m, feed, nullptr, *world_);
  trainer.run();
  const std::size_t buckets = trainer.reducer().bucket_plan().size();
  ASSERT_GE(buckets, 2u);
  const auto found = spans(path);
  for (int rank = 0; rank < world_->size(); ++rank) {
    EXPECT_EQ(found.at({rank, "forward"}).size(), 2 * kSteps);
    EXPECT_EQ(found.at({rank, "backward"}).size(), 2 * kSteps);
    EXPECT_EQ(found.at({rank, "data wait"}).size(), kSteps);
    EXPECT_EQ(found.at({rank, "optimizer"}).size(), kSteps);
    EXPECT_EQ(found.at({rank, "allreduce bucket"}).size(), kSteps * buckets);
    for (const auto& e : found.at({rank, "allreduce bucket"})) {
      EXPECT_EQ(e["tid"], 1);
      EXPECT_GE(e["dur"].get<double>(), 0);
    }
  }
  // Every rank starts its optimizer step right after the step's last allreduce, so, on aligned clocks, at nearly the
  // same time on every rank (without alignment the clocks of two processes agree only by chance).
  std::vector<double> gaps;
  for (std::size_t k = 0; k < kSteps; ++k) {
    gaps.push_back(std::abs(found.at({0, "optimizer"})[k]["ts"].get<double>() -
                            found.at({1, "optimizer"})[k]["ts"].get<double>()));
  }
  std::sort(gaps.begin(), gaps.end());
  // 20 ms: a loaded 2-core machine deschedules a rank for several milliseconds at a time (7 ms seen in CI); a clock
  // merge gone wrong is off by the clocks' difference, seconds to hours.
  EXPECT_LT(gaps[gaps.size() / 2], 20000.0) << "median gap between the ranks' optimizer steps, microseconds";
}

// The ranks of one machine share a clock, so the merge test above cannot see misaligned clocks: skew rank 1's.
// The offset is exact to half the quickest of 32 round trips: well under 0.1 ms on an idle node, a few ms on a loaded
// one (2.5 ms seen in CI); 20 ms still tells a found skew from a missed one by five orders of magnitude.
TEST_F(TimelineTest, ClockOffsetsOfSkewedClocksAreFoundToWithinMilliseconds) {
  const double skew = world_->rank() == 0 ? 0 : 3.5e9 * world_->rank();  // microseconds: hours apart
  auto control = comm::ControlPlane::create(MPI_COMM_WORLD);
  const double offset = clock_offset_to_rank0(*control, [skew] {
    return std::chrono::duration<double, std::micro>(Timeline::Clock::now().time_since_epoch()).count() + skew;
  });
  EXPECT_NEAR(offset, -skew, 20000.0);
}

TEST_F(TimelineTest, PipelineTransfersHaveTheirOwnLane) {
  const std::string path = scratch_->path() + "/pipeline.json";
  ParallelGrid grid = make_parallel_grid(*world_, 2);
  const auto ranges = balance_layers(parameter_costs(model()), 2);
  SequentialModel stage("mlp", slice_layers(model(), ranges[grid.stage]));
  TensorDataFeed feed(data_.x, data_.y, 4, sampling(grid.replica, grid.replicas));
  Trainer trainer(options(path), stage, feed, nullptr, *world_, &grid);
  trainer.run();
  const auto found = spans(path);
  EXPECT_EQ(found.at({0, "send"}).size(), 2 * kSteps);  // one activation per micro-batch
  EXPECT_EQ(found.at({1, "wait activation"}).size(), 2 * kSteps);
  EXPECT_EQ(found.at({1, "send"}).size(), 2 * kSteps);  // one gradient per micro-batch
  EXPECT_EQ(found.at({0, "wait gradient"}).size(), 2 * kSteps);
  for (const auto& e : found.at({0, "send"})) EXPECT_EQ(e["tid"], 2);
}

TEST_F(TimelineTest, NothingIsRecordedWhenTracingIsOff) {
  SequentialModel m("mlp", model());
  TensorDataFeed feed(data_.x, data_.y, 4, sampling(world_->rank(), world_->size()));
  Trainer trainer(options(""), m, feed, nullptr, *world_);
  trainer.run();
  EXPECT_EQ(Timeline::instance().size(), 0u);
  EXPECT_FALSE(Timeline::instance().enabled());
}

}  // namespace
}  // namespace dtrain::runtime
