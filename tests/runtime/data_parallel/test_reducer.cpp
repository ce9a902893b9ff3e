// Multi-rank tests of the reducer (2 and 4 ranks). The master test: R ranks with batch b per rank train to the same
// weights as one process with batch R*b.

#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "runtime/data_parallel/distributed_data_parallel.h"

namespace dtrain::runtime {
namespace {

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(int hidden = 16, bool with_unused = false) {
    fc1 = register_module("fc1", torch::nn::Linear(12, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, 8));
    fc3 = register_module("fc3", torch::nn::Linear(8, 3));
    if (with_unused) unused = register_module("unused", torch::nn::Linear(3, 3));
  }
  torch::Tensor forward(torch::Tensor x, bool skip_fc2 = false) {
    x = torch::relu(fc1->forward(x));
    x = skip_fc2 ? x.narrow(1, 0, 8) : torch::tanh(fc2->forward(x));
    return fc3->forward(x);
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr}, unused{nullptr};
};
TORCH_MODULE(Mlp);

class ReducerTest : public testing::Test {
 protected:
  void SetUp() override {
    comm_ = comm::MpiCommunicator::create(MPI_COMM_WORLD);
    rank_ = comm_->rank();
    size_ = comm_->size();
  }

  // Buckets of a few parameters each, so that several allreduces overlap backward and the rebuild moves things.
  static ReducerOptions small_buckets() {
    ReducerOptions options;
    options.first_bucket_bytes = 64;
    options.bucket_cap_bytes = 600;
    return options;
  }

  Mlp make_model(int64_t seed, int hidden = 16, bool with_unused = false) {
    torch::manual_seed(seed);
    return Mlp(hidden, with_unused);
  }

  std::unique_ptr<comm::Communicator> comm_;
  int rank_ = 0;
  int size_ = 1;
};

using MakeOptimizer = std::function<std::unique_ptr<torch::optim::Optimizer>(Mlp&)>;

// Global batches: step s uses rows [s*B, (s+1)*B) of a fixed data set; rank r takes its b-row slice.
struct Data {
  torch::Tensor x, y;
  explicit Data(int64_t rows) {
    torch::manual_seed(1234);
    x = torch::randn({rows, 12});
    y = torch::randint(0, 3, {rows});
  }
};

void expect_same_weights(Mlp& a, Mlp& b, double tolerance) {
  auto pa = a->named_parameters();
  auto pb = b->named_parameters();
  for (const auto& item : pa) {
    const double diff = (item.value() - pb[item.key()]).abs().max().item<double>();
    EXPECT_LE(diff, tolerance) << item.key();
  }
}

void train_and_compare(ReducerTest* test, comm::Communicator& comm, const MakeOptimizer& make_optimizer, int steps,
                       int accumulation, ReducerOptions options) {
  const int64_t b = 4;
  const int R = comm.size();
  const int64_t global = b * R * accumulation;
  Data data(global * steps);

  // Reference: one process, batch R*b*k.
  torch::manual_seed(7);
  Mlp reference(16);
  auto reference_optimizer = make_optimizer(reference);
  for (int s = 0; s < steps; ++s) {
    reference_optimizer->zero_grad();
    auto x = data.x.narrow(0, s * global, global);
    auto y = data.y.narrow(0, s * global, global);
    torch::nn::functional::cross_entropy(reference->forward(x), y).backward();
    reference_optimizer->step();
  }

  // Distributed: each rank starts from different weights; DDP broadcasts rank 0's (the reference's).
  torch::manual_seed(comm.rank() == 0 ? 7 : 100 + comm.rank());
  Mlp model(16);
  DistributedDataParallel ddp(model.ptr(), comm, options);
  auto optimizer = make_optimizer(model);
  for (int s = 0; s < steps; ++s) {
    optimizer->zero_grad();
    for (int k = 0; k < accumulation; ++k) {
      // Micro-batch k of this rank: the global batch is laid out as [micro-batch][rank][b rows].
      const int64_t start = s * global + (k * R + comm.rank()) * b;
      auto loss =
          torch::nn::functional::cross_entropy(model->forward(data.x.narrow(0, start, b)), data.y.narrow(0, start, b)) /
          accumulation;
      if (k + 1 < accumulation) {
        Reducer::NoSync no_sync(ddp.reducer());
        ddp.backward(loss);
      } else {
        ddp.backward(loss);
      }
    }
    optimizer->step();
  }
  (void)test;
  expect_same_weights(model, reference, 1e-6);
}

TEST_F(ReducerTest, SgdWithMomentumMatchesSingleProcessTraining) {
  train_and_compare(
      this, *comm_,
      [](Mlp& m) {
        return std::make_unique<torch::optim::SGD>(m->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
      },
      20, 1, small_buckets());
}

TEST_F(ReducerTest, AdamMatchesSingleProcessTraining) {
  train_and_compare(
      this, *comm_,
      [](Mlp& m) { return std::make_unique<torch::optim::Adam>(m->parameters(), torch::optim::AdamOptions(1e-2)); }, 20,
      1, small_buckets());
}

TEST_F(ReducerTest, DefaultBucketsMatchSingleProcessTraining) {
  train_and_compare(this, *comm_, [](Mlp& m) { return std::make_unique<torch::optim::SGD>(m->parameters(), 0.05); }, 10,
                    1, {});
}

TEST_F(ReducerTest, AccumulationOfKMicroBatchesEqualsOneBatchOfKTimesTheSize) {
  train_and_compare(
      this, *comm_,
      [](Mlp& m) {
        return std::make_unique<torch::optim::SGD>(m->parameters(), torch::optim::SGDOptions(0.1).momentum(0.5));
      },
      10, 3, small_buckets());
}

TEST_F(ReducerTest, BucketsOverlapBackwardAndAreRebuiltIdenticallyOnEveryRank) {
  Mlp model = make_model(3);
  DistributedDataParallel ddp(model.ptr(), *comm_, small_buckets());
  const auto initial_plan = ddp.reducer().bucket_plan();
  // Reverse registration order: fc3.bias (index 5, 12 bytes) then fc3.weight (96 bytes) fill the 64-byte first bucket.
  ASSERT_GE(initial_plan.size(), 3u);
  EXPECT_EQ(initial_plan.front(), (std::vector<std::size_t>{5, 4}));
  Data data(8);
  ddp.backward(model->forward(data.x).sum());
  EXPECT_GE(ddp.reducer().buckets_launched_in_backward(), 1u);

  // Every rank holds the same plan after the rebuild: hash min == hash max.
  auto hash = torch::tensor({static_cast<int64_t>(ddp.reducer().plan_hash())}, torch::kLong);
  auto low = hash.clone(), high = hash.clone();
  comm_->allreduce(low, comm::ReduceOp::kMin)->wait();
  comm_->allreduce(high, comm::ReduceOp::kMax)->wait();
  EXPECT_TRUE(torch::equal(low, high));
  // Gradients are views into the buckets: a second backward accumulates in place, with no new allocation.
  const void* before = model->fc1->weight.grad().data_ptr();
  model->zero_grad();
  ddp.backward(model->forward(data.x).sum());
  EXPECT_EQ(model->fc1->weight.grad().data_ptr(), before);
}

// A reducer's hooks point at it: tearing it down must remove them, so that the model can be wrapped again (a new
// DistributedDataParallel in the same process) and train exactly as a model wrapped once.
TEST_F(ReducerTest, ADistributedDataParallelCanBeTornDownAndRebuilt) {
  Mlp model = make_model(3);
  Data data(8);
  auto hooks = [&] {
    std::size_t n = 0;
    for (const auto& p : model->parameters()) n += torch::autograd::impl::grad_accumulator(p)->post_hooks().size();
    return n;
  };
  {
    DistributedDataParallel first(model.ptr(), *comm_, small_buckets());
    EXPECT_EQ(hooks(), model->parameters().size());
    first.backward(model->forward(data.x).sum());
  }
  EXPECT_EQ(hooks(), 0u);
  for (auto& p : model->parameters()) p.mutable_grad() = at::Tensor();
  Mlp twin = make_model(3);
  DistributedDataParallel again(model.ptr(), *comm_, small_buckets());
  DistributedDataParallel once(twin.ptr(), *comm_, small_buckets());
  again.backward(model->forward(data.x).sum());
  once.backward(twin->forward(data.x).sum());
  EXPECT_EQ(hooks(), model->parameters().size());
  for (std::size_t i = 0; i < model->parameters().size(); ++i) {
    EXPECT_TRUE(model->parameters()[i].grad().equal(twin->parameters()[i].grad())) << "parameter " << i;
  }
}

TEST_F(ReducerTest, ParametersAreBroadcastFromRankZero) {
  Mlp model = make_model(50 + rank_);
  DistributedDataParallel ddp(model.ptr(), *comm_);
  Mlp rank0 = make_model(50);
  expect_same_weights(model, rank0, 0.0);
}

// BatchNorm's running statistics (and its int64 batch count) are buffers: each rank has seen its own data before
// DDP starts, and afterwards every rank holds rank 0's.
TEST_F(ReducerTest, BuffersAreBroadcastFromRankZero) {
  auto make_net = [] {
    torch::manual_seed(3);
    return torch::nn::Sequential(torch::nn::Linear(12, 8), torch::nn::BatchNorm1d(8), torch::nn::Linear(8, 3));
  };
  auto warm_up = [](torch::nn::Sequential& net, int rank) {
    torch::NoGradGuard no_grad;
    torch::manual_seed(100 + rank);
    for (int i = 0; i <= rank; ++i) net->forward(torch::randn({16, 12}) * (rank + 1) + rank);
  };
  torch::nn::Sequential net = make_net();
  warm_up(net, rank_);
  torch::nn::Sequential rank0 = make_net();
  warm_up(rank0, 0);
  DistributedDataParallel ddp(net.ptr(), *comm_);
  auto mine = net->named_buffers();
  auto expected = rank0->named_buffers();
  ASSERT_EQ(mine.size(), 3u);  // running_mean, running_var, num_batches_tracked
  for (const auto& item : expected) {
    EXPECT_TRUE(torch::equal(mine[item.key()], item.value())) << item.key() << " on rank " << rank_;
  }
}

TEST_F(ReducerTest, AModelThatDiffersIsNamedOnEveryRank) {
  Mlp model = make_model(1, rank_ == 1 ? 17 : 16);
  try {
    DistributedDataParallel ddp(model.ptr(), *comm_);
    FAIL() << "different models must be refused";
  } catch (const ReducerError& e) {
    const std::string message = e.what();
    if (rank_ == 1) {
      EXPECT_NE(message.find("this rank has parameter fc1.weight Float [17, 12] where rank 0 has parameter fc1.weight "
                             "Float [16, 12]"),
                std::string::npos)
          << message;
    } else {
      EXPECT_NE(message.find("rank 1 has a different model"), std::string::npos) << message;
    }
  }
}

TEST_F(ReducerTest, UnusedParametersAreAnErrorThatNamesThem) {
  Mlp model = make_model(2, 16, /*with_unused=*/true);
  DistributedDataParallel ddp(model.ptr(), *comm_);
  Data data(4);
  try {
    ddp.backward(model->forward(data.x).sum());
    FAIL() << "an unused parameter must be reported";
  } catch (const ReducerError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("2 on this rank: unused.weight, unused.bias"), std::string::npos) << message;
    EXPECT_NE(message.find("find_unused_parameters"), std::string::npos) << message;
  }
}

TEST_F(ReducerTest, AParameterUnusedOnOneRankOnlyFailsOnEveryRank) {
  Mlp model = make_model(2);
  DistributedDataParallel ddp(model.ptr(), *comm_);
  Data data(4);
  try {
    ddp.backward(model->forward(data.x, /*skip_fc2=*/rank_ == 1).sum());
    FAIL() << "every rank must see the error";
  } catch (const ReducerError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(rank_ == 1 ? "2 on this rank: fc2.weight, fc2.bias" : "none on this rank"),
              std::string::npos)
        << message;
  }
}

TEST_F(ReducerTest, FindUnusedParametersTreatsThemAsZeroGradients) {
  ReducerOptions options = small_buckets();
  options.find_unused_parameters = true;
  Mlp model = make_model(2, 16, true);
  DistributedDataParallel ddp(model.ptr(), *comm_, options);
  Data data(4);
  for (int i = 0; i < 3; ++i) ddp.backward(model->forward(data.x, rank_ == 1).sum());
  EXPECT_TRUE(torch::equal(model->unused->weight.grad(), torch::zeros({3, 3})));
  // fc2 got gradients only from the ranks that used it, averaged over all ranks.
  EXPECT_TRUE(model->fc2->weight.grad().abs().sum().item<double>() > 0);
}

TEST_F(ReducerTest, AnInfOnOneRankIsSeenOnEveryRank) {
  Mlp model = make_model(4);
  DistributedDataParallel ddp(model.ptr(), *comm_);
  Data data(4);
  auto x = data.x.clone();
  if (rank_ == size_ - 1) x[0][0] = std::numeric_limits<float>::infinity();
  ddp.backward(model->forward(x).sum());
  EXPECT_TRUE(ddp.reducer().check_gradients(std::nullopt, false).non_finite);
  model->zero_grad();
  ddp.backward(model->forward(data.x).sum());
  EXPECT_FALSE(ddp.reducer().check_gradients(std::nullopt, false).non_finite);
}

// bf16 on the wire: every rank ends with the same gradients, and they are the fp32 average within what rounding
// allows. Each of the R contributions is rounded once to bf16 (relative error 2^-9) and the R - 1 additions once each
// (2^-9 of a partial sum, at most the sum of magnitudes), so |compressed - average| <= 2R 2^-9 mean_r |g_r|.
TEST_F(ReducerTest, CompressedBucketsGiveTheSameGradientsOnEveryRankWithinBf16RoundingOfTheAverage) {
  ReducerOptions options = small_buckets();
  options.compression = torch::kBFloat16;
  Mlp model = make_model(5);
  DistributedDataParallel ddp(model.ptr(), *comm_, options);
  Data data(2 * size_);
  auto rows_of = [&](int rank) { return data.x.narrow(0, 2 * rank, 2); };
  ddp.backward(model->forward(rows_of(rank_)).sum());

  // The reference, in fp32 in this process: each rank's gradient from the same weights, averaged.
  Mlp alone = make_model(5);
  std::vector<torch::Tensor> average, magnitude;
  for (int r = 0; r < size_; ++r) {
    alone->zero_grad();
    alone->forward(rows_of(r)).sum().backward();
    const auto params = alone->parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (r == 0) {
        average.push_back(torch::zeros_like(params[i]));
        magnitude.push_back(torch::zeros_like(params[i]));
      }
      average[i] += params[i].grad() / size_;
      magnitude[i] += params[i].grad().abs() / size_;
    }
  }
  const double bound = 2.0 * size_ * std::ldexp(1.0, -9);
  const auto params = model->parameters();
  double largest_error = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor grad = params[i].grad();
    EXPECT_EQ(grad.scalar_type(), torch::kFloat);
    auto from_rank0 = grad.clone();
    comm_->broadcast(from_rank0, 0)->wait();
    EXPECT_TRUE(torch::equal(grad, from_rank0)) << "parameter " << i;
    const torch::Tensor error = (grad - average[i]).abs();
    EXPECT_TRUE((error <= bound * magnitude[i] + 1e-30).all().item<bool>())
        << "parameter " << i << ": error " << error.max().item<double>() << " against a bound of "
        << (bound * magnitude[i]).max().item<double>();
    largest_error = std::max(largest_error, error.max().item<double>());
  }
  EXPECT_GT(largest_error, 0.0) << "the gradients are not rounded: are they compressed at all?";

  const double norm = ddp.reducer().check_gradients(std::nullopt, true).norm;
  auto norms = torch::tensor({norm, -norm}, torch::kDouble);
  comm_->allreduce(norms, comm::ReduceOp::kMin)->wait();
  EXPECT_EQ(norms[0].item<double>(), -norms[1].item<double>());
}

}  // namespace
}  // namespace dtrain::runtime
