// The watchdog's analysis (Note [Watchdog]) on made-up jobs: each rank's answers are set by hand, no MPI runs.
#include "comm/watchdog_waits_for.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace dtrain::comm {
namespace {

struct Comm {
  std::uint64_t id;
  std::string name;
  std::vector<int> members;  // world ranks
};

OpInfo allreduce(std::uint64_t seq) {
  OpInfo info;
  info.type = OpType::kAllreduce;
  info.seq = seq;
  info.dtype = DataType::kFloat32;
  info.count = 1000;
  return info;
}

OpInfo recv(std::uint64_t seq, int from, int tag, std::uint64_t peer_seq) {
  OpInfo info;
  info.type = OpType::kRecv;
  info.seq = seq;
  info.dtype = DataType::kFloat32;
  info.count = 1000;
  info.peer = from;
  info.tag = tag;
  info.peer_seq = peer_seq;
  return info;
}

// What one rank has issued on one communicator.
struct Record {
  std::uint64_t collectives = 0;
  std::uint64_t history = 0;
  std::string last_collective;
  std::map<int, std::uint64_t> sends_to;    // by member
  std::map<int, std::uint64_t> recvs_from;  // by member
};

// Answers as the ranks of a job would: a rank is a member of the communicators it has a record on, reports its
// blocked op if it has one, and a silenced rank answers nothing.
class FakeJob final : public RankAsker {
 public:
  Record& record(int world_rank, const Comm& comm) { return records_[{world_rank, comm.id}]; }
  // Member r of `comm` has issued counts[r] collectives (allreduces), with fingerprint histories[r] (0 if none given).
  void issued(const Comm& comm, const std::vector<std::uint64_t>& counts, std::vector<std::uint64_t> histories = {}) {
    histories.resize(counts.size());
    for (std::size_t r = 0; r < counts.size(); ++r) {
      Record& mine = record(comm.members[r], comm);
      mine.collectives = counts[r];
      mine.history = histories[r];
      mine.last_collective = counts[r] == 0 ? "" : allreduce(counts[r] - 1).describe();
    }
  }
  const BlockedOp& block(int world_rank, BlockedOp op) { return blocked_[world_rank] = std::move(op); }
  void silence(int world_rank) { silent_.insert(world_rank); }

  std::optional<Answer> ask(int world_rank, std::uint64_t comm, int about) override {
    if (silent_.count(world_rank)) return std::nullopt;
    Answer answer;
    if (auto it = blocked_.find(world_rank); it != blocked_.end()) answer.blocked = it->second;
    if (auto it = records_.find({world_rank, comm}); it != records_.end()) {
      const Record& r = it->second;
      answer.member = true;
      answer.progress.collectives = r.collectives;
      answer.progress.history = r.history;
      answer.progress.last_collective = r.last_collective;
      answer.progress.sends_to = r.sends_to.count(about) ? r.sends_to.at(about) : 0;
      answer.progress.recvs_from = r.recvs_from.count(about) ? r.recvs_from.at(about) : 0;
    }
    return answer;
  }

 private:
  std::map<std::pair<int, std::uint64_t>, Record> records_;
  std::map<int, BlockedOp> blocked_;
  std::set<int> silent_;
};

BlockedOp blocked(const Comm& comm, int world_rank, OpInfo op, double for_s) {
  BlockedOp b;
  b.comm = comm.id;
  b.comm_name = comm.name;
  b.members = comm.members;
  b.rank = static_cast<int>(std::find(comm.members.begin(), comm.members.end(), world_rank) - comm.members.begin());
  b.op = op;
  b.for_s = for_s;
  return b;
}

const WatchdogOptions kOptions;  // deadlock_after 1 s, answer_within 2 s
const Comm kWorld2{1, "world", {0, 1}};
const Comm kWorld3{1, "world", {0, 1, 2}};
const Comm kWorld4{1, "world", {0, 1, 2, 3}};

// The "skip" scenario of tests/comm/watchdog.py: rank 1 skipped allreduce #1 and waits for a message rank 0 sends
// after it.
FakeJob skipped_collective(double waited_s) {
  FakeJob job;
  job.issued(kWorld2, {2, 1});
  job.block(0, blocked(kWorld2, 0, allreduce(1), waited_s));
  job.record(1, kWorld2).recvs_from[0] = 1;
  job.block(1, blocked(kWorld2, 1, recv(0, 0, 7, 0), waited_s - 0.5));
  return job;
}

TEST(WaitsFor, TwoRanksWaitingForEachOtherAreADeadlock) {
  FakeJob job = skipped_collective(2.0);
  const BlockedOp op = blocked(kWorld2, 0, allreduce(1), 2.0);
  const Verdict verdict = find_deadlock(op, job, kOptions);
  EXPECT_EQ(verdict.message,
            "deadlock, no rank can proceed: rank 0 waits in allreduce #1 (float32 x 1000, sum) on 'world' (for 2.0 s) "
            "for rank 1; rank 1 waits in recv #0 (float32 x 1000 from rank 0, tag 7) on 'world' (for 1.5 s) for rank "
            "0");
  EXPECT_EQ(explain_wait(op, job, kOptions),
            "; rank 1 has not arrived: rank 1 is blocked in recv #0 (float32 x 1000 from rank 0, tag 7) on 'world' for "
            "1.5 s");

  // The watchdog acts on a verdict only when the next probe finds the same one: waiting longer does not change it.
  FakeJob later = skipped_collective(2.25);
  const Verdict again = find_deadlock(blocked(kWorld2, 0, allreduce(1), 2.25), later, kOptions);
  EXPECT_FALSE(verdict.signature.empty());
  EXPECT_EQ(again.signature, verdict.signature);
}

TEST(WaitsFor, ACycleThroughTwoCommunicatorsIsADeadlock) {
  // Rank 1 waits in a collective on 'pair' that rank 2 has not reached; rank 2 waits for a message from rank 0, which
  // waits for one from rank 1.
  const Comm pair{2, "pair", {1, 2}};
  FakeJob job;
  job.issued(pair, {1, 0});
  job.issued(kWorld3, {0, 0, 0});
  job.record(2, kWorld3).recvs_from[0] = 1;
  job.record(0, kWorld3).recvs_from[1] = 1;
  const BlockedOp& op = job.block(1, blocked(pair, 1, allreduce(0), 3.0));
  job.block(2, blocked(kWorld3, 2, recv(0, 0, 5, 0), 2.5));
  job.block(0, blocked(kWorld3, 0, recv(0, 1, 5, 0), 2.0));

  EXPECT_EQ(find_deadlock(op, job, kOptions).message,
            "deadlock, no rank can proceed: rank 1 waits in allreduce #0 (float32 x 1000, sum) on 'pair' (for 3.0 s) "
            "for rank 2; rank 2 waits in recv #0 (float32 x 1000 from rank 0, tag 5) on 'world' (for 2.5 s) for rank "
            "0; rank 0 waits in recv #0 (float32 x 1000 from rank 1, tag 5) on 'world' (for 2.0 s) for rank 1");
}

TEST(WaitsFor, ARankThatDoesNotAnswerIsNamed) {
  // Rank 1 has arrived, rank 2 computes, rank 3 is gone.
  FakeJob job;
  job.issued(kWorld4, {2, 2, 1, 0});
  job.silence(3);
  const BlockedOp& op = job.block(0, blocked(kWorld4, 0, allreduce(1), 2.0));

  const Verdict verdict = find_deadlock(op, job, kOptions);
  EXPECT_EQ(verdict.message,
            "rank 3 does not answer (died, or hangs outside MPI) while rank 0 waits for it in allreduce #1 (float32 x "
            "1000, sum) on 'world'");
  EXPECT_EQ(verdict.signature, "silent rank 3");
  EXPECT_EQ(explain_wait(op, job, kOptions),
            "; ranks 2,3 have not arrived: rank 2 is not waiting on any communication (computing, or stuck outside "
            "dtrain); its last collective on 'world' was allreduce #0 (float32 x 1000, sum); rank 3 did not answer "
            "within 2000 ms (it has died, or hangs outside MPI)");

  job.silence(2);
  EXPECT_EQ(find_deadlock(op, job, kOptions).message,
            "ranks 2,3 do not answer (died, or hangs outside MPI) while rank 0 waits for them in allreduce #1 (float32 "
            "x 1000, sum) on 'world'");
}

TEST(WaitsFor, ATimeoutNamesTheRankThatComputes) {
  // The "timeout" scenario: rank 1 computes past the others' deadline.
  FakeJob job;
  job.issued(kWorld2, {2, 1});
  const BlockedOp& op = job.block(0, blocked(kWorld2, 0, allreduce(1), 1.5));
  EXPECT_EQ(explain_wait(op, job, kOptions),
            "; rank 1 has not arrived: rank 1 is not waiting on any communication (computing, or stuck outside "
            "dtrain); its last collective on 'world' was allreduce #0 (float32 x 1000, sum)");
  EXPECT_EQ(find_deadlock(op, job, kOptions).message, "");  // it may yet arrive

  FakeJob fresh;
  fresh.issued(kWorld2, {1, 0});
  EXPECT_EQ(explain_wait(fresh.block(0, blocked(kWorld2, 0, allreduce(0), 1.5)), fresh, kOptions),
            "; rank 1 has not arrived: rank 1 is not waiting on any communication (computing, or stuck outside "
            "dtrain); it has issued no collective on 'world'");
}

TEST(WaitsFor, ATimeoutWhereAllArrivedComparesTheHistories) {
  // Every rank has issued allreduce #1, but rank 1 called a different sequence up to it.
  FakeJob job;
  job.issued(kWorld3, {2, 2, 2}, {0xabc, 0x123, 0xabc});
  const BlockedOp& op = job.block(0, blocked(kWorld3, 0, allreduce(1), 1.5));
  EXPECT_EQ(explain_wait(op, job, kOptions),
            "; every rank it waits for has issued its side of it, but the ranks called different sequences of "
            "collectives up to #1: rank 1 with fingerprint 0000000000000123; ranks 0,2 with fingerprint "
            "0000000000000abc (the network or the MPI library is stuck)");
  EXPECT_EQ(find_deadlock(op, job, kOptions).message, "");  // everyone has issued their side: the wait may end

  job.record(1, kWorld3).history = 0xabc;
  EXPECT_EQ(explain_wait(op, job, kOptions),
            "; every rank it waits for has issued its side of it (the network or the MPI library is stuck)");
}

TEST(WaitsFor, AChainEndingAtARankThatMayStillMoveIsNoDeadlock) {
  // Rank 0 waits for a message from rank 1, which waits for one from rank 2, which computes.
  FakeJob job;
  job.issued(kWorld3, {0, 0, 0});
  job.record(0, kWorld3).recvs_from[1] = 1;
  job.record(1, kWorld3).recvs_from[2] = 1;
  const BlockedOp& op = job.block(0, blocked(kWorld3, 0, recv(0, 1, 5, 0), 3.0));
  job.block(1, blocked(kWorld3, 1, recv(0, 2, 5, 0), 3.0));
  EXPECT_EQ(find_deadlock(op, job, kOptions).message, "");

  // Blocked for less than deadlock_after, rank 2 may be between two steps of its own.
  job.block(2, blocked(kWorld3, 2, allreduce(0), 0.4));
  EXPECT_EQ(find_deadlock(op, job, kOptions).message, "");

  // Once it is blocked for longer, nothing moves.
  job.block(2, blocked(kWorld3, 2, allreduce(0), 1.2));
  EXPECT_EQ(find_deadlock(op, job, kOptions).message,
            "deadlock, no rank can proceed: rank 0 waits in recv #0 (float32 x 1000 from rank 1, tag 5) on 'world' "
            "(for 3.0 s) for rank 1; rank 1 waits in recv #0 (float32 x 1000 from rank 2, tag 5) on 'world' (for 3.0 "
            "s) for rank 2; rank 2 waits in allreduce #0 (float32 x 1000, sum) on 'world' (for 1.2 s) for ranks 0,1");
}

}  // namespace
}  // namespace dtrain::comm
