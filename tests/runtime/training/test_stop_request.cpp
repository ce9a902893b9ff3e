// Stopping on a signal (2 ranks): SIGUSR1 on one rank stops every rank after the same step with a checkpoint, and a
// run resumed from it ends with the weights of a run that was never stopped.

#include "runtime/training/stop_request.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include <csignal>

#include "comm/mpi_communicator.h"
#include "runtime/data/tensor_data_feed.h"
#include "runtime/training/trainer.h"
#include "shared_scratch_folder.h"

namespace dtrain::runtime {
namespace {

TEST(StopRequest, ASignalOnOneRankStopsEveryRankWithACheckpointAndTheResumedRunEndsAlike) {
  auto world = comm::MpiCommunicator::create(MPI_COMM_WORLD);
  testing_support::SharedScratchFolder scratch("dtrain-stop");
  install_stop_signal_handlers();
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({256, 8}), y = torch::randint(0, 3, {256});
  auto run = [&](const std::string& folder, const std::string& resume, bool signal) {
    sampler::SamplerOptions sampling;
    sampling.rank = world->rank();
    sampling.world_size = world->size();
    sampling.batch_size = 8;
    TensorDataFeed feed(x, y, 3, sampling);
    torch::manual_seed(4);
    SequentialModel model("mlp",
                          torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::ReLU(), torch::nn::Linear(16, 3)));
    TrainerOptions o;
    o.progress = ProgressMode::kNone;
    o.epochs = 2;
    o.optimizer.kind = OptimizerKind::kAdam;
    o.checkpoint_dir = folder;
    o.resume = resume;
    o.stop_on_signal = true;
    Trainer trainer(o, model, feed, nullptr, *world);
    clear_stop_request();
    if (signal && world->rank() == 1) std::raise(SIGUSR1);  // before step 1 ends: only rank 1 knows
    const TrainResult result = trainer.run();
    return std::make_pair(result, model.weights_crc32());
  };
  const auto straight = run(scratch.path() + "/straight", "", false);
  EXPECT_FALSE(straight.first.stopped_by_signal);
  const auto stopped = run(scratch.path() + "/stopped", "", true);
  EXPECT_TRUE(stopped.first.stopped_by_signal);
  EXPECT_EQ(stopped.first.steps, 1);  // every rank stopped after the first step
  EXPECT_FALSE(stopped.first.last_checkpoint.empty());
  const auto resumed = run(scratch.path() + "/stopped", "auto", false);
  EXPECT_EQ(resumed.first.steps, straight.first.steps);
  EXPECT_EQ(resumed.second, straight.second);
  EXPECT_NE(resumed.second, stopped.second);
}

}  // namespace
}  // namespace dtrain::runtime
