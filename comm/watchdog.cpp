#include "comm/watchdog.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "comm/clock.h"
#include "comm/mpi_check.h"
#include "comm/watchdog_channel.h"
#include "comm/watchdog_comm_id.h"
#include "comm/watchdog_waits_for.h"
#include "comm/work.h"

namespace dtrain::comm {

namespace {

// The watchdog thread looks for questions this often; it costs one MPI_Iprobe per tick.
constexpr auto kTick = std::chrono::milliseconds(10);
// How often a long wait is re-examined for a deadlock (a verdict must be the same twice in a row).
constexpr auto kProbeEvery = std::chrono::milliseconds(250);

class WatchdogState {
 public:
  WatchdogState(MPI_Comm channel, int world_rank, WatchdogOptions options)
      : world_rank_(world_rank),
        options_(options),
        channel_(channel, world_rank, options.answer_within,
                 [this](std::uint64_t comm, int about) { return local_answer(comm, about); }) {}

  void start() {
    thread_ = std::thread([this] { run(); });
  }

  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }

  void track(const std::shared_ptr<CommProgress>& progress) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = comms_.begin(); it != comms_.end();) {  // forget communicators that are gone
      it = it->second.expired() ? comms_.erase(it) : std::next(it);
    }
    comms_[progress->id()] = progress;
  }

  void block(Work* work) {
    std::lock_guard<std::mutex> lock(mutex_);
    blocked_.push_back({work, SteadyClock::now()});
  }

  void unblock(Work* work) {
    std::lock_guard<std::mutex> lock(mutex_);
    blocked_.erase(std::find_if(blocked_.begin(), blocked_.end(), [&](const Entry& e) { return e.work == work; }));
  }

  std::string explain_timeout(const Work& work) {
    Request request{blocked_op(work, SteadyClock::now()), {}};
    std::future<std::string> reply = request.reply.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(std::move(request));
    }
    const auto limit = 2 * options_.answer_within + std::chrono::seconds(1);
    if (reply.wait_for(limit) != std::future_status::ready) return "; the watchdog could not ask the peers in time";
    return reply.get();
  }

 private:
  struct Entry {
    Work* work;
    SteadyClock::time_point since;
  };
  struct Request {
    BlockedOp op;
    std::promise<std::string> reply;
  };

  static BlockedOp blocked_op(const Work& work, SteadyClock::time_point since) {
    BlockedOp b;
    b.comm = work.progress().id();
    b.comm_name = work.progress().name();
    b.members = work.progress().world_ranks();
    b.rank = work.progress().rank();
    b.op = work.info();
    b.for_s = seconds_since(since);
    return b;
  }

  void run() {
    try {
      auto next_probe = SteadyClock::now();
      while (!stopping_) {
        channel_.serve();
        answer_requests();
        if (SteadyClock::now() >= next_probe) {
          probe();
          next_probe = SteadyClock::now() + kProbeEvery;
        }
        std::this_thread::sleep_for(kTick);
      }
    } catch (const std::exception& e) {
      // The job goes on unwatched rather than stopping for the watchdog's own failure.
      std::fprintf(stderr, "dtrain: watchdog on rank %d stopped: %s\n", world_rank_, e.what());
    }
  }

  // What this rank tells a peer that asks about communicator `comm` (point-to-point counts towards member `about`).
  Answer local_answer(std::uint64_t comm, int about) {
    std::lock_guard<std::mutex> lock(mutex_);
    Answer answer;
    if (auto it = comms_.find(comm); it != comms_.end()) {
      if (auto progress = it->second.lock()) {
        answer.member = true;
        answer.progress = progress->snapshot(about);
      }
    }
    const Entry* oldest = nullptr;
    for (const Entry& e : blocked_) {
      if (oldest == nullptr || e.since < oldest->since) oldest = &e;
    }
    if (oldest != nullptr) answer.blocked = blocked_op(*oldest->work, oldest->since);
    return answer;
  }

  void answer_requests() {
    std::deque<Request> requests;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests.swap(requests_);
    }
    for (Request& r : requests) r.reply.set_value(explain_wait(r.op, channel_, options_));
  }

  // Looks behind this rank's longest wait for a deadlock, and abandons every wait once the same one is found twice in
  // a row (a verdict drawn from answers given at different times could see a state that never was).
  void probe() {
    std::optional<BlockedOp> longest;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const Entry& e : blocked_) {
        if (SteadyClock::now() - e.since < options_.deadlock_after) continue;
        if (!longest || seconds_since(e.since) > longest->for_s) longest = blocked_op(*e.work, e.since);
      }
    }
    if (!longest) {
      last_signature_.clear();
      return;
    }
    const Verdict verdict = find_deadlock(*longest, channel_, options_);
    if (verdict.message.empty() || verdict.signature != last_signature_) {
      last_signature_ = verdict.signature;
      return;
    }
    last_signature_.clear();
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Entry& e : blocked_) {
      e.work->abandon(fmt::format("{} on communicator '{}' rank {}: the watchdog stopped waiting: {}",
                                  e.work->info().describe(), e.work->progress().name(), e.work->progress().rank(),
                                  verdict.message));
    }
  }

  const int world_rank_;
  const WatchdogOptions options_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  std::mutex mutex_;  // guards comms_, blocked_ and requests_
  std::map<std::uint64_t, std::weak_ptr<CommProgress>> comms_;
  std::vector<Entry> blocked_;
  std::deque<Request> requests_;

  // Used by the watchdog thread only.
  WatchdogChannel channel_;
  std::string last_signature_;
};

std::atomic<WatchdogState*> g_watchdog{nullptr};

}  // namespace

void Watchdog::start(WatchdogOptions options) {
  if (g_watchdog.load() != nullptr) return;
  MPI_Comm channel = MPI_COMM_NULL;
  DTRAIN_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &channel), "starting the watchdog");
  DTRAIN_MPI_CHECK(MPI_Comm_set_errhandler(channel, MPI_ERRORS_RETURN), "starting the watchdog");
  int rank = 0;
  DTRAIN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "starting the watchdog");
  auto* state = new WatchdogState(channel, rank, options);
  state->start();
  g_watchdog.store(state);
}

void Watchdog::stop() {
  WatchdogState* state = g_watchdog.exchange(nullptr);
  if (state == nullptr) return;
  state->stop();
  delete state;
}

std::shared_ptr<CommProgress> Watchdog::track(MPI_Comm comm, const std::string& name) {
  auto progress = make_comm_progress(comm, name);
  if (WatchdogState* state = g_watchdog.load()) state->track(progress);
  return progress;
}

Watchdog::Blocked::Blocked(Work& work) : work_(&work) {
  if (WatchdogState* state = g_watchdog.load()) {
    state->block(work_);
    registered_ = true;
  }
}

Watchdog::Blocked::~Blocked() {
  if (!registered_) return;
  if (WatchdogState* state = g_watchdog.load()) state->unblock(work_);
}

std::string Watchdog::explain_timeout(const Work& work) {
  WatchdogState* state = g_watchdog.load();
  return state == nullptr ? "" : state->explain_timeout(work);
}

}  // namespace dtrain::comm
