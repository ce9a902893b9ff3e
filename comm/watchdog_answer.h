#pragma once
// What the watchdogs tell each other (Note [Watchdog] in comm/watchdog.h): the op a rank is blocked on and a rank's
// answer about one communicator. Plain values, so that the analysis (comm/watchdog_waits_for.h) can be fed answers
// without MPI, and the encoding (comm/watchdog_json.h) is the only code that knows their wire form.

#include <fmt/format.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "comm/progress.h"
#include "comm/types.h"

namespace dtrain::comm {

// The op a thread of some rank is blocked on, as that rank describes it.
struct BlockedOp {
  std::uint64_t comm = 0;
  std::string comm_name;
  std::vector<int> members;  // world rank of each member of the communicator
  int rank = 0;              // the blocked rank's rank in that communicator
  OpInfo op;
  double for_s = 0;

  int world_rank() const { return members[static_cast<std::size_t>(rank)]; }
  std::string describe() const { return fmt::format("{} on '{}'", op.describe(), comm_name); }
};

// One rank's answer to "what have you done on communicator c?".
struct Answer {
  bool member = false;
  ProgressSnapshot progress;
  std::optional<BlockedOp> blocked;  // the rank's longest current wait, on any communicator
};

}  // namespace dtrain::comm
