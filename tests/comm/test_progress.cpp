// CommProgress: what the watchdog learns about a rank's calls on one communicator (Note [Watchdog]).
#include "comm/progress.h"

#include <gtest/gtest.h>

namespace dtrain::comm {
namespace {

OpInfo collective(OpType type, std::uint64_t seq, std::size_t count) {
  OpInfo info;
  info.type = type;
  info.seq = seq;
  info.count = count;
  return info;
}

OpInfo p2p(OpType type, std::uint64_t seq, int peer) {
  OpInfo info;
  info.type = type;
  info.seq = seq;
  info.peer = peer;
  return info;
}

std::uint64_t history_of(const std::vector<OpInfo>& calls) {
  CommProgress progress(1, "world", 0, {0, 1, 2});
  for (OpInfo info : calls) progress.issued(info);
  return progress.snapshot(-1).history;
}

TEST(CommProgress, CountsCollectivesAndNamesTheLatest) {
  CommProgress progress(7, "world", 0, {0, 1});
  EXPECT_EQ(progress.snapshot(-1).collectives, 0u);
  EXPECT_EQ(progress.snapshot(-1).last_collective, "");
  OpInfo first = collective(OpType::kAllreduce, 0, 10);
  OpInfo second = collective(OpType::kBarrier, 1, 0);
  progress.issued(first);
  progress.issued(second);
  EXPECT_EQ(progress.snapshot(-1).collectives, 2u);
  EXPECT_EQ(progress.snapshot(-1).last_collective, "barrier #1");
}

TEST(CommProgress, NumbersSendsAndReceivesPerPeer) {
  CommProgress progress(7, "pipe", 1, {4, 5, 6});
  std::vector<OpInfo> ops = {p2p(OpType::kSend, 0, 0), p2p(OpType::kSend, 1, 2), p2p(OpType::kSend, 2, 0),
                             p2p(OpType::kRecv, 3, 0)};
  for (OpInfo& op : ops) progress.issued(op);
  EXPECT_EQ(ops[0].peer_seq, 0u);
  EXPECT_EQ(ops[1].peer_seq, 0u);
  EXPECT_EQ(ops[2].peer_seq, 1u);
  EXPECT_EQ(ops[3].peer_seq, 0u);
  EXPECT_EQ(progress.snapshot(0).sends_to, 2u);
  EXPECT_EQ(progress.snapshot(0).recvs_from, 1u);
  EXPECT_EQ(progress.snapshot(2).sends_to, 1u);
  EXPECT_EQ(progress.snapshot(2).recvs_from, 0u);
  EXPECT_EQ(progress.snapshot(0).collectives, 0u);  // point-to-point ops are not collectives
}

TEST(CommProgress, TheFingerprintTellsApartSequencesThatDifferInAnyCall) {
  const std::vector<OpInfo> base = {collective(OpType::kAllreduce, 0, 10), collective(OpType::kAllreduce, 1, 20)};
  EXPECT_EQ(history_of(base), history_of(base));
  EXPECT_NE(history_of(base),
            history_of({collective(OpType::kAllreduce, 0, 10), collective(OpType::kAllreduce, 1, 21)}));
  EXPECT_NE(history_of(base),
            history_of({collective(OpType::kAllreduce, 0, 20), collective(OpType::kAllreduce, 1, 10)}));
  EXPECT_NE(history_of(base),
            history_of({collective(OpType::kAllreduce, 0, 10), collective(OpType::kAllgather, 1, 20)}));
  OpInfo max = collective(OpType::kAllreduce, 1, 20);
  max.op = ReduceOp::kMax;
  EXPECT_NE(history_of(base), history_of({collective(OpType::kAllreduce, 0, 10), max}));
  // Point-to-point ops leave it alone.
  EXPECT_EQ(history_of(base), history_of({base[0], p2p(OpType::kSend, 0, 1), base[1]}));
}

}  // namespace
}  // namespace dtrain::comm
