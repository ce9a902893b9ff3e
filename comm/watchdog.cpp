#include "comm/watchdog.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "comm/error.h"
#include "comm/mpi_check.h"
#include "comm/work.h"

namespace dtrain::comm {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kQueryTag = 1;
constexpr int kAnswerTag = 2;
// The watchdog thread looks for questions this often; it costs one MPI_Iprobe per tick.
constexpr auto kTick = std::chrono::milliseconds(10);
// How often a long wait is re-examined for a deadlock (a verdict must be the same twice in a row).
constexpr auto kProbeEvery = std::chrono::milliseconds(250);

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

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

nlohmann::json to_json(const BlockedOp& b) {
  return {{"comm", b.comm},
          {"name", b.comm_name},
          {"members", b.members},
          {"rank", b.rank},
          {"type", static_cast<int>(b.op.type)},
          {"seq", b.op.seq},
          {"dtype", static_cast<int>(b.op.dtype)},
          {"count", b.op.count},
          {"op", static_cast<int>(b.op.op)},
          {"peer", b.op.peer},
          {"tag", b.op.tag},
          {"peer_seq", b.op.peer_seq},
          {"for_s", b.for_s}};
}

BlockedOp blocked_from_json(const nlohmann::json& j) {
  BlockedOp b;
  b.comm = j.at("comm").get<std::uint64_t>();
  b.comm_name = j.at("name").get<std::string>();
  b.members = j.at("members").get<std::vector<int>>();
  b.rank = j.at("rank").get<int>();
  b.op.type = static_cast<OpType>(j.at("type").get<int>());
  b.op.seq = j.at("seq").get<std::uint64_t>();
  b.op.dtype = static_cast<DataType>(j.at("dtype").get<int>());
  b.op.count = j.at("count").get<std::size_t>();
  b.op.op = static_cast<ReduceOp>(j.at("op").get<int>());
  b.op.peer = j.at("peer").get<int>();
  b.op.tag = j.at("tag").get<int>();
  b.op.peer_seq = j.at("peer_seq").get<std::uint64_t>();
  b.for_s = j.at("for_s").get<double>();
  return b;
}

std::string join(const std::vector<std::string>& parts, const char* separator) {
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : separator) + part;
  return out;
}

std::string format_ranks(const std::vector<int>& ranks) {
  std::vector<std::string> parts;
  for (int r : ranks) parts.push_back(std::to_string(r));
  return (ranks.size() == 1 ? "rank " : "ranks ") + join(parts, ",");
}

// Whom a blocked op waits for, found by asking them, with their answers.
struct Waits {
  std::vector<int> ranks;   // world ranks that have not issued their side of the op
  std::vector<int> silent;  // world ranks that did not answer
  std::map<int, Answer> answers;
};

struct Verdict {
  std::string message;    // "" when the wait may still end
  std::string signature;  // identifies the situation, to confirm it on the next probe
};

class WatchdogState {
 public:
  WatchdogState(MPI_Comm channel, int world_rank, WatchdogOptions options)
      : channel_(channel), world_rank_(world_rank), options_(options) {}

  void start() {
    thread_ = std::thread([this] { run(); });
  }

  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    for (auto& send : sends_) MPI_Request_free(&send.request);
    MPI_Comm_free(&channel_);
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
    blocked_.push_back({work, Clock::now()});
  }

  void unblock(Work* work) {
    std::lock_guard<std::mutex> lock(mutex_);
    blocked_.erase(std::find_if(blocked_.begin(), blocked_.end(), [&](const Entry& e) { return e.work == work; }));
  }

  std::string explain_timeout(const Work& work) {
    Request request{blocked_op(work, Clock::now()), {}};
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
    Clock::time_point since;
  };
  struct Request {
    BlockedOp op;
    std::promise<std::string> reply;
  };
  struct PendingSend {
    std::shared_ptr<std::vector<char>> bytes;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  static BlockedOp blocked_op(const Work& work, Clock::time_point since) {
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
      auto next_probe = Clock::now();
      while (!stopping_) {
        serve();
        answer_requests();
        if (Clock::now() >= next_probe) {
          probe();
          next_probe = Clock::now() + kProbeEvery;
        }
        std::this_thread::sleep_for(kTick);
      }
    } catch (const std::exception& e) {
      // The job goes on unwatched rather than stopping for the watchdog's own failure.
      std::fprintf(stderr, "dtrain: watchdog on rank %d stopped: %s\n", world_rank_, e.what());
    }
  }

  // --- answering peers -------------------------------------------------------------------------------------------

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

  void send_async(int dest, int tag, std::vector<char> bytes) {
    PendingSend send{std::make_shared<std::vector<char>>(std::move(bytes))};
    DTRAIN_MPI_CHECK(MPI_Isend(send.bytes->data(), static_cast<int>(send.bytes->size()), MPI_CHAR, dest, tag, channel_,
                               &send.request),
                     fmt::format("watchdog sending to rank {}", dest));
    sends_.push_back(std::move(send));
  }

  void reap_sends() {
    while (!sends_.empty()) {
      int done = 0;
      DTRAIN_MPI_CHECK(MPI_Test(&sends_.front().request, &done, MPI_STATUS_IGNORE), "watchdog send");
      if (!done) return;
      sends_.pop_front();
    }
  }

  std::optional<std::vector<char>> receive_if_any(int source, int tag, int* from) {
    int flag = 0;
    MPI_Status status;
    DTRAIN_MPI_CHECK(MPI_Iprobe(source, tag, channel_, &flag, &status), "watchdog probing for messages");
    if (!flag) return std::nullopt;
    int size = 0;
    DTRAIN_MPI_CHECK(MPI_Get_count(&status, MPI_CHAR, &size), "watchdog message size");
    std::vector<char> bytes(static_cast<std::size_t>(size));
    DTRAIN_MPI_CHECK(MPI_Recv(bytes.data(), size, MPI_CHAR, status.MPI_SOURCE, tag, channel_, MPI_STATUS_IGNORE),
                     fmt::format("watchdog receiving from rank {}", status.MPI_SOURCE));
    *from = status.MPI_SOURCE;
    return bytes;
  }

  void serve() {
    reap_sends();
    int from = -1;
    while (auto bytes = receive_if_any(MPI_ANY_SOURCE, kQueryTag, &from)) {
      const auto query = nlohmann::json::parse(bytes->begin(), bytes->end());
      const Answer a = local_answer(query.at("comm").get<std::uint64_t>(), query.at("about").get<int>());
      nlohmann::json reply = {{"qid", query.at("qid")},
                              {"member", a.member},
                              {"collectives", a.progress.collectives},
                              {"history", a.progress.history},
                              {"last", a.progress.last_collective},
                              {"sends_to", a.progress.sends_to},
                              {"recvs_from", a.progress.recvs_from}};
      if (a.blocked) reply["blocked"] = to_json(*a.blocked);
      const std::string text = reply.dump();
      send_async(from, kAnswerTag, std::vector<char>(text.begin(), text.end()));
    }
  }

  // Asks world rank `rank` about communicator `comm` (point-to-point counts towards member `about`), serving others'
  // questions while it waits, so two watchdogs asking each other never block.
  std::optional<Answer> ask(int rank, std::uint64_t comm, int about) {
    if (rank == world_rank_) return local_answer(comm, about);
    const std::uint64_t qid = ++last_qid_;
    const std::string text = nlohmann::json{{"qid", qid}, {"comm", comm}, {"about", about}}.dump();
    send_async(rank, kQueryTag, std::vector<char>(text.begin(), text.end()));
    const auto deadline = Clock::now() + options_.answer_within;
    while (Clock::now() < deadline) {
      int from = -1;
      if (auto bytes = receive_if_any(rank, kAnswerTag, &from)) {
        const auto reply = nlohmann::json::parse(bytes->begin(), bytes->end());
        if (reply.at("qid").get<std::uint64_t>() != qid) continue;  // a late answer to an earlier question
        Answer a;
        a.member = reply.at("member").get<bool>();
        a.progress.collectives = reply.at("collectives").get<std::uint64_t>();
        a.progress.history = reply.at("history").get<std::uint64_t>();
        a.progress.last_collective = reply.at("last").get<std::string>();
        a.progress.sends_to = reply.at("sends_to").get<std::uint64_t>();
        a.progress.recvs_from = reply.at("recvs_from").get<std::uint64_t>();
        if (reply.contains("blocked")) a.blocked = blocked_from_json(reply.at("blocked"));
        return a;
      }
      serve();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return std::nullopt;
  }

  // --- analysis ----------------------------------------------------------------------------------------------------

  Waits waits_of(const BlockedOp& b) {
    Waits waits;
    auto consider = [&](int member, int about, auto has_arrived) {
      const int rank = b.members[static_cast<std::size_t>(member)];
      std::optional<Answer> a = ask(rank, b.comm, about);
      if (!a) {
        waits.silent.push_back(rank);
        return;
      }
      if (!a->member || !has_arrived(a->progress)) waits.ranks.push_back(rank);
      waits.answers[rank] = std::move(*a);
    };
    switch (b.op.type) {
      case OpType::kSend:
        consider(b.op.peer, b.rank, [&](const ProgressSnapshot& p) { return p.recvs_from > b.op.peer_seq; });
        break;
      case OpType::kRecv:
        consider(b.op.peer, b.rank, [&](const ProgressSnapshot& p) { return p.sends_to > b.op.peer_seq; });
        break;
      default:
        for (int member = 0; member < static_cast<int>(b.members.size()); ++member) {
          if (member == b.rank) continue;
          consider(member, -1, [&](const ProgressSnapshot& p) { return p.collectives > b.op.seq; });
        }
    }
    return waits;
  }

  std::string state_of(int rank, const Answer& a, const BlockedOp& about) const {
    if (a.blocked) {
      return fmt::format("rank {} is blocked in {} for {:.1f} s", rank, a.blocked->describe(), a.blocked->for_s);
    }
    const std::string last =
        a.progress.last_collective.empty()
            ? fmt::format("it has issued no collective on '{}'", about.comm_name)
            : fmt::format("its last collective on '{}' was {}", about.comm_name, a.progress.last_collective);
    return fmt::format("rank {} is not waiting on any communication (computing, or stuck outside dtrain); {}", rank,
                       last);
  }

  std::string explain(const BlockedOp& b) {
    Waits waits = waits_of(b);
    std::vector<std::string> parts;
    for (int rank : waits.ranks) parts.push_back(state_of(rank, waits.answers.at(rank), b));
    for (int rank : waits.silent) {
      parts.push_back(fmt::format("rank {} did not answer within {} ms (it has died, or hangs outside MPI)", rank,
                                  options_.answer_within.count()));
    }
    if (!parts.empty()) {
      std::vector<int> missing = waits.ranks;
      missing.insert(missing.end(), waits.silent.begin(), waits.silent.end());
      std::sort(missing.begin(), missing.end());
      return fmt::format("; {} {} not arrived: {}", format_ranks(missing), missing.size() == 1 ? "has" : "have",
                         join(parts, "; "));
    }
    return "; every rank it waits for has issued its side of it" + compare_histories(b, waits) +
           " (the network or the MPI library is stuck)";
  }

  // For a collective every member has reached: whether the members' running fingerprints of their collectives agree.
  // With CommOptions::verify_calls off, a rank that called a different sequence of collectives shows only here.
  std::string compare_histories(const BlockedOp& b, Waits& waits) {
    if (b.op.type == OpType::kSend || b.op.type == OpType::kRecv) return "";
    waits.answers[world_rank_] = local_answer(b.comm, -1);
    // Fingerprints compare only at the same count: a rank that has already issued later collectives differs anyway.
    std::map<std::uint64_t, std::vector<int>> ranks_by_history;
    for (const auto& [rank, answer] : waits.answers) {
      if (answer.progress.collectives != b.op.seq + 1) return "";
      ranks_by_history[answer.progress.history].push_back(rank);
    }
    if (ranks_by_history.size() == 1) return "";
    std::vector<std::string> groups;
    for (const auto& [history, ranks] : ranks_by_history) {
      groups.push_back(fmt::format("{} with fingerprint {:016x}", format_ranks(ranks), history));
    }
    return fmt::format(", but the ranks called different sequences of collectives up to #{}: {}", b.op.seq,
                       join(groups, "; "));
  }

  // Follows the waits-for graph from `start` (see Note [Watchdog]).
  Verdict follow(const BlockedOp& start) {
    std::map<int, BlockedOp> visited{{start.world_rank(), start}};
    std::deque<BlockedOp> frontier{start};
    std::vector<std::string> lines;
    std::string signature;
    while (!frontier.empty()) {
      const BlockedOp b = frontier.front();
      frontier.pop_front();
      Waits waits = waits_of(b);
      if (!waits.silent.empty()) {
        return {fmt::format("{} {} not answer (died, or hangs outside MPI) while rank {} waits for {} in {}",
                            format_ranks(waits.silent), waits.silent.size() == 1 ? "does" : "do", b.world_rank(),
                            waits.silent.size() == 1 ? "it" : "them", b.describe()),
                "silent " + format_ranks(waits.silent)};
      }
      if (waits.ranks.empty()) return {};  // everyone has issued their side: this wait will end
      lines.push_back(fmt::format("rank {} waits in {} (for {:.1f} s) for {}", b.world_rank(), b.describe(), b.for_s,
                                  format_ranks(waits.ranks)));
      signature +=
          fmt::format("{}:{}:{}:{}:{};", b.world_rank(), b.comm, static_cast<int>(b.op.type), b.op.seq, b.op.peer_seq);
      for (int rank : waits.ranks) {
        if (visited.count(rank)) continue;
        const Answer& a = waits.answers.at(rank);
        const double threshold = std::chrono::duration<double>(options_.deadlock_after).count();
        if (!a.blocked || a.blocked->for_s < threshold) return {};  // it computes: it may yet arrive
        visited.emplace(rank, *a.blocked);
        frontier.push_back(*a.blocked);
      }
    }
    return {"deadlock, no rank can proceed: " + join(lines, "; "), signature};
  }

  void answer_requests() {
    std::deque<Request> requests;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests.swap(requests_);
    }
    for (Request& r : requests) r.reply.set_value(explain(r.op));
  }

  void probe() {
    std::optional<BlockedOp> longest;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const Entry& e : blocked_) {
        if (Clock::now() - e.since < options_.deadlock_after) continue;
        if (!longest || seconds_since(e.since) > longest->for_s) longest = blocked_op(*e.work, e.since);
      }
    }
    if (!longest) {
      last_signature_.clear();
      return;
    }
    const Verdict verdict = follow(*longest);
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

  MPI_Comm channel_;
  const int world_rank_;
  const WatchdogOptions options_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  std::mutex mutex_;  // guards comms_, blocked_ and requests_
  std::map<std::uint64_t, std::weak_ptr<CommProgress>> comms_;
  std::vector<Entry> blocked_;
  std::deque<Request> requests_;

  // Used by the watchdog thread only.
  std::deque<PendingSend> sends_;
  std::uint64_t last_qid_ = 0;
  std::string last_signature_;
};

std::atomic<WatchdogState*> g_watchdog{nullptr};
// Communicator ids: each process's next id exceeds every id it has agreed to, so the ids it holds are distinct.
std::atomic<std::uint64_t> g_next_comm_id{1};

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
  const std::string context = fmt::format("agreeing on an id for communicator '{}'", name);
  std::uint64_t id = g_next_comm_id.load();
  DTRAIN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &id, 1, MPI_UINT64_T, MPI_MAX, comm), context);
  std::uint64_t next = g_next_comm_id.load();
  while (next <= id && !g_next_comm_id.compare_exchange_weak(next, id + 1)) {
  }
  int rank = 0;
  int size = 0;
  DTRAIN_MPI_CHECK(MPI_Comm_rank(comm, &rank), context);
  DTRAIN_MPI_CHECK(MPI_Comm_size(comm, &size), context);
  MPI_Group group = MPI_GROUP_NULL;
  MPI_Group world = MPI_GROUP_NULL;
  DTRAIN_MPI_CHECK(MPI_Comm_group(comm, &group), context);
  DTRAIN_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world), context);
  std::vector<int> ranks(static_cast<std::size_t>(size));
  std::vector<int> world_ranks(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) ranks[static_cast<std::size_t>(r)] = r;
  DTRAIN_MPI_CHECK(MPI_Group_translate_ranks(group, size, ranks.data(), world, world_ranks.data()), context);
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  auto progress = std::make_shared<CommProgress>(id, name, rank, std::move(world_ranks));
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
