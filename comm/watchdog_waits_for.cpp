#include "comm/watchdog_waits_for.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <map>
#include <vector>

namespace dtrain::comm {

namespace {

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

// Rank r blocked in collective #s waits for the members that have not issued #s; in its n-th receive from p for p
// until p has issued n+1 sends to r (and sends likewise).
Waits waits_of(const BlockedOp& b, RankAsker& asker) {
  Waits waits;
  auto consider = [&](int member, int about, auto has_arrived) {
    const int rank = b.members[static_cast<std::size_t>(member)];
    std::optional<Answer> a = asker.ask(rank, b.comm, about);
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

std::string state_of(int rank, const Answer& a, const BlockedOp& about) {
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

// For a collective every member has reached: whether the members' running fingerprints of their collectives agree.
// With CommOptions::verify_calls off, a rank that called a different sequence of collectives shows only here.
std::string compare_histories(const BlockedOp& b, Waits& waits, RankAsker& asker) {
  if (b.op.type == OpType::kSend || b.op.type == OpType::kRecv) return "";
  if (auto own = asker.ask(b.world_rank(), b.comm, -1)) waits.answers[b.world_rank()] = std::move(*own);
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

}  // namespace

std::string explain_wait(const BlockedOp& op, RankAsker& ranks, const WatchdogOptions& options) {
  Waits waits = waits_of(op, ranks);
  std::vector<std::string> parts;
  for (int rank : waits.ranks) parts.push_back(state_of(rank, waits.answers.at(rank), op));
  for (int rank : waits.silent) {
    parts.push_back(fmt::format("rank {} did not answer within {} ms (it has died, or hangs outside MPI)", rank,
                                options.answer_within.count()));
  }
  if (!parts.empty()) {
    std::vector<int> missing = waits.ranks;
    missing.insert(missing.end(), waits.silent.begin(), waits.silent.end());
    std::sort(missing.begin(), missing.end());
    return fmt::format("; {} {} not arrived: {}", format_ranks(missing), missing.size() == 1 ? "has" : "have",
                       join(parts, "; "));
  }
  return "; every rank it waits for has issued its side of it" + compare_histories(op, waits, ranks) +
         " (the network or the MPI library is stuck)";
}

Verdict find_deadlock(const BlockedOp& start, RankAsker& ranks, const WatchdogOptions& options) {
  const double threshold = std::chrono::duration<double>(options.deadlock_after).count();
  std::map<int, BlockedOp> visited{{start.world_rank(), start}};
  std::deque<BlockedOp> frontier{start};
  std::vector<std::string> lines;
  std::string signature;
  while (!frontier.empty()) {
    const BlockedOp b = frontier.front();
    frontier.pop_front();
    Waits waits = waits_of(b, ranks);
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
      if (!a.blocked || a.blocked->for_s < threshold) return {};  // it computes: it may yet arrive
      visited.emplace(rank, *a.blocked);
      frontier.push_back(*a.blocked);
    }
  }
  return {"deadlock, no rank can proceed: " + join(lines, "; "), signature};
}

}  // namespace dtrain::comm
