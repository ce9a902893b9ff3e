#pragma once
// The watchdog's reasoning (Note [Watchdog] in comm/watchdog.h), apart from how it asks: whom a blocked op waits for,
// whether the waits-for graph behind it is a deadlock, and what to say when a wait times out. The ranks' answers come
// through RankAsker, so this runs without MPI (tests/comm/test_waits_for.cpp feeds it made-up jobs).

#include <cstdint>
#include <optional>
#include <string>

#include "comm/watchdog_answer.h"
#include "comm/watchdog_options.h"

namespace dtrain::comm {

class RankAsker {
 public:
  virtual ~RankAsker() = default;
  // World rank `world_rank`'s answer about communicator `comm`, with its point-to-point counts towards member `about`
  // (-1: none); nullopt when it did not answer within WatchdogOptions::answer_within.
  virtual std::optional<Answer> ask(int world_rank, std::uint64_t comm, int about) = 0;
};

struct Verdict {
  std::string message;    // "" when the wait may still end
  std::string signature;  // identifies the situation, to confirm it on the next probe
};

// Why `op`, which timed out on its rank, has not finished: "; rank 1 has not arrived: rank 1 is ...", or, when every
// rank it waits for has issued its side, that (with the members' differing collective histories, if they differ).
std::string explain_wait(const BlockedOp& op, RankAsker& ranks, const WatchdogOptions& options);

// Follows the waits-for graph from `start`: a deadlock when every rank reached is blocked in communication for at least
// deadlock_after, a rank that does not answer; an empty verdict while some rank reached may still move.
Verdict find_deadlock(const BlockedOp& start, RankAsker& ranks, const WatchdogOptions& options);

}  // namespace dtrain::comm
