#pragma once
// How patient the watchdog is (Note [Watchdog] in comm/watchdog.h). Apart from watchdog.h so that the analysis
// (comm/watchdog_waits_for.h) needs no MPI header.

#include <chrono>

namespace dtrain::comm {

struct WatchdogOptions {
  // How long a wait must last before the watchdog looks for a deadlock behind it.
  std::chrono::milliseconds deadlock_after{1000};
  // How long a peer has to answer a question before it counts as not answering.
  std::chrono::milliseconds answer_within{2000};
};

}  // namespace dtrain::comm
