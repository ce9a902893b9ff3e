// Checkpoints (2 ranks): exact round trip of model, optimizer and per-rank RNG; clear errors for a checkpoint of
// another model or world size; a failed write (full disk) leaves the previous checkpoint intact on every rank.

#include "runtime/training/checkpoint.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <csignal>
#include <filesystem>

#include "comm/control_plane.h"
#include "comm/error.h"
#include "shared_scratch_folder.h"

namespace dtrain::runtime {
namespace {

namespace fs = std::filesystem;

std::vector<NamedTensor> named(const torch::OrderedDict<std::string, torch::Tensor>& items) {
  std::vector<NamedTensor> out;
  for (const auto& item : items) out.push_back({item.key(), item.value()});
  return out;
}

class CheckpointTest : public testing::Test {
 protected:
  void SetUp() override {
    comm_ = comm::ControlPlane::create(MPI_COMM_WORLD);
    scratch_ = std::make_unique<testing_support::SharedScratchFolder>("dtrain-ckpt");
    folder_ = scratch_->path();
  }

  std::unique_ptr<comm::ControlPlane> comm_;
  std::unique_ptr<testing_support::SharedScratchFolder> scratch_;
  std::string folder_;
};

torch::nn::Sequential make_model(int hidden) {
  return torch::nn::Sequential(torch::nn::Linear(4, hidden), torch::nn::BatchNorm1d(hidden),
                               torch::nn::Linear(hidden, 2));
}

void train_a_step(torch::nn::Sequential& model, torch::optim::Optimizer& optimizer) {
  optimizer.zero_grad();
  model->forward(torch::randn({8, 4})).pow(2).sum().backward();
  optimizer.step();
}

TEST_F(CheckpointTest, RoundTripRestoresModelOptimizerProgressAndEachRanksRng) {
  // The same model on every rank (as data-parallel training keeps it), a different RNG stream on each.
  torch::manual_seed(11);
  auto model = make_model(5);
  torch::optim::Adam optimizer(model->parameters(), 0.01);
  train_a_step(model, optimizer);
  torch::manual_seed(100 + comm_->rank());
  CheckpointContents contents{"tiny", named(model->named_parameters()), named(model->named_buffers()), &optimizer,
                              "adam"};
  TrainingState progress;
  progress.step = 42;
  progress.epoch = 3;
  progress.sampler_state = "epoch=3 position=96";
  progress.loss_scale = 1024;
  progress.early_stopping.best_metric = 0.5;
  CheckpointStore store(folder_, 2);
  const std::string path = store.save(*comm_, contents, progress);
  EXPECT_EQ(path, folder_ + "/checkpoint-000000042.pt");

  // What an uninterrupted run does next...
  const auto next_random = torch::randn({3});
  train_a_step(model, optimizer);
  const auto expected = model->parameters();

  // ...a restored run does bit for bit.
  torch::manual_seed(999);
  auto restored = make_model(5);
  torch::optim::Adam restored_optimizer(restored->parameters(), 0.01);
  CheckpointContents into{"tiny", named(restored->named_parameters()), named(restored->named_buffers()),
                          &restored_optimizer, "adam"};
  const TrainingState back = load_checkpoint(*comm_, path, into);
  EXPECT_EQ(back.step, 42);
  EXPECT_EQ(back.epoch, 3);
  EXPECT_EQ(back.sampler_state, "epoch=3 position=96");
  EXPECT_EQ(back.loss_scale, 1024);
  EXPECT_EQ(back.early_stopping.best_metric, 0.5);
  EXPECT_TRUE(torch::equal(torch::randn({3}), next_random));
  train_a_step(restored, restored_optimizer);
  const auto got = restored->parameters();
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(torch::equal(got[i], expected[i])) << i;
  // The batch norm's running statistics (buffers, which training-mode forwards do not read) are restored too: they
  // match, and so do eval-mode outputs, which use them.
  const auto buffers = model->buffers();
  const auto restored_buffers = restored->buffers();
  ASSERT_EQ(buffers.size(), 3u);  // running mean, running variance, batches tracked
  for (std::size_t i = 0; i < buffers.size(); ++i) EXPECT_TRUE(torch::equal(restored_buffers[i], buffers[i])) << i;
  model->eval();
  restored->eval();
  const auto probe = torch::randn({4, 4});
  EXPECT_TRUE(torch::equal(restored->forward(probe), model->forward(probe)));
}

TEST_F(CheckpointTest, KeepsOnlyTheNewestAndFindsTheLatest) {
  auto model = make_model(3);
  CheckpointContents contents{"tiny", named(model->named_parameters()), named(model->named_buffers()), nullptr, ""};
  CheckpointStore store(folder_, 2);
  for (std::int64_t step : {5, 10, 15}) {
    TrainingState progress;
    progress.step = step;
    store.save(*comm_, contents, progress);
  }
  EXPECT_EQ(store.latest(), folder_ + "/checkpoint-000000015.pt");
  EXPECT_FALSE(fs::exists(folder_ + "/checkpoint-000000005.pt"));
  EXPECT_TRUE(fs::exists(folder_ + "/checkpoint-000000010.pt"));
}

TEST_F(CheckpointTest, AnotherModelIsRefusedWithTheDifferenceNamed) {
  auto model = make_model(3);
  CheckpointContents contents{"tiny", named(model->named_parameters()), named(model->named_buffers()), nullptr, ""};
  CheckpointStore store(folder_, 1);
  const std::string path = store.save(*comm_, contents, TrainingState{});
  auto wider = make_model(4);
  CheckpointContents other{"tiny", named(wider->named_parameters()), named(wider->named_buffers()), nullptr, ""};
  try {
    load_checkpoint(*comm_, path, other);
    FAIL() << "a checkpoint of another shape must be refused";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()), "checkpoint " + path +
                                         ": it has 0.weight Float [3, 4] where the model has "
                                         "0.weight Float [4, 4]");
  }
  other.model_name = "cnn";
  EXPECT_THROW(load_checkpoint(*comm_, path, other), CheckpointError);
  EXPECT_THROW(load_checkpoint(*comm_, folder_ + "/missing.pt", contents), CheckpointError);
}

TEST_F(CheckpointTest, AnotherOptimizerIsRefusedByName) {
  auto model = make_model(3);
  torch::optim::SGD sgd(model->parameters(), 0.1);
  CheckpointContents contents{"tiny", named(model->named_parameters()), named(model->named_buffers()), &sgd, "sgd"};
  CheckpointStore store(folder_, 1);
  const std::string path = store.save(*comm_, contents, TrainingState{});
  torch::optim::Adam adam(model->parameters(), 0.1);
  CheckpointContents other{"tiny", named(model->named_parameters()), named(model->named_buffers()), &adam, "adam"};
  try {
    load_checkpoint(*comm_, path, other);
    FAIL() << "a checkpoint of another optimizer must be refused";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()),
              "checkpoint " + path + ": it holds the state of optimizer 'sgd', this run uses 'adam'");
  }
}

TEST_F(CheckpointTest, AFullDiskKeepsThePreviousCheckpointOnEveryRank) {
  auto model = make_model(64);
  CheckpointContents contents{"tiny", named(model->named_parameters()), named(model->named_buffers()), nullptr, ""};
  CheckpointStore store(folder_, 3);
  TrainingState progress;
  progress.step = 1;
  const std::string first = store.save(*comm_, contents, progress);
  const auto size_before = fs::file_size(first);

  // Rank 0 may write at most 4 KiB per file from now on: the write fails with EFBIG, as on a full disk.
  rlimit old{};
  if (comm_->rank() == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &old);
    rlimit tiny = old;
    tiny.rlim_cur = 4096;
    setrlimit(RLIMIT_FSIZE, &tiny);
  }
  progress.step = 2;
  try {
    store.save(*comm_, contents, progress);
    FAIL() << "the write must fail";
  } catch (const comm::AgreedError& e) {
    EXPECT_EQ(e.where(), "on rank 0");
    const std::string message = e.what();
    EXPECT_NE(message.find("writing checkpoint " + folder_ + "/checkpoint-000000002.pt failed"), std::string::npos)
        << message;
    EXPECT_NE(message.find("the previous checkpoint " + first + " is intact"), std::string::npos) << message;
  }
  if (comm_->rank() == 0) setrlimit(RLIMIT_FSIZE, &old);
  EXPECT_EQ(fs::file_size(first), size_before);
  EXPECT_FALSE(fs::exists(folder_ + "/checkpoint-000000002.pt"));
  EXPECT_FALSE(fs::exists(folder_ + "/checkpoint-000000002.pt.tmp"));
  EXPECT_EQ(store.latest(), first);
}

}  // namespace
}  // namespace dtrain::runtime
