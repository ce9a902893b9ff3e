// The master test of pipeline parallelism: on 2, 4 and 8 ranks, every grid (pipeline stages x data-parallel
// replicas) and schedule trains to the same weights as a plain LibTorch loop over the whole model on the same samples,
// within 1e-6, with and without gradient clipping; 1F1B holds no more micro-batches than stages; mismatched schedules
// fail fast on every stage.

#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <limits>
#include <map>

#include "comm/mpi_communicator.h"
#include "runtime/data/tensor_data_feed.h"
#include "runtime/pipeline/pipeline_engine.h"
#include "runtime/pipeline/pipeline_partition.h"
#include "runtime/training/parallel_grid.h"
#include "runtime/training/trainer.h"
#include "shared_scratch_folder.h"

namespace dtrain::runtime {
namespace {

constexpr int64_t kBatch = 4;  // per replica and micro-batch
constexpr int64_t kSteps = 4;

struct Blobs {
  torch::Tensor x, y;
  Blobs() {
    torch::manual_seed(11);
    y = torch::randint(0, 3, {600});
    x = torch::randn({600, 8}) * 0.5 + torch::nn::functional::one_hot(y, 8).to(torch::kFloat) * 3;
  }
};

// Seven layers, so that four stages each get some; no dropout, so every run draws the same numbers. A wide model
// sends activations far beyond MPI's eager limit, so that a send completes only when its receive is posted.
torch::nn::Sequential model(int64_t width = 16) {
  torch::manual_seed(7);
  return torch::nn::Sequential(torch::nn::Linear(8, width), torch::nn::Tanh(), torch::nn::Linear(width, 16),
                               torch::nn::Tanh(), torch::nn::Linear(16, 16), torch::nn::Tanh(),
                               torch::nn::Linear(16, 3));
}

sampler::SamplerOptions sampling(int rank, int world, int64_t batch) {
  sampler::SamplerOptions o;
  o.world_size = world;
  o.rank = rank;
  o.batch_size = batch;
  o.seed = 3;
  return o;
}

TrainerOptions options(int micro_batches, ScheduleKind schedule) {
  TrainerOptions o;
  o.progress = ProgressMode::kNone;
  o.max_steps = kSteps;
  o.accumulation = micro_batches;
  o.pipeline_schedule = schedule;
  o.optimizer.kind = OptimizerKind::kSgd;
  o.optimizer.lr = 0.1;
  o.optimizer.momentum = 0.9;
  return o;
}

std::map<std::string, torch::Tensor> weights(TrainableModel& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.parameters()) out[p.name] = p.tensor.detach().clone();
  return out;
}

class PipelineTest : public testing::Test {
 protected:
  void SetUp() override { world_ = comm::MpiCommunicator::create(MPI_COMM_WORLD); }

  // One process, the whole model, a plain LibTorch loop written here and sharing no code with the trainer: the same
  // global batches (a micro-batch = every replica's micro-batch together), each micro-batch's loss divided by their
  // number, torch::nn::utils::clip_grad_norm_ over the whole model, SGD with momentum.
  struct Reference {
    std::map<std::string, torch::Tensor> weights;
    int clipped_steps = 0;
  };
  Reference reference(int replicas, int micro_batches, double clip = 0, int64_t width = 16) {
    TensorDataFeed feed(data_.x, data_.y, 3, sampling(0, 1, kBatch * replicas));
    feed.start_epoch(0);
    torch::nn::Sequential whole = model(width);
    torch::optim::SGD sgd(whole->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    Reference out;
    for (int64_t step = 0; step < kSteps; ++step) {
      for (int m = 0; m < micro_batches; ++m) {
        const Batch batch = *feed.next();
        (torch::nn::functional::cross_entropy(whole->forward(batch.inputs), batch.targets) / micro_batches).backward();
      }
      if (clip > 0 && torch::nn::utils::clip_grad_norm_(whole->parameters(), clip) > clip) ++out.clipped_steps;
      sgd.step();
      sgd.zero_grad();
    }
    for (const auto& item : whole->named_parameters()) out.weights[item.key()] = item.value().detach().clone();
    return out;
  }

  // This rank's stage of the model cut by `ranges`, trained with `o` on the grid; its weights after.
  std::map<std::string, torch::Tensor> train_stage(ParallelGrid& grid, const std::vector<LayerRange>& ranges,
                                                   const TrainerOptions& o) {
    SequentialModel stage("mlp", slice_layers(model(), ranges[grid.stage]));
    TensorDataFeed feed(data_.x, data_.y, 3, sampling(grid.replica, grid.replicas, kBatch));
    Trainer(o, stage, feed, nullptr, *world_, &grid).run();
    return weights(stage);
  }

  Blobs data_;
  std::unique_ptr<comm::Communicator> world_;
};

TEST_F(PipelineTest, EveryGridAndScheduleTrainsTheWeightsOfOneProcess) {
  for (int stages : {2, 4}) {
    if (world_->size() % stages != 0) continue;
    ParallelGrid grid = make_parallel_grid(*world_, stages);
    const auto ranges = balance_layers(parameter_costs(model()), stages);
    SequentialModel untrained("mlp", model());
    const auto initial = weights(untrained);
    for (int m : {1, 4, 8}) {
      const auto expected = reference(grid.replicas, m).weights;
      for (const ScheduleKind schedule : {ScheduleKind::kGPipe, ScheduleKind::k1F1B}) {
        SCOPED_TRACE(testing::Message() << to_string(schedule) << ", " << stages << " stages x " << grid.replicas
                                        << " replicas, " << m << " micro-batches, " << grid.describe());
        SequentialModel stage("mlp", slice_layers(model(), ranges[grid.stage]));
        TensorDataFeed feed(data_.x, data_.y, 3, sampling(grid.replica, grid.replicas, kBatch));
        Trainer trainer(options(m, schedule), stage, feed, nullptr, *world_, &grid);
        const TrainResult result = trainer.run();
        EXPECT_EQ(result.steps, kSteps);
        // GPipe holds every micro-batch; 1F1B's first stage at most one per stage.
        EXPECT_EQ(result.peak_live_activations, schedule == ScheduleKind::kGPipe ? m : std::min(m, stages));
        for (const auto& [name, tensor] : weights(stage)) {
          ASSERT_TRUE(expected.count(name)) << name;
          EXPECT_GT((tensor - initial.at(name)).abs().max().item<double>(), 1e-3) << name << " did not train";
          EXPECT_LE((tensor - expected.at(name)).abs().max().item<double>(), 1e-6) << name;
        }
      }
    }
  }
}

TEST_F(PipelineTest, ActivationsBeyondTheEagerLimitStreamWithoutDeadlock) {
  constexpr int64_t kWide = 1 << 15;  // 4 samples x 32768 floats: 512 KiB per transfer
  ParallelGrid grid = make_parallel_grid(*world_, 2);
  const auto ranges = balance_layers(parameter_costs(model(kWide)), 2);
  const auto expected = reference(grid.replicas, 4, 0, kWide).weights;
  for (const ScheduleKind schedule : {ScheduleKind::kGPipe, ScheduleKind::k1F1B}) {
    SequentialModel stage("mlp", slice_layers(model(kWide), ranges[grid.stage]));
    TensorDataFeed feed(data_.x, data_.y, 3, sampling(grid.replica, grid.replicas, kBatch));
    Trainer trainer(options(4, schedule), stage, feed, nullptr, *world_, &grid);
    trainer.run();
    for (const auto& [name, tensor] : weights(stage)) {
      EXPECT_LE((tensor - expected.at(name)).abs().max().item<double>(), 1e-6) << to_string(schedule) << " " << name;
    }
  }
}

// The gradient norm that --clip-grad-norm compares is the whole model's, summed over the stages: a stage clipping by
// its own norm, or a wrong coefficient, ends on other weights than torch's clip_grad_norm_ over the whole model.
TEST_F(PipelineTest, ClippingUsesTheWholeModelsNormAsTorchDoes) {
  constexpr double kClip = 0.5;
  for (int stages : {2, 4}) {
    if (world_->size() % stages != 0) continue;
    ParallelGrid grid = make_parallel_grid(*world_, stages);
    const auto ranges = balance_layers(parameter_costs(model()), stages);
    const Reference expected = reference(grid.replicas, 4, kClip);
    EXPECT_GE(expected.clipped_steps, kSteps / 2) << "the test must exercise clipping";
    for (const ScheduleKind schedule : {ScheduleKind::kGPipe, ScheduleKind::k1F1B}) {
      TrainerOptions o = options(4, schedule);
      o.clip_grad_norm = kClip;
      for (const auto& [name, tensor] : train_stage(grid, ranges, o)) {
        EXPECT_LE((tensor - expected.weights.at(name)).abs().max().item<double>(), 1e-6)
            << to_string(schedule) << ", " << stages << " stages: " << name;
      }
    }
  }
}

// ZeRO inside a pipeline (Note [Optimizer shards]): each stage shards its optimizer state (stage 1), gradients
// (stage 2) and parameters (stage 3) over that stage's replicas, and the clipping norm is summed over the shards and
// along the pipeline. With stage 2, every second block of each stage also recomputes its activations in backward.
TEST_F(PipelineTest, ShardingEachStagesStateOverItsReplicasTrainsTheWeightsOfOneProcess) {
  constexpr double kClip = 0.5;
  for (int stages : {2, 4}) {
    if (world_->size() % stages != 0) continue;
    ParallelGrid grid = make_parallel_grid(*world_, stages);
    const auto ranges = balance_layers(parameter_costs(model()), stages);
    const Reference expected = reference(grid.replicas, 4, kClip);
    for (int zero_stage : {1, 2, 3}) {
      TrainerOptions o = options(4, ScheduleKind::k1F1B);
      o.clip_grad_norm = kClip;
      o.zero_stage = zero_stage;
      o.activation_checkpoint_every = zero_stage == 2 ? 2 : 0;
      o.reducer.first_bucket_bytes = 64;  // several buckets per stage, not multiples of the replicas
      o.reducer.bucket_cap_bytes = 300;
      for (const auto& [name, tensor] : train_stage(grid, ranges, o)) {
        EXPECT_LE((tensor - expected.weights.at(name)).abs().max().item<double>(), 1e-6)
            << "zero stage " << zero_stage << ", " << grid.describe() << ": " << name;
      }
    }
  }
}

TEST_F(PipelineTest, ASchedulesMismatchFailsFastOnEveryStageWithTheMismatchNamed) {
  ParallelGrid grid = make_parallel_grid(*world_, 2);
  const auto start = std::chrono::steady_clock::now();
  // Stage 0 runs 1F1B, stage 1 GPipe: each would wait for the other forever.
  const ScheduleKind kind = grid.stage == 0 ? ScheduleKind::k1F1B : ScheduleKind::kGPipe;
  try {
    PipelineEngine engine(*grid.pipeline, *grid.pipeline_control, make_schedule(kind, 2, grid.stage, 4), 4);
    ADD_FAILURE() << "no error";
  } catch (const PipelineError& e) {
    EXPECT_STREQ(e.what(),
                 "pipeline schedules would deadlock: stage 0 at #4 recv-gradient mb 0; stage 1 at #4 "
                 "recv-activation mb 2");
  }
  try {
    PipelineEngine engine(*grid.pipeline, *grid.pipeline_control,
                          make_schedule(ScheduleKind::kGPipe, 2, grid.stage, 4 + 4 * grid.stage), 4 + 4 * grid.stage);
    ADD_FAILURE() << "no error";
  } catch (const PipelineError& e) {
    EXPECT_STREQ(e.what(), "pipeline stages disagree on micro-batches per step: stage 0 runs 4, stage 1 runs 8");
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
}

// Only the last stage's own gradient is non-finite (the gradient it sends back is clean): without the agreement
// along the pipeline, the first stage would take the step. Under bf16 autocast with loss scaling every stage skips it.
TEST_F(PipelineTest, ANonFiniteGradientOnOneStageSkipsTheStepOnEveryStage) {
  ParallelGrid grid = make_parallel_grid(*world_, 2);
  const auto ranges = balance_layers(parameter_costs(model()), 2);
  SequentialModel stage("mlp", slice_layers(model(), ranges[grid.stage]));
  const auto initial = weights(stage);
  if (grid.stage == 1) {
    stage.parameters().back().tensor.register_hook(
        [](const torch::Tensor& grad) { return grad * std::numeric_limits<float>::infinity(); });
  }
  TensorDataFeed feed(data_.x, data_.y, 3, sampling(grid.replica, grid.replicas, kBatch));
  TrainerOptions o = options(4, ScheduleKind::k1F1B);
  o.max_steps = 2;
  o.amp = Precision::kBf16;
  o.scaler.enabled = true;
  Trainer trainer(o, stage, feed, nullptr, *world_, &grid);
  EXPECT_EQ(trainer.run().steps, 2);
  for (const auto& [name, tensor] : weights(stage)) EXPECT_TRUE(torch::equal(tensor, initial.at(name))) << name;

  // Without loss scaling a non-finite gradient is an error, on every stage, naming the step.
  o.scaler.enabled = false;
  try {
    Trainer strict(o, stage, feed, nullptr, *world_, &grid);
    strict.run();
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite gradient at step 0"), std::string::npos) << e.what();
  }
}

// Stop mid-epoch, resume from the stages' checkpoints with other initial weights and RNG: the final weights are bit
// for bit those of an uninterrupted run (sampler position, Adam's moments and every stage's part restored).
TEST_F(PipelineTest, ResumingFromStageCheckpointsContinuesBitForBit) {
  testing_support::SharedScratchFolder scratch("dtrain-pipeline");
  ParallelGrid grid = make_parallel_grid(*world_, 2);
  const auto ranges = balance_layers(parameter_costs(model()), 2);
  auto run = [&](bool stop_in_second_epoch, const std::string& folder, const std::string& resume, bool scramble) {
    SequentialModel stage("mlp", slice_layers(model(), ranges[grid.stage]));
    if (scramble) {
      torch::NoGradGuard no_grad;
      for (auto& p : stage.parameters()) p.tensor.uniform_(-1, 1);
    }
    TensorDataFeed feed(data_.x, data_.y, 3, sampling(grid.replica, grid.replicas, kBatch));
    TrainerOptions o = options(4, ScheduleKind::k1F1B);
    o.optimizer.kind = OptimizerKind::kAdam;
    o.optimizer.lr = 0.01;
    o.epochs = 2;
    o.max_steps = stop_in_second_epoch ? feed.batches_per_epoch() / 4 + 3 : 0;
    o.checkpoint_dir = folder;
    o.resume = resume;
    Trainer trainer(o, stage, feed, nullptr, *world_, &grid);
    trainer.run();
    return weights(stage);
  };
  const auto straight = run(false, scratch.path() + "/straight", "", false);
  run(true, scratch.path() + "/halves", "", false);
  // Any stage's file of a checkpoint names it for every stage.
  std::string stage0_file;
  for (const auto& entry : std::filesystem::directory_iterator(scratch.path() + "/halves")) {
    if (entry.path().string().find(".stage0-of-2.pt") != std::string::npos) stage0_file = entry.path().string();
  }
  const auto explicitly = run(false, scratch.path() + "/explicit", stage0_file, true);
  const auto resumed = run(false, scratch.path() + "/halves", "auto", true);
  for (const auto& [name, tensor] : straight) {
    EXPECT_TRUE(torch::equal(tensor, resumed.at(name))) << name;
    EXPECT_TRUE(torch::equal(tensor, explicitly.at(name))) << name;
  }
}

TEST_F(PipelineTest, AGridThatDoesNotDivideTheWorldIsRefused) {
  EXPECT_THROW(make_parallel_grid(*world_, 3), std::invalid_argument);
}

}  // namespace
}  // namespace dtrain::runtime
