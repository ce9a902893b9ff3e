// Multi-rank tests of the MPI backend (run with 2 and 4 ranks): exact results for every operation and dtype,
// ordering, sub-communicators, point-to-point in both directions, and clear errors for mismatched calls.

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "comm/error.h"
#include "comm/mpi_communicator.h"
#include "comm/world.h"

namespace dtrain::comm {
namespace {

const std::vector<at::ScalarType> kAllTypes = {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf,
                                               at::kInt,   at::kLong,   at::kByte};
const std::vector<ReduceOp> kAllOps = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin};

// A fresh communicator per test: a test that breaks its communicator (on purpose) cannot affect the next one.
class MpiCommunicatorTest : public testing::Test {
 protected:
  void SetUp() override {
    CommOptions options;
    options.name = testing::UnitTest::GetInstance()->current_test_info()->name();
    options.timeout = std::chrono::seconds(60);
    comm_ = MpiCommunicator::create(MPI_COMM_WORLD, options);
    rank_ = comm_->rank();
    size_ = comm_->size();
  }

  // Small non-negative integers, exactly representable in every dtype (uint8 and bfloat16 included), different on
  // every rank and element.
  at::Tensor values(int rank, int64_t n, at::ScalarType type) const {
    auto i = at::arange(n, at::kLong);
    return ((i * 7 + rank * 3) % 11).to(type);
  }

  std::unique_ptr<Communicator> comm_;
  int rank_ = 0;
  int size_ = 1;
};

std::string label(at::ScalarType type, ReduceOp op) {
  return std::string(c10::toString(type)) + "/" + to_string(op);
}

TEST_F(MpiCommunicatorTest, AllreduceEveryOpAndDtypeIsExact) {
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{1001}}) {
    for (const at::ScalarType type : kAllTypes) {
      for (const ReduceOp op : kAllOps) {
        const bool floating = at::isFloatingType(type);
        if (op == ReduceOp::kAvg && !floating) continue;
        std::vector<at::Tensor> all;
        for (int r = 0; r < size_; ++r) all.push_back(values(r, n, at::kDouble));
        at::Tensor stacked = at::stack(all);
        at::Tensor expected;
        switch (op) {
          case ReduceOp::kSum:
            expected = stacked.sum(0);
            break;
          case ReduceOp::kAvg:
            expected = stacked.sum(0) / size_;
            break;  // sizes 2 and 4: exact in every dtype
          case ReduceOp::kMax:
            expected = std::get<0>(stacked.max(0));
            break;
          case ReduceOp::kMin:
            expected = std::get<0>(stacked.min(0));
            break;
        }
        at::Tensor tensor = values(rank_, n, type);
        comm_->allreduce(tensor, op)->wait();
        EXPECT_TRUE(at::equal(tensor, expected.to(type))) << label(type, op) << " n=" << n;
      }
    }
  }
}

TEST_F(MpiCommunicatorTest, AvgOfNonIntegersRoundsOnceInTheDtype) {
  // 1/3-ish values: the average is computed from the exact-in-fp32 sum, then divided, as a single-rank mean would.
  at::Tensor tensor = at::full({5}, 0.1f + static_cast<float>(rank_), at::kFloat);
  comm_->allreduce(tensor, ReduceOp::kAvg)->wait();
  float sum = 0;
  for (int r = 0; r < size_; ++r) sum += 0.1f + static_cast<float>(r);
  EXPECT_TRUE(at::equal(tensor, at::full({5}, sum / static_cast<float>(size_), at::kFloat)));
}

TEST_F(MpiCommunicatorTest, BroadcastFromEveryRootAndDtype) {
  for (int root = 0; root < size_; ++root) {
    for (const at::ScalarType type : kAllTypes) {
      at::Tensor tensor = values(rank_, 333, type);
      comm_->broadcast(tensor, root)->wait();
      EXPECT_TRUE(at::equal(tensor, values(root, 333, type))) << c10::toString(type) << " root=" << root;
    }
  }
}

TEST_F(MpiCommunicatorTest, AllgatherInPlaceAndOutOfPlace) {
  for (const at::ScalarType type : kAllTypes) {
    std::vector<at::Tensor> parts;
    for (int r = 0; r < size_; ++r) parts.push_back(values(r, 17, type));
    const at::Tensor expected = at::cat(parts);

    at::Tensor output = at::zeros({17 * size_}, type);
    comm_->allgather(output, values(rank_, 17, type))->wait();
    EXPECT_TRUE(at::equal(output, expected)) << c10::toString(type);

    at::Tensor in_place = at::zeros({17 * size_}, type);
    at::Tensor mine = in_place.narrow(0, 17 * rank_, 17);
    mine.copy_(values(rank_, 17, type));
    comm_->allgather(in_place, mine)->wait();
    EXPECT_TRUE(at::equal(in_place, expected)) << c10::toString(type) << " in place";
  }
}

TEST_F(MpiCommunicatorTest, ReduceScatterEveryOpAndDtype) {
  for (const at::ScalarType type : kAllTypes) {
    for (const ReduceOp op : kAllOps) {
      if (op == ReduceOp::kAvg && !at::isFloatingType(type)) continue;
      const int64_t chunk = 9;
      std::vector<at::Tensor> all;
      for (int r = 0; r < size_; ++r) all.push_back(values(r, chunk * size_, at::kDouble));
      at::Tensor stacked = at::stack(all);
      at::Tensor full;
      switch (op) {
        case ReduceOp::kSum:
          full = stacked.sum(0);
          break;
        case ReduceOp::kAvg:
          full = stacked.sum(0) / size_;
          break;
        case ReduceOp::kMax:
          full = std::get<0>(stacked.max(0));
          break;
        case ReduceOp::kMin:
          full = std::get<0>(stacked.min(0));
          break;
      }
      at::Tensor output = at::zeros({chunk}, type);
      comm_->reduce_scatter(output, values(rank_, chunk * size_, type), op)->wait();
      EXPECT_TRUE(at::equal(output, full.narrow(0, chunk * rank_, chunk).to(type))) << label(type, op);
    }
  }
}

TEST_F(MpiCommunicatorTest, ZeroLengthTensorsWorkForEveryOperation) {
  at::Tensor empty = at::zeros({0}, at::kFloat);
  comm_->allreduce(empty, ReduceOp::kSum)->wait();
  comm_->broadcast(empty, 0)->wait();
  comm_->allgather(at::zeros({0}, at::kFloat), empty)->wait();
  comm_->reduce_scatter(at::zeros({0}, at::kFloat), empty, ReduceOp::kMax)->wait();
  const int peer = rank_ ^ 1;
  if (peer < size_) {
    auto sent = comm_->send(empty, peer, 1);
    comm_->recv(at::zeros({0}, at::kFloat), peer, 1)->wait();
    sent->wait();
  }
  comm_->barrier()->wait();
  EXPECT_EQ(empty.numel(), 0);
}

TEST_F(MpiCommunicatorTest, SixtyFourMebibyteAllreduceIsExact) {
  const int64_t n = 16 * 1024 * 1024;  // float32: 64 MiB
  at::Tensor tensor = (at::arange(n, at::kInt) % 1000 + rank_).to(at::kFloat);
  comm_->allreduce(tensor, ReduceOp::kSum)->wait();
  const int rank_sum = size_ * (size_ - 1) / 2;
  at::Tensor expected = ((at::arange(n, at::kInt) % 1000) * size_ + rank_sum).to(at::kFloat);
  EXPECT_TRUE(at::equal(tensor, expected));
}

TEST_F(MpiCommunicatorTest, ManyOpsInFlightCompleteInIssueOrder) {
  std::vector<at::Tensor> tensors;
  std::vector<WorkPtr> works;
  for (int i = 0; i < 64; ++i) {
    tensors.push_back(at::full({1000 + i}, static_cast<float>(i + rank_), at::kFloat));
    works.push_back(i % 3 == 2 ? comm_->broadcast(tensors.back(), i % size_)
                               : comm_->allreduce(tensors.back(), ReduceOp::kSum));
  }
  works.back()->wait();
  // Completion is reported in issue order: once the last is done, all earlier ones are too.
  for (const WorkPtr& work : works) EXPECT_EQ(work->status(), WorkStatus::kSucceeded) << work->info().describe();
  for (int i = 0; i < 64; ++i) {
    const float expected =
        i % 3 == 2 ? static_cast<float>(i + i % size_) : static_cast<float>(i * size_ + size_ * (size_ - 1) / 2);
    EXPECT_TRUE(at::equal(tensors[i], at::full({1000 + i}, expected, at::kFloat))) << "op " << i;
    EXPECT_EQ(works[i]->info().seq, static_cast<std::uint64_t>(i));
  }
}

TEST_F(MpiCommunicatorTest, SplitMakesIndependentSubCommunicators) {
  // Even and odd ranks, each group ordered by descending world rank.
  auto sub = comm_->split(rank_ % 2, -rank_);
  ASSERT_NE(sub, nullptr);
  const int group_size = (size_ + 1 - rank_ % 2) / 2;
  EXPECT_EQ(sub->size(), group_size);
  EXPECT_EQ(sub->rank(), group_size - 1 - rank_ / 2);
  EXPECT_EQ(sub->name(), comm_->name() + "/" + std::to_string(rank_ % 2));

  at::Tensor tensor = at::full({10}, static_cast<int64_t>(rank_), at::kLong);
  sub->allreduce(tensor, ReduceOp::kSum)->wait();
  int64_t expected = 0;
  for (int r = rank_ % 2; r < size_; r += 2) expected += r;
  EXPECT_TRUE(at::equal(tensor, at::full({10}, expected, at::kLong)));

  // The parent still works while the child exists, and ranks that opt out get no communicator.
  at::Tensor one = at::ones({3}, at::kInt);
  comm_->allreduce(one, ReduceOp::kSum)->wait();
  EXPECT_TRUE(at::equal(one, at::full({3}, size_, at::kInt)));
  auto only_rank0 = comm_->split(rank_ == 0 ? 0 : -1, 0);
  EXPECT_EQ(only_rank0 == nullptr, rank_ != 0);
}

TEST_F(MpiCommunicatorTest, SendAndReceiveBothWaysAtOnce) {
  const int peer = rank_ ^ 1;
  if (peer >= size_) GTEST_SKIP() << "odd world size";
  // Large enough for MPI's rendezvous protocol: a blocking send in both directions would deadlock.
  const int64_t n = 4 * 1024 * 1024;
  at::Tensor out = at::full({n}, static_cast<double>(rank_ + 1), at::kDouble);
  at::Tensor in = at::zeros({n}, at::kDouble);
  auto sent = comm_->send(out, peer, 7);
  auto received = comm_->recv(in, peer, 7);
  received->wait();
  sent->wait();
  EXPECT_TRUE(at::equal(in, at::full({n}, static_cast<double>(peer + 1), at::kDouble)));
}

TEST_F(MpiCommunicatorTest, ASendKeepsItsTensorAliveUntilTheReceiverHasIt) {
  const int peer = rank_ ^ 1;
  if (peer >= size_) GTEST_SKIP() << "odd world size";
  // The sender drops its only reference at once and allocates more of the same size (which would reuse the freed
  // memory); a rendezvous send reads its buffer only when the receive is posted, here a moment later.
  const int64_t n = 1 << 20;
  comm::WorkPtr sent = comm_->send(at::full({n}, static_cast<float>(rank_ + 1), at::kFloat), peer, 9);
  std::vector<at::Tensor> reuse;
  for (int i = 0; i < 4; ++i) reuse.push_back(at::full({n}, -7.0f, at::kFloat));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  at::Tensor in = at::zeros({n}, at::kFloat);
  comm_->recv(in, peer, 9)->wait();
  sent->wait();
  EXPECT_TRUE(at::equal(in, at::full({n}, static_cast<float>(peer + 1), at::kFloat)));
}

TEST_F(MpiCommunicatorTest, RingOfSendsMatchesByTagInIssueOrder) {
  const int next = (rank_ + 1) % size_;
  const int prev = (rank_ + size_ - 1) % size_;
  std::vector<WorkPtr> works;
  std::vector<at::Tensor> received;
  for (int tag = 0; tag < 5; ++tag) {
    works.push_back(comm_->send(at::full({100}, rank_ * 10 + tag, at::kInt), next, tag));
  }
  for (int tag = 4; tag >= 0; --tag) {  // receive in the opposite tag order: tags, not order, decide the match
    received.push_back(at::zeros({100}, at::kInt));
    works.push_back(comm_->recv(received.back(), prev, tag));
  }
  for (auto& work : works) work->wait();
  for (int k = 0; k < 5; ++k) {
    EXPECT_TRUE(at::equal(received[k], at::full({100}, prev * 10 + (4 - k), at::kInt))) << "tag " << 4 - k;
  }
}

TEST_F(MpiCommunicatorTest, MismatchedCountsGiveAClearErrorOnEveryRank) {
  at::Tensor tensor = at::ones({rank_ == 1 ? 200 : 100}, at::kFloat);
  try {
    comm_->allreduce(tensor, ReduceOp::kSum)->wait();
    FAIL() << "a mismatched allreduce must fail";
  } catch (const CommError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("collective mismatch"), std::string::npos) << message;
    EXPECT_NE(message.find("rank 1 called allreduce #0 (float32 x 200, sum)"), std::string::npos) << message;
    EXPECT_NE(message.find("called allreduce #0 (float32 x 100, sum)"), std::string::npos) << message;
  }
  // The data was not touched, and the communicator refuses further work instead of running out of step.
  EXPECT_TRUE(at::equal(tensor, at::ones({rank_ == 1 ? 200 : 100}, at::kFloat)));
  EXPECT_THROW(comm_->barrier(), CommError);
}

TEST_F(MpiCommunicatorTest, MismatchedCollectiveKindsAreNamed) {
  at::Tensor tensor = at::ones({8}, at::kInt);
  try {
    (rank_ == 0 ? comm_->broadcast(tensor, 0) : comm_->allreduce(tensor, ReduceOp::kMax))->wait();
    FAIL() << "mismatched collectives must fail";
  } catch (const CommError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("rank 0 called broadcast #0 (int32 x 8, root 0)"), std::string::npos) << message;
    EXPECT_NE(message.find("called allreduce #0 (int32 x 8, max)"), std::string::npos) << message;
  }
}

TEST_F(MpiCommunicatorTest, ReceiveOfTheWrongSizeFails) {
  const int peer = rank_ ^ 1;
  if (peer >= size_) GTEST_SKIP() << "odd world size";
  auto second = MpiCommunicator::create(MPI_COMM_WORLD);  // the first failure makes comm_ unusable
  if (rank_ % 2 == 0) {
    comm_->send(at::ones({10}, at::kFloat), peer, 3)->wait();
    second->send(at::ones({10}, at::kFloat), peer, 4)->wait();
    return;
  }
  try {
    comm_->recv(at::zeros({20}, at::kFloat), peer, 3)->wait();
    FAIL() << "a shorter message than expected must fail";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("the matching send had 10 elements, this receive expects 20"),
              std::string::npos)
        << e.what();
  }
  try {
    second->recv(at::zeros({5}, at::kFloat), peer, 4)->wait();
    FAIL() << "a longer message than the buffer must fail";
  } catch (const CommError& e) {
    const std::string op = "recv #0 (float32 x 5 from rank " + std::to_string(peer) + ", tag 4)";
    EXPECT_NE(std::string(e.what()).find(op + " on communicator 'world' rank " + std::to_string(rank_)),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("the matching send is larger than this receive buffer"), std::string::npos)
        << e.what();
  }
}

TEST_F(MpiCommunicatorTest, TimeoutAbortsTheCommunicatorWithTheOpNamed) {
  if (rank_ == 0) {
    at::Tensor never_sent = at::zeros({4}, at::kFloat);
    auto work = comm_->recv(never_sent, 1, 99);
    try {
      work->wait(std::chrono::milliseconds(200));
      FAIL() << "an unmatched receive must time out";
    } catch (const CommTimeout& e) {
      EXPECT_NE(std::string(e.what()).find("recv #0 (float32 x 4 from rank 1, tag 99)"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("did not finish within 200 ms"), std::string::npos) << e.what();
    }
    EXPECT_THROW(comm_->barrier(), CommError);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_F(MpiCommunicatorTest, InvalidCallsAreRejectedBeforeAnyCommunication) {
  at::Tensor tensor = at::ones({6}, at::kInt);
  EXPECT_THROW(comm_->broadcast(tensor, size_), CommError);
  EXPECT_THROW(comm_->allreduce(tensor, ReduceOp::kAvg), CommError);
  EXPECT_THROW(comm_->allgather(at::zeros({6 * size_ + 1}, at::kInt), tensor), CommError);
  EXPECT_THROW(comm_->allgather(at::zeros({6 * size_}, at::kFloat), tensor), CommError);
  EXPECT_THROW(comm_->reduce_scatter(at::zeros({7}, at::kInt), at::zeros({6 * size_}, at::kInt), ReduceOp::kSum),
               CommError);
  EXPECT_THROW(comm_->send(tensor, rank_, 0), CommError);
  EXPECT_THROW(comm_->send(tensor, (rank_ + 1) % size_, -1), CommError);
  if (comm_->max_tag() < std::numeric_limits<int>::max()) {  // Open MPI allows every non-negative int
    EXPECT_THROW(comm_->send(tensor, (rank_ + 1) % size_, comm_->max_tag() + 1), CommError);
  }
  EXPECT_THROW(comm_->allreduce(at::ones({4, 4}, at::kFloat).t(), ReduceOp::kSum), CommError);
  EXPECT_THROW(comm_->allreduce(at::ones({4}, at::kBool), ReduceOp::kSum), CommError);
  // None of them reached the other ranks: the communicator is still in step.
  comm_->allreduce(tensor, ReduceOp::kSum)->wait();
  EXPECT_TRUE(at::equal(tensor, at::full({6}, size_, at::kInt)));
}

TEST(Topology, OneNodeHoldsEveryRank) {
  const Topology t = Topology::discover(MPI_COMM_WORLD);
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(t.world_rank, rank);
  EXPECT_EQ(t.world_size, size);
  EXPECT_EQ(t.local_rank, rank);
  EXPECT_EQ(t.local_size, size);
  EXPECT_EQ(t.node_index, 0);
  EXPECT_EQ(t.node_count, 1);
  EXPECT_FALSE(t.hostname.empty());

  const std::string table = format_rank_table(t, "cpu", MPI_COMM_WORLD);
  if (rank == 0) {
    EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), size + 1) << table;
    EXPECT_NE(table.find(t.hostname), std::string::npos) << table;
    EXPECT_NE(table.find("cpu"), std::string::npos) << table;
  } else {
    EXPECT_TRUE(table.empty());
  }
}

}  // namespace
}  // namespace dtrain::comm
