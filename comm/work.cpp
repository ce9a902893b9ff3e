#include "comm/work.h"

#include "comm/error.h"
#include "comm/watchdog.h"

namespace dtrain::comm {

Work::Work(OpInfo info, std::chrono::milliseconds default_timeout, std::shared_ptr<CommProgress> progress)
    : info_(info), default_timeout_(default_timeout), progress_(std::move(progress)) {}

void Work::wait(std::chrono::milliseconds timeout) {
  if (status() != WorkStatus::kPending) {  // the common case in a well-overlapped step: nothing to watch
    wait_until_finished(timeout);
    return;
  }
  Watchdog::Blocked blocked(*this);
  try {
    wait_until_finished(timeout);
  } catch (const CommTimeout& e) {
    throw CommTimeout(e.what() + Watchdog::explain_timeout(*this));
  }
}

}  // namespace dtrain::comm
