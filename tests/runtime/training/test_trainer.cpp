// The trainer end to end on in-memory data (2 and 4 ranks): it learns, it resumes bit for bit, it takes the AMP
// loss-scale decisions identically on every rank, and it refuses bad options with the option named.

#include "runtime/training/trainer.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <limits>
#include <tuple>

#include "comm/error.h"
#include "comm/mpi_communicator.h"
#include "runtime/data/tensor_data_feed.h"
#include "runtime/model/torch_compat.h"
#include "runtime/training/checkpoint.h"
#include "shared_scratch_folder.h"

namespace dtrain::runtime {
namespace {

namespace fs = std::filesystem;

// Two well separated Gaussian blobs per class in 8 dimensions: learnable to ~100% in a few epochs.
struct Blobs {
  torch::Tensor x, y;
  explicit Blobs(int64_t n, int64_t seed) {
    torch::manual_seed(seed);
    y = torch::randint(0, 3, {n});
    x = torch::randn({n, 8}) * 0.5 + torch::nn::functional::one_hot(y, 8).to(torch::kFloat) * 3;
  }
};

torch::nn::Sequential small_mlp() {
  return torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::ReLU(), torch::nn::Dropout(0.1),
                               torch::nn::Linear(16, 3));
}

class TrainerTest : public testing::Test {
 protected:
  void SetUp() override {
    comm_ = comm::MpiCommunicator::create(MPI_COMM_WORLD);
    scratch_ = std::make_unique<testing_support::SharedScratchFolder>("dtrain-trainer");
    folder_ = scratch_->path();
  }

  // The blobs MLP trained with `o` (checkpointing into folder_) from initial weights and RNG of `seed`: its result
  // and final weights.
  std::pair<TrainResult, std::vector<torch::Tensor>> train_blobs(const Blobs& data, TrainerOptions o, int64_t seed) {
    TensorDataFeed train(data.x, data.y, 3, sampling(8));
    torch::manual_seed(seed);
    SequentialModel model("blobs", small_mlp());
    o.checkpoint_dir = folder_;
    Trainer trainer(o, model, train, nullptr, *comm_);
    const TrainResult result = trainer.run();
    std::vector<torch::Tensor> weights;
    for (const auto& p : model.parameters()) weights.push_back(p.tensor.clone());
    return {result, weights};
  }

  sampler::SamplerOptions sampling(int64_t batch, sampler::Mode mode = sampler::Mode::kTrain) const {
    sampler::SamplerOptions o;
    o.world_size = comm_->size();
    o.rank = comm_->rank();
    o.batch_size = batch;
    o.mode = mode;
    o.seed = 5;
    o.shuffle = mode == sampler::Mode::kTrain;
    return o;
  }

  TrainerOptions quiet() const {
    TrainerOptions o;
    o.progress = ProgressMode::kNone;
    o.log_every = 1;
    o.optimizer.kind = OptimizerKind::kAdam;
    o.optimizer.lr = 0.01;
    return o;
  }

  std::unique_ptr<comm::Communicator> comm_;
  std::unique_ptr<testing_support::SharedScratchFolder> scratch_;
  std::string folder_;
};

TEST_F(TrainerTest, LearnsAndEvaluatesEverySampleOnce) {
  Blobs train_data(600, 1), eval_data(301, 2);  // 301: evaluation padding on every world size but 1
  TensorDataFeed train(train_data.x, train_data.y, 3, sampling(16));
  TensorDataFeed eval(eval_data.x, eval_data.y, 3, sampling(32, sampler::Mode::kEval));
  torch::manual_seed(3);
  SequentialModel model("blobs", small_mlp());
  TrainerOptions o = quiet();
  o.epochs = 3;
  o.metrics_file = folder_ + "-metrics.jsonl";
  Trainer trainer(o, model, train, &eval, *comm_);
  const TrainResult result = trainer.run();
  EXPECT_EQ(result.last_eval.samples, 301);
  EXPECT_GT(result.last_eval.accuracy, 0.95);
  EXPECT_EQ(result.epochs_completed, 3);
  EXPECT_EQ(result.steps, 3 * train.batches_per_epoch());
  if (comm_->rank() == 0) {
    std::ifstream metrics(o.metrics_file);
    int evals = 0;
    for (std::string line; std::getline(metrics, line);) {
      const auto record = nlohmann::json::parse(line);
      if (record["event"] == "eval") ++evals;
      if (record["event"] == "train") {
        for (const char* key : {"data_wait_ms", "forward_ms", "backward_ms", "exposed_comm_ms", "optimizer_ms"}) {
          EXPECT_GE(record[key].get<double>(), 0.0) << key;
        }
      }
    }
    EXPECT_EQ(evals, 3);
    fs::remove(o.metrics_file);
  }
}

// The distributed evaluation against one process evaluating the same weights on the whole set: at 2 and 4 ranks the
// sampler pads the set, and a padded duplicate counted would change the number of correct predictions. For a
// classifier (logits [n, C]) and a next-token model (logits [n, L, C], every position a prediction).
TEST_F(TrainerTest, EvaluationEqualsOneProcessEvaluatingTheWholeSet) {
  struct Case {
    std::string name;
    torch::Tensor x, y;
    int64_t classes;
    torch::nn::Sequential net;
  };
  Blobs blobs(301, 2);  // 301: padding on every world size but 1
  torch::manual_seed(6);
  const torch::Tensor tokens = torch::randint(0, 5, {103, 7});  // 103 sequences of 6 predictions each
  torch::manual_seed(8);
  torch::nn::Sequential next_token(torch::nn::Embedding(5, 8), torch::nn::Linear(8, 5));
  torch::manual_seed(3);
  std::vector<Case> cases = {{"classifier", blobs.x, blobs.y, 3, small_mlp()},
                             {"next-token", tokens.narrow(1, 0, 6), tokens.narrow(1, 1, 6), 5, next_token}};
  for (auto& c : cases) {
    TensorDataFeed train(c.x, c.y, c.classes, sampling(8));
    TensorDataFeed eval(c.x, c.y, c.classes, sampling(16, sampler::Mode::kEval));
    SequentialModel model(c.name, c.net);
    TrainerOptions o = quiet();
    o.max_steps = 3;  // weights away from their initial values, the same on every rank
    Trainer trainer(o, model, train, &eval, *comm_);
    trainer.run();
    const EvalResult result = trainer.evaluate();

    torch::NoGradGuard no_grad;
    c.net->eval();
    const torch::Tensor logits = c.net->forward(c.x).reshape({-1, c.classes});
    const torch::Tensor targets = c.y.reshape({-1});
    const double loss = torch::nn::functional::cross_entropy(logits.to(torch::kDouble), targets).item<double>();
    const int64_t correct = logits.argmax(1).eq(targets).sum().item<int64_t>();
    EXPECT_EQ(result.samples, c.x.size(0)) << c.name;
    EXPECT_EQ(result.predictions, targets.numel()) << c.name;
    EXPECT_EQ(std::llround(result.accuracy * static_cast<double>(targets.numel())), correct) << c.name;
    EXPECT_NEAR(result.loss, loss, 1e-6 * loss) << c.name;
  }
}

TEST_F(TrainerTest, ResumingMidEpochContinuesBitForBit) {
  Blobs data(500, 4);
  auto run = [&](int64_t max_steps, const std::string& resume, int64_t seed) {
    TrainerOptions o = quiet();
    o.epochs = 2;
    o.max_steps = max_steps;
    o.resume = resume;
    return train_blobs(data, o, seed);
  };
  const auto straight = run(0, "", 9);
  if (comm_->rank() == 0) fs::remove_all(folder_);
  MPI_Barrier(MPI_COMM_WORLD);
  const int64_t steps_per_epoch = straight.first.steps / 2;
  const auto first_half = run(steps_per_epoch + 3, "", 9);  // stops inside epoch 1, dropout RNG mid-stream
  EXPECT_EQ(first_half.first.epochs_completed, 1);
  const auto resumed = run(0, "auto", 12345);  // other initial weights and RNG: the checkpoint must override both
  EXPECT_EQ(resumed.first.steps, straight.first.steps);
  EXPECT_EQ(resumed.first.final_train_loss, straight.first.final_train_loss);
  for (std::size_t i = 0; i < straight.second.size(); ++i) {
    EXPECT_TRUE(torch::equal(resumed.second[i], straight.second[i])) << "parameter " << i;
  }
}

// Note [Background checkpoint writes]: checkpoints every 3 steps written in the background or while training waits
// give the same run and the same files; every checkpoint is committed and reported with its blocking time, and a
// resume from the background-written one continues bit for bit.
TEST_F(TrainerTest, BackgroundAndSynchronousCheckpointsGiveTheSameRunAndTheSameFiles) {
  Blobs data(500, 4);
  const auto run = [&](bool background, const std::string& folder, std::int64_t max_steps, const std::string& resume) {
    TrainerOptions o = quiet();
    o.max_steps = max_steps;
    o.checkpoint_every = 3;
    o.keep_checkpoints = 10;
    o.checkpoint_async = background;
    o.resume = resume;
    auto outcome = train_blobs(data, o, 9);
    MPI_Barrier(MPI_COMM_WORLD);
    if (comm_->rank() == 0) {
      fs::remove_all(folder);
      fs::rename(folder_, folder);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return outcome;
  };
  const auto synchronous = run(false, folder_ + "-synchronous", 10, "");
  const auto background = run(true, folder_ + "-background", 10, "");
  for (std::size_t i = 0; i < synchronous.second.size(); ++i) {
    EXPECT_TRUE(torch::equal(background.second[i], synchronous.second[i])) << "parameter " << i;
  }
  // Steps 3, 6 and 9, and the end.
  EXPECT_EQ(background.first.checkpoint_blocking_seconds.size(), 4u);
  EXPECT_EQ(synchronous.first.checkpoint_blocking_seconds.size(), 4u);
  for (const std::string step : {"000000003", "000000006", "000000009", "000000010"}) {
    const std::string name = "/checkpoint-" + step + ".pt";
    std::ifstream a(folder_ + "-synchronous" + name, std::ios::binary),
        b(folder_ + "-background" + name, std::ios::binary);
    const std::string sync_bytes((std::istreambuf_iterator<char>(a)), std::istreambuf_iterator<char>());
    const std::string background_bytes((std::istreambuf_iterator<char>(b)), std::istreambuf_iterator<char>());
    EXPECT_FALSE(sync_bytes.empty()) << name;
    EXPECT_EQ(sync_bytes, background_bytes) << name;
  }
  // Resumed from the background-written checkpoint of step 6: the same weights as the run that went on.
  const auto resumed = run(true, folder_ + "-resumed", 10, folder_ + "-background/checkpoint-000000006.pt");
  for (std::size_t i = 0; i < synchronous.second.size(); ++i) {
    EXPECT_TRUE(torch::equal(resumed.second[i], synchronous.second[i])) << "parameter " << i;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (comm_->rank() == 0) {
    for (const char* kind : {"-synchronous", "-background", "-resumed"}) fs::remove_all(folder_ + kind);
  }
}

// Note [Verified checkpoints]: "--resume auto" passes over a damaged newest checkpoint (a half-written file) to the
// next older one and continues from there bit for bit; the damaged file given by path stops the run; with every
// checkpoint damaged, auto refuses instead of starting afresh.
TEST_F(TrainerTest, ResumeAutoPassesOverADamagedCheckpointAndAnExplicitOneFails) {
  Blobs data(500, 4);
  auto run = [&](int64_t max_steps, const std::string& resume, int64_t seed) {
    TrainerOptions o = quiet();
    o.max_steps = max_steps;
    o.checkpoint_every = 2;
    o.resume = resume;
    return train_blobs(data, o, seed).second;
  };
  const auto damage = [&](const std::string& file) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (comm_->rank() == 0) fs::resize_file(file, fs::file_size(file) / 2);
    MPI_Barrier(MPI_COMM_WORLD);
  };
  const auto straight = run(10, "", 9);
  if (comm_->rank() == 0) fs::remove_all(folder_);
  MPI_Barrier(MPI_COMM_WORLD);
  run(6, "", 9);  // checkpoints after steps 2, 4 and 6
  const std::string newest = folder_ + "/checkpoint-000000006.pt";
  damage(newest);
  const auto resumed = run(10, "auto", 12345);  // from step 4: other initial weights would differ
  for (std::size_t i = 0; i < straight.size(); ++i) {
    EXPECT_TRUE(torch::equal(resumed[i], straight[i])) << "parameter " << i;
  }
  damage(folder_ + "/checkpoint-000000010.pt");
  EXPECT_THROW(run(12, folder_ + "/checkpoint-000000010.pt", 9), DamagedCheckpointError);
  for (const char* step : {"000000006", "000000008"}) damage(folder_ + "/checkpoint-" + std::string(step) + ".pt");
  try {
    run(12, "auto", 9);
    FAIL() << "every checkpoint is damaged";
  } catch (const comm::AgreedError& e) {
    EXPECT_NE(std::string(e.what()).find("--resume auto: no intact checkpoint in " + folder_ + " (3 damaged; "),
              std::string::npos)
        << e.what();
  }
}

// A run stopped exactly at an epoch boundary resumes into the next epoch with its early-stopping state: here no epoch
// after the first improves accuracy by 10, so with patience 2 an uninterrupted run stops after its third epoch; the
// resumed run must stop there too (a lost count of epochs without improvement would let it run a fourth), with the
// same weights.
TEST_F(TrainerTest, ResumingAtAnEpochBoundaryKeepsTheEarlyStoppingState) {
  Blobs data(240, 5), held_out(61, 6);
  auto run = [&](int64_t max_steps, const std::string& resume, int64_t seed) {
    TensorDataFeed train(data.x, data.y, 3, sampling(8));
    TensorDataFeed eval(held_out.x, held_out.y, 3, sampling(16, sampler::Mode::kEval));
    torch::manual_seed(seed);
    SequentialModel model("blobs", small_mlp());
    TrainerOptions o = quiet();
    o.epochs = 8;
    o.max_steps = max_steps;
    o.early_stopping_patience = 2;
    o.early_stopping_min_delta = 10;
    o.checkpoint_dir = folder_;
    o.resume = resume;
    Trainer trainer(o, model, train, &eval, *comm_);
    const TrainResult result = trainer.run();
    std::vector<torch::Tensor> weights;
    for (const auto& p : model.parameters()) weights.push_back(p.tensor.clone());
    return std::make_tuple(result, weights, train.batches_per_epoch());
  };
  const auto [straight, straight_weights, steps_per_epoch] = run(0, "", 9);
  EXPECT_TRUE(straight.stopped_early);
  EXPECT_EQ(straight.epochs_completed, 3);
  if (comm_->rank() == 0) fs::remove_all(folder_);
  MPI_Barrier(MPI_COMM_WORLD);
  const auto first = run(2 * steps_per_epoch, "", 9);  // ends with the last step of epoch 1
  EXPECT_EQ(std::get<0>(first).epochs_completed, 2);
  EXPECT_FALSE(std::get<0>(first).stopped_early);
  const auto [resumed, resumed_weights, unused] = run(0, "auto", 12345);
  EXPECT_TRUE(resumed.stopped_early);
  EXPECT_EQ(resumed.epochs_completed, 3);
  EXPECT_EQ(resumed.steps, straight.steps);
  for (std::size_t i = 0; i < straight_weights.size(); ++i) {
    EXPECT_TRUE(torch::equal(resumed_weights[i], straight_weights[i])) << "parameter " << i;
  }
}

// Under bf16, and under fp16 where LibTorch has fp16 CPU kernels (2.x: the CUDA and trixie lanes; on 1.13 the
// trainer must refuse fp16 with one line instead).
TEST_F(TrainerTest, APlantedInfSkipsTheStepOnEveryRankUnderAutocastWithLossScaling) {
  for (Precision precision : {Precision::kBf16, Precision::kFp16}) {
    Blobs data(256, 6);
    data.x[17][3] = std::numeric_limits<float>::infinity();  // one sample, read by one rank once per epoch
    TensorDataFeed train(data.x, data.y, 3, sampling(8));
    torch::manual_seed(3);
    SequentialModel model("blobs", small_mlp());
    TrainerOptions o = quiet();
    o.amp = precision;
    o.epochs = 2;
    o.scaler.enabled = true;
    o.scaler.init_scale = 1024;
    o.scaler.growth_interval = 1000000;  // the scale only changes by backing off
    o.metrics_file = folder_ + "-amp.jsonl";
    if (precision == Precision::kFp16 && !compat::cpu_fp16_autocast_supported()) {
      try {
        Trainer refused(o, model, train, nullptr, *comm_);
        ADD_FAILURE() << "fp16 on the CPU of LibTorch 1.13 must be refused";
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("--amp fp16 does not run on CPU with this LibTorch"), std::string::npos)
            << e.what();
      }
      continue;
    }
    Trainer trainer(o, model, train, nullptr, *comm_);
    trainer.run();
    // Every rank skipped the same two steps, so every rank holds the same weights, all finite.
    for (const auto& p : model.parameters()) {
      auto mine = p.tensor.clone();
      auto theirs = mine.clone();
      comm_->broadcast(theirs, 0)->wait();
      EXPECT_TRUE(torch::equal(mine, theirs)) << to_string(precision) << " " << p.name;
      EXPECT_TRUE(torch::isfinite(mine).all().item<bool>()) << to_string(precision) << " " << p.name;
    }
    if (comm_->rank() == 0) {
      std::ifstream metrics(o.metrics_file);
      std::vector<double> scales;
      for (std::string line; std::getline(metrics, line);) {
        const auto record = nlohmann::json::parse(line);
        if (record.contains("loss_scale")) scales.push_back(record["loss_scale"]);  // step records, not events
      }
      ASSERT_FALSE(scales.empty());
      EXPECT_EQ(scales.back(), 256.0) << to_string(precision);  // halved once per epoch
      fs::remove(o.metrics_file);
    }
    MPI_Barrier(MPI_COMM_WORLD);  // rank 0 has removed the file before the next precision writes it
  }
}

TEST_F(TrainerTest, WithoutLossScalingANonFiniteGradientStopsEveryRankWithTheStepNamed) {
  Blobs data(64, 6);
  data.x[5][0] = std::numeric_limits<float>::quiet_NaN();
  TensorDataFeed train(data.x, data.y, 3, sampling(8));
  SequentialModel model("blobs", small_mlp());
  Trainer trainer(quiet(), model, train, nullptr, *comm_);
  try {
    trainer.run();
    FAIL() << "a NaN gradient must stop training";
  } catch (const std::runtime_error& e) {
    // Sample 5 is rank 0's or rank 1's, whichever the shuffled order gives it to; every rank names that one.
    EXPECT_NE(std::string(e.what()).find("non-finite gradient at step"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("the loss was nan on rank "), std::string::npos) << e.what();
  }
}

TEST_F(TrainerTest, WithSkipNonFiniteTheStepsWithANaNSampleAreSkippedAndTheWeightsStayFinite) {
  Blobs data(64, 6);
  data.x[5][0] = std::numeric_limits<float>::quiet_NaN();
  TensorDataFeed train(data.x, data.y, 3, sampling(8));
  SequentialModel model("blobs", small_mlp());
  TrainerOptions o = quiet();
  o.epochs = 3;
  o.skip_non_finite = true;
  const TrainResult result = Trainer(o, model, train, nullptr, *comm_).run();
  EXPECT_EQ(result.skipped_steps, 3);  // the NaN sample is in one step of each epoch
  EXPECT_EQ(result.steps, 3 * 64 / (8 * comm_->size()));
  for (const auto& p : model.parameters()) EXPECT_TRUE(torch::isfinite(p.tensor).all().item<bool>()) << p.name;
}

// The master test of the data-parallel trainer: N ranks with gradient accumulation and global-norm clipping end
// with the weights of a plain LibTorch loop written here — one process, the same initial weights, each micro-batch
// the union of the ranks' micro-batches, the loss divided by the accumulation, torch::nn::utils::clip_grad_norm_,
// then the optimizer's step — for SGD with momentum, Adam, and AdamW with decoupled weight decay.
TEST_F(TrainerTest, EqualsAPlainLibTorchLoopWithAccumulationAndClipping) {
  constexpr int kAccumulation = 2;
  constexpr int kSteps = 6;
  constexpr int64_t kBatch = 8;  // per rank
  Blobs data(600, 4);
  auto make_mlp = [] {
    torch::manual_seed(9);
    return torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::ReLU(), torch::nn::Linear(16, 3));
  };
  // Adam's update and a clipped update do not change when every gradient is scaled alike, so plain SGD without
  // clipping is in the list too: it is the case that sees a wrong accumulation scale.
  // (optimizer, clip norm, Nesterov momentum)
  const std::vector<std::tuple<OptimizerKind, double, bool>> cases = {{OptimizerKind::kSgd, 0.0, false},
                                                                      {OptimizerKind::kSgd, 0.0, true},
                                                                      {OptimizerKind::kSgd, 0.5, false},
                                                                      {OptimizerKind::kAdam, 0.5, false},
                                                                      {OptimizerKind::kAdamW, 0.5, false}};
  for (const auto& [kind, clip, nesterov] : cases) {
    TensorDataFeed train(data.x, data.y, 3, sampling(kBatch));
    SequentialModel model("blobs", make_mlp());
    TrainerOptions o = quiet();
    o.optimizer.kind = kind;
    o.optimizer.lr = kind == OptimizerKind::kSgd ? 0.1 : 0.01;
    o.optimizer.momentum = kind == OptimizerKind::kSgd ? 0.9 : 0.0;
    o.optimizer.nesterov = nesterov;
    o.optimizer.weight_decay = kind == OptimizerKind::kAdamW ? 0.1 : 0.0;
    o.accumulation = kAccumulation;
    o.clip_grad_norm = clip;
    o.max_steps = kSteps;
    Trainer(o, model, train, nullptr, *comm_).run();

    torch::nn::Sequential reference = make_mlp();
    std::unique_ptr<torch::optim::Optimizer> optimizer;
    if (kind == OptimizerKind::kSgd) {
      optimizer = std::make_unique<torch::optim::SGD>(reference->parameters(),
                                                      torch::optim::SGDOptions(0.1).momentum(0.9).nesterov(nesterov));
    } else if (kind == OptimizerKind::kAdam) {
      optimizer = std::make_unique<torch::optim::Adam>(reference->parameters(), torch::optim::AdamOptions(0.01));
    } else {
      optimizer = std::make_unique<torch::optim::AdamW>(reference->parameters(),
                                                        torch::optim::AdamWOptions(0.01).weight_decay(0.1));
    }
    sampler::SamplerOptions whole = sampling(kBatch * comm_->size());
    whole.world_size = 1;
    whole.rank = 0;
    TensorDataFeed single(data.x, data.y, 3, whole);
    single.start_epoch(0);
    int clipped = 0;
    for (int step = 0; step < kSteps; ++step) {
      for (int m = 0; m < kAccumulation; ++m) {
        const Batch batch = *single.next();
        (torch::nn::functional::cross_entropy(reference->forward(batch.inputs), batch.targets) / kAccumulation)
            .backward();
      }
      if (clip > 0) clipped += torch::nn::utils::clip_grad_norm_(reference->parameters(), clip) > clip ? 1 : 0;
      optimizer->step();
      optimizer->zero_grad();
    }
    if (clip > 0) {
      EXPECT_GE(clipped, kSteps / 2) << "the test must exercise clipping";
    }
    const auto mine = model.module()->parameters();
    const auto theirs = reference->parameters();
    ASSERT_EQ(mine.size(), theirs.size());
    for (std::size_t i = 0; i < mine.size(); ++i) {
      EXPECT_LE((mine[i] - theirs[i]).abs().max().item<double>(), 1e-5)
          << to_string(kind) << (nesterov ? " nesterov" : "") << " clip " << clip << " parameter " << i << " on rank "
          << comm_->rank();
    }
  }
}

TEST_F(TrainerTest, BadOptionsNameTheOption) {
  Blobs data(64, 1);
  TensorDataFeed train(data.x, data.y, 3, sampling(8));
  SequentialModel model("blobs", small_mlp());
  auto expect_error = [&](TrainerOptions o, const std::string& text) {
    try {
      Trainer trainer(o, model, train, nullptr, *comm_);
      FAIL() << "expected an error mentioning " << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  TrainerOptions o = quiet();
  o.accumulation = 0;
  expect_error(o, "--grad-accumulation");
  o = quiet();
  o.resume = "auto";
  expect_error(o, "--checkpoint-dir");
  o = quiet();
  o.accumulation = 1000;
  expect_error(o, "fewer than --grad-accumulation");
}

}  // namespace
}  // namespace dtrain::runtime
