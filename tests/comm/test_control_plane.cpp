// The control plane at 2 and 4 ranks: every agreement and exchange gives its exact result on every rank, its splits
// and for_group keep the data communicator's rank order, and point-to-point text and values arrive in order.

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "comm/control_plane.h"
#include "comm/error.h"
#include "comm/mpi_communicator.h"

namespace dtrain::comm {
namespace {

class ControlPlaneTest : public testing::Test {
 protected:
  void SetUp() override {
    control_ = ControlPlane::create(MPI_COMM_WORLD);
    rank_ = control_->rank();
    size_ = control_->size();
  }
  std::unique_ptr<ControlPlane> control_;
  int rank_ = 0;
  int size_ = 1;
};

TEST_F(ControlPlaneTest, AgreementsGiveTheSameAnswerOnEveryRank) {
  EXPECT_TRUE(control_->any(rank_ == size_ - 1));
  EXPECT_FALSE(control_->any(false));
  EXPECT_TRUE(control_->same_everywhere(0x8000000000000001ULL));  // values above INT64_MAX too
  EXPECT_FALSE(control_->same_everywhere(rank_ == 1 ? 7 : 8));
  EXPECT_EQ(control_->min(std::int64_t{10} - rank_), 10 - (size_ - 1));
  EXPECT_EQ(control_->max(std::int64_t{10} - rank_), 10);
  EXPECT_EQ(control_->max(0.5 * rank_), 0.5 * (size_ - 1));
  EXPECT_EQ(control_->sum(std::int64_t{1} << (rank_ + 40)), ((std::int64_t{1} << size_) - 1) << 40);
  // Element-wise: rank r contributes (r, 2r + 0.25); sums of distinct values that a wrong offset would break.
  const std::vector<double> sums = control_->sum({static_cast<double>(rank_), 2.0 * rank_ + 0.25});
  const double ranks = size_ * (size_ - 1) / 2.0;
  EXPECT_EQ(sums, (std::vector<double>{ranks, 2 * ranks + 0.25 * size_}));
  EXPECT_EQ(control_->min(std::vector<std::int64_t>{rank_, -rank_}), (std::vector<std::int64_t>{0, -(size_ - 1)}));
}

// What every rank throws, or "" if nothing was thrown.
std::string agreed(ControlPlane& control, const std::string& problem, int* plane_size = nullptr) {
  try {
    control.raise_if_any_failed(problem);
  } catch (const AgreedError& e) {
    if (plane_size != nullptr) *plane_size = e.plane_size();
    return std::string(e.what()) + " | " + e.where();
  }
  return "";
}

TEST_F(ControlPlaneTest, AFailureOnSomeRanksIsRaisedOnEveryRankWithTheLowestFailingRanksMessage) {
  EXPECT_EQ(agreed(*control_, ""), "");
  EXPECT_EQ(agreed(*control_, rank_ == size_ - 1 ? "disk full" : ""),
            "disk full | on rank " + std::to_string(size_ - 1));
  // Ranks 1.. fail with their own messages: rank 1's is the one every rank raises.
  const std::string expected = size_ == 2
                                   ? "rank 1 failed | on rank 1"
                                   : "rank 1 failed | on rank 1 and " + std::to_string(size_ - 2) + " other ranks";
  EXPECT_EQ(agreed(*control_, rank_ >= 1 ? "rank " + std::to_string(rank_) + " failed" : ""), expected);
  int plane_size = 0;
  EXPECT_EQ(agreed(*control_, "same", &plane_size), "same | on all " + std::to_string(size_) + " ranks");
  EXPECT_EQ(plane_size, size_);
}

TEST_F(ControlPlaneTest, BroadcastsAndGathersCarryExactValues) {
  const int root = size_ - 1;
  EXPECT_EQ(control_->broadcast(rank_ == root ? std::string("from the root\n\0x", 16) : "", root),
            std::string("from the root\n\0x", 16));
  EXPECT_EQ(control_->broadcast(std::vector<std::int64_t>{rank_, 100 + rank_}, root),
            (std::vector<std::int64_t>{root, 100 + root}));
  EXPECT_EQ(control_->broadcast(std::vector<double>{rank_ + 0.5}, 0), (std::vector<double>{0.5}));
  std::vector<std::int64_t> expected;
  std::vector<std::uint8_t> expected_bytes;
  std::vector<double> expected_values;
  for (int r = 0; r < size_; ++r) {
    expected.insert(expected.end(), {r, -r, 1000 * r});
    expected_bytes.insert(expected_bytes.end(), {static_cast<std::uint8_t>(r), static_cast<std::uint8_t>(255 - r)});
    expected_values.push_back(r * 1.5);
  }
  EXPECT_EQ(control_->allgather(std::vector<std::int64_t>{rank_, -rank_, 1000 * rank_}), expected);
  EXPECT_EQ(control_->allgather(
                std::vector<std::uint8_t>{static_cast<std::uint8_t>(rank_), static_cast<std::uint8_t>(255 - rank_)}),
            expected_bytes);
  EXPECT_EQ(control_->allgather_value(rank_ * 1.5), expected_values);
}

TEST_F(ControlPlaneTest, SplitsAndForGroupKeepTheDataCommunicatorsRankOrder) {
  // Reversed order within two colours, as a data communicator would be split.
  auto data = MpiCommunicator::create(MPI_COMM_WORLD);
  auto data_part = data->split(rank_ % 2, size_ - rank_, "part");
  auto control_part = control_->split(rank_ % 2, size_ - rank_, "part-control");
  ASSERT_NE(control_part, nullptr);
  EXPECT_EQ(control_part->rank(), data_part->rank());
  EXPECT_EQ(control_part->size(), data_part->size());
  auto derived = ControlPlane::for_group(*data_part);
  EXPECT_EQ(derived->rank(), data_part->rank());
  EXPECT_EQ(derived->name(), "part-control");
  // The members agree on who is who: each part's rank 0 is the world rank with the largest key.
  const std::vector<std::int64_t> world_ranks = derived->allgather(std::vector<std::int64_t>{rank_});
  EXPECT_EQ(world_ranks[derived->rank()], rank_);
  EXPECT_EQ(control_->split(-1, 0, "none"), nullptr);
}

TEST_F(ControlPlaneTest, PointToPointArrivesInOrder) {
  // A ring: each rank sends to the next and receives from the previous, values then text.
  const int next = (rank_ + 1) % size_, previous = (rank_ + size_ - 1) % size_;
  WorkPtr first = control_->send({rank_, 1}, next, 3);
  WorkPtr second = control_->send({rank_, 2}, next, 3);
  EXPECT_EQ(control_->recv(2, previous, 3), (std::vector<std::int64_t>{previous, 1}));
  EXPECT_EQ(control_->recv(2, previous, 3), (std::vector<std::int64_t>{previous, 2}));
  first->wait();
  second->wait();
  if (rank_ % 2 == 0) {
    control_->send_text("rank " + std::to_string(rank_), next, 4);
    EXPECT_EQ(control_->recv_text(previous, 4), "rank " + std::to_string(previous));
  } else {
    const std::string text = control_->recv_text(previous, 4);
    control_->send_text("rank " + std::to_string(rank_), next, 4);
    EXPECT_EQ(text, "rank " + std::to_string(previous));
  }
}

}  // namespace
}  // namespace dtrain::comm
