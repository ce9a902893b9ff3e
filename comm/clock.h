#pragma once
// The one clock dtrain measures durations with (steady: never jumps with the wall clock).

#include <chrono>

namespace dtrain::comm {

using SteadyClock = std::chrono::steady_clock;

inline double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

}  // namespace dtrain::comm
