// Checkpoints (2 ranks): exact round trip of model, optimizer and per-rank RNG; clear errors for a checkpoint of
// another model or world size; a failed write (full disk) leaves the previous checkpoint intact on every rank; a byte
// flipped anywhere that matters, or a truncated file, is refused naming the part, and nothing reaches the model.

#include "runtime/training/checkpoint.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "comm/control_plane.h"
#include "comm/error.h"
#include "runtime/model/torch_compat.h"
#include "runtime/training/checksums.h"
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

  // Writes a checkpoint and waits until it is committed (Note [Background checkpoint writes]).
  std::string save(CheckpointStore& store, const CheckpointContents& contents, const TrainingState& state) {
    const std::string path = store.save(*comm_, contents, state);
    const auto written = store.complete(*comm_, /*wait=*/true);
    EXPECT_TRUE(written && written->path == path);
    return path;
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
  const std::string path = save(store, contents, progress);
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

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Where the raw bytes of `t` start in `file` (they are stored uncompressed).
std::size_t offset_of(const std::string& file, const at::Tensor& t) {
  const at::Tensor c = t.detach().contiguous();
  return file.find(std::string(static_cast<const char*>(c.data_ptr()), c.nbytes()));
}

TEST_F(CheckpointTest, EveryDamagedPartIsRefusedByNameBeforeAnythingIsRestored) {
  torch::manual_seed(11);
  auto model = make_model(5);
  torch::optim::Adam optimizer(model->parameters(), 0.01);
  train_a_step(model, optimizer);
  torch::manual_seed(100 + comm_->rank());
  const at::Tensor rng = at::detail::getDefaultCPUGenerator().get_state();  // what the checkpoint saves of rank 0
  CheckpointContents contents{"tiny", named(model->named_parameters()), named(model->named_buffers()), &optimizer,
                              "adam"};
  CheckpointStore store(folder_, 1);
  const std::string path = save(store, contents, TrainingState{});
  const std::string intact = file_bytes(path);
  torch::serialize::InputArchive archive;
  archive.load_from(path);
  c10::IValue meta;
  archive.read("meta", meta);
  const auto adam = [&](const at::Tensor& parameter) {
    return dynamic_cast<torch::optim::AdamParamState&>(*compat::optimizer_state(optimizer, parameter));
  };
  const auto parameters = model->named_parameters();
  const auto buffers = model->named_buffers();

  struct Damage {
    std::string part;  // what the error must name
    std::size_t offset;
  };
  const std::size_t meta_at = intact.find(meta.toStringRef());
  const std::vector<Damage> damages = {
      {"its metadata is damaged", meta_at + meta.toStringRef().find("sampler_state")},
      {"its metadata is damaged", intact.find(checksum_of(meta.toStringRef())) + 3},  // the metadata's checksum
      {"its parameter 0.weight is damaged", offset_of(intact, parameters["0.weight"]) + 9},
      {"its parameter 2.bias is damaged", offset_of(intact, parameters["2.bias"]) + 2},
      {"its buffer 1.running_mean is damaged", offset_of(intact, buffers["1.running_mean"]) + 5},
      {"its buffer 1.running_var is damaged", offset_of(intact, buffers["1.running_var"]) + 17},
      {"its rng state is damaged", offset_of(intact, rng) + 2000},
      {"its optimizer state 0 exp_avg is damaged", offset_of(intact, adam(parameters["0.weight"]).exp_avg()) + 40},
      {"its optimizer state 4 exp_avg_sq is damaged", offset_of(intact, adam(parameters["2.weight"]).exp_avg_sq()) + 1},
      {"cannot be read", 1},  // the zip archive's first header
  };
  auto fresh = make_model(5);
  torch::optim::Adam fresh_optimizer(fresh->parameters(), 0.01);
  const std::vector<at::Tensor> before = fresh->parameters();
  std::vector<at::Tensor> kept;
  for (const auto& p : before) kept.push_back(p.detach().clone());
  CheckpointContents into{"tiny", named(fresh->named_parameters()), named(fresh->named_buffers()), &fresh_optimizer,
                          "adam"};
  const auto expect_refused = [&](const std::string& what, const std::string& part) {
    try {
      load_checkpoint(*comm_, path, into);
      ADD_FAILURE() << what << " was loaded";
    } catch (const DamagedCheckpointError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("checkpoint " + path + ": ", 0), 0u) << e.what();
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << what << ": " << e.what();
    }
    for (std::size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], kept[i])) << what;
    EXPECT_TRUE(fresh_optimizer.state().empty()) << what;
  };
  for (const Damage& damage : damages) {
    ASSERT_LT(damage.offset, intact.size()) << damage.part << ": the bytes to damage are not in the file";
    if (comm_->rank() == 0) {
      std::string damaged = intact;
      damaged[damage.offset] = static_cast<char>(damaged[damage.offset] ^ 0x10);
      write_bytes(path, damaged);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    expect_refused("a byte flipped at " + std::to_string(damage.offset), damage.part);
    MPI_Barrier(MPI_COMM_WORLD);
  }
  if (comm_->rank() == 0) write_bytes(path, intact.substr(0, intact.size() / 2));  // a half-written file
  MPI_Barrier(MPI_COMM_WORLD);
  expect_refused("half the file", "cannot be read");
  MPI_Barrier(MPI_COMM_WORLD);
  if (comm_->rank() == 0) write_bytes(path, intact);
  MPI_Barrier(MPI_COMM_WORLD);
  load_checkpoint(*comm_, path, into);
  for (std::size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], model->parameters()[i]));
}

TEST_F(CheckpointTest, KeepsOnlyTheNewestAndFindsTheLatest) {
  auto model = make_model(3);
  CheckpointContents contents{"tiny", named(model->named_parameters()), named(model->named_buffers()), nullptr, ""};
  CheckpointStore store(folder_, 2);
  for (std::int64_t step : {5, 10, 15}) {
    TrainingState progress;
    progress.step = step;
    save(store, contents, progress);
  }
  EXPECT_EQ(store.latest(), folder_ + "/checkpoint-000000015.pt");
  EXPECT_FALSE(fs::exists(folder_ + "/checkpoint-000000005.pt"));
  EXPECT_TRUE(fs::exists(folder_ + "/checkpoint-000000010.pt"));
}

TEST_F(CheckpointTest, AnotherModelIsRefusedWithTheDifferenceNamed) {
  auto model = make_model(3);
  CheckpointContents contents{"tiny", named(model->named_parameters()), named(model->named_buffers()), nullptr, ""};
  CheckpointStore store(folder_, 1);
  const std::string path = save(store, contents, TrainingState{});
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
  const std::string path = save(store, contents, TrainingState{});
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
  const std::string first = save(store, contents, progress);
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
    save(store, contents, progress);
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

TEST_F(CheckpointTest, ABackgroundWriteHoldsTheStateOfItsStepAndIsCommittedOnlyWhenComplete) {
  torch::manual_seed(11);
  auto model = make_model(5);
  torch::optim::Adam optimizer(model->parameters(), 0.01);
  train_a_step(model, optimizer);
  std::vector<at::Tensor> at_save;
  for (const auto& p : model->parameters()) at_save.push_back(p.detach().clone());
  CheckpointContents contents{"tiny", named(model->named_parameters()), named(model->named_buffers()), &optimizer,
                              "adam"};
  CheckpointStore store(folder_, 2);
  TrainingState progress;
  progress.step = 7;
  const std::string path = store.save(*comm_, contents, progress);
  // Training goes on while the files are written: the checkpoint must not see it.
  train_a_step(model, optimizer);
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : model->parameters()) p.add_(1.0);
  }
  EXPECT_TRUE(store.writing());
  EXPECT_FALSE(fs::exists(path)) << "committed before complete()";
  const auto written = store.complete(*comm_, /*wait=*/true);
  ASSERT_TRUE(written);
  EXPECT_EQ(written->path, path);
  EXPECT_EQ(written->step, 7);
  EXPECT_FALSE(store.writing());
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  auto restored = make_model(5);
  torch::optim::Adam restored_optimizer(restored->parameters(), 0.01);
  CheckpointContents into{"tiny", named(restored->named_parameters()), named(restored->named_buffers()),
                          &restored_optimizer, "adam"};
  load_checkpoint(*comm_, path, into);
  const auto got = restored->parameters();
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(torch::equal(got[i], at_save[i])) << i;
}

TEST_F(CheckpointTest, AShardTheManifestDoesNotListIsRefusedOnEveryRank) {
  // Each rank's optimizer steps its shard of one 6-element bucket (Note [Optimizer shards]).
  torch::manual_seed(3);
  auto model = make_model(3);
  at::Tensor shard = torch::randn({3}, torch::requires_grad());
  torch::optim::SGD optimizer({shard}, torch::optim::SGDOptions(0.1).momentum(0.9));
  shard.mutable_grad() = torch::ones({3});
  optimizer.step();
  CheckpointContents contents{"tiny", named(model->named_parameters()), named(model->named_buffers()), &optimizer,
                              "sgd"};
  contents.optimizer_shards = ShardLayout{2, 0x1234, false, {6}};
  CheckpointStore store(folder_, 3);
  TrainingState progress;
  progress.step = 1;
  const std::string first = save(store, contents, progress);
  optimizer.step();
  progress.step = 2;
  const std::string second = save(store, contents, progress);
  const std::string replaced = optimizer_shard_file(first, 1, 2);
  MPI_Barrier(MPI_COMM_WORLD);
  if (comm_->rank() == 0)
    fs::copy_file(optimizer_shard_file(second, 1, 2), replaced, fs::copy_options::overwrite_existing);
  MPI_Barrier(MPI_COMM_WORLD);
  try {
    load_checkpoint(*comm_, first, contents);
    FAIL() << "a shard of another checkpoint must be refused";
  } catch (const comm::AgreedError& e) {
    EXPECT_EQ(e.where(), "on rank 1");
    EXPECT_NE(std::string(e.what()).find("optimizer shard " + replaced + ": it is not the shard the main file lists"),
              std::string::npos)
        << e.what();
  }
  load_checkpoint(*comm_, second, contents);  // the intact one
}

}  // namespace
}  // namespace dtrain::runtime
