#include "runtime/pipeline/pipeline_schedule.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>

#include "comm/hash.h"

namespace dtrain::runtime {

const char* to_string(PipeOp op) {
  switch (op) {
    case PipeOp::kRecvActivation:
      return "recv-activation";
    case PipeOp::kForward:
      return "forward";
    case PipeOp::kSendActivation:
      return "send-activation";
    case PipeOp::kRecvGradient:
      return "recv-gradient";
    case PipeOp::kBackward:
      return "backward";
    case PipeOp::kSendGradient:
      return "send-gradient";
  }
  return "?";
}

const char* to_string(ScheduleKind kind) {
  return kind == ScheduleKind::kGPipe ? "gpipe" : "1f1b";
}

namespace {

// Appends the forward of `mb` with its transfers.
void forward(StageSchedule& out, int stages, int stage, int mb) {
  if (stage > 0) out.push_back({PipeOp::kRecvActivation, mb});
  out.push_back({PipeOp::kForward, mb});
  if (stage < stages - 1) out.push_back({PipeOp::kSendActivation, mb});
}

void backward(StageSchedule& out, int stages, int stage, int mb) {
  if (stage < stages - 1) out.push_back({PipeOp::kRecvGradient, mb});
  out.push_back({PipeOp::kBackward, mb});
  if (stage > 0) out.push_back({PipeOp::kSendGradient, mb});
}

std::string at(const StageSchedule& schedule, std::size_t pc) {
  if (pc >= schedule.size()) return "the end";
  return fmt::format("#{} {} mb {}", pc, to_string(schedule[pc].op), schedule[pc].micro_batch);
}

// One stage's own order: every micro-batch forward once then backward once, transfers where the stage has
// neighbours and in the right place around the compute.
std::string check_stage(const StageSchedule& schedule, int stages, int stage, int micro_batches) {
  enum Seen { kRecvA, kF, kSendA, kRecvG, kB, kSendG, kCount };
  std::vector<std::array<int, kCount>> seen(static_cast<std::size_t>(micro_batches), std::array<int, kCount>{});
  auto fail = [&](std::size_t pc, const std::string& what) {
    return fmt::format("pipeline stage {}: instruction {}: {}", stage, at(schedule, pc), what);
  };
  for (std::size_t pc = 0; pc < schedule.size(); ++pc) {
    const PipeInstruction& in = schedule[pc];
    if (in.micro_batch < 0 || in.micro_batch >= micro_batches) {
      return fail(pc, fmt::format("micro-batch out of range (a step has {})", micro_batches));
    }
    auto& s = seen[in.micro_batch];
    const int kind = static_cast<int>(in.op);
    if (s[kind]++ > 0) return fail(pc, "repeated");
    switch (in.op) {
      case PipeOp::kRecvActivation:
        if (stage == 0) return fail(pc, "the first stage has no stage to receive activations from");
        break;
      case PipeOp::kForward:
        if (stage > 0 && !s[kRecvA]) return fail(pc, "forward before its activation was received");
        break;
      case PipeOp::kSendActivation:
        if (stage == stages - 1) return fail(pc, "the last stage has no stage to send activations to");
        if (!s[kF]) return fail(pc, "sends an activation not computed yet");
        break;
      case PipeOp::kRecvGradient:
        if (stage == stages - 1) return fail(pc, "the last stage has no stage to receive gradients from");
        break;
      case PipeOp::kBackward:
        if (!s[kF]) return fail(pc, "backward before forward");
        if (stage < stages - 1 && !s[kRecvG]) return fail(pc, "backward before its output gradient was received");
        break;
      case PipeOp::kSendGradient:
        if (stage == 0) return fail(pc, "the first stage has no stage to send gradients to");
        if (!s[kB]) return fail(pc, "sends a gradient not computed yet");
        break;
    }
  }
  for (int mb = 0; mb < micro_batches; ++mb) {
    const auto& s = seen[mb];
    const bool complete =
        s[kF] && s[kB] && (stage == 0 || (s[kRecvA] && s[kSendG])) && (stage == stages - 1 || (s[kSendA] && s[kRecvG]));
    if (!complete) {
      return fmt::format("pipeline stage {}: micro-batch {} misses its forward, backward or a transfer", stage, mb);
    }
  }
  return "";
}

// The micro-batches `schedule` sends (or receives) with `op`, in order.
std::vector<int> sequence(const StageSchedule& schedule, PipeOp op) {
  std::vector<int> out;
  for (const auto& in : schedule) {
    if (in.op == op) out.push_back(in.micro_batch);
  }
  return out;
}

// A link between neighbouring stages in one direction; sends and receives on it match in order.
struct Link {
  int from, to;
  PipeOp send, recv;
};

std::vector<Link> links(int stages) {
  std::vector<Link> out;
  for (int s = 0; s + 1 < stages; ++s) {
    out.push_back({s, s + 1, PipeOp::kSendActivation, PipeOp::kRecvActivation});
    out.push_back({s + 1, s, PipeOp::kSendGradient, PipeOp::kRecvGradient});
  }
  return out;
}

std::string check_pairing(const std::vector<StageSchedule>& stages) {
  for (const Link& link : links(static_cast<int>(stages.size()))) {
    const auto sent = sequence(stages[link.from], link.send);
    const auto received = sequence(stages[link.to], link.recv);
    if (sent != received) {
      const char* what = link.send == PipeOp::kSendActivation ? "activations" : "gradients";
      return fmt::format(
          "pipeline schedules do not pair up: stage {} sends {} of micro-batches [{}] to stage {}, which receives "
          "[{}]",
          link.from, what, fmt::join(sent, ", "), link.to, fmt::join(received, ", "));
    }
  }
  return "";
}

// Executes all stages with the semantics of Note [Pipeline schedules as data]: a stage runs its instructions in
// order, sends never wait, a receive waits until its micro-batch has been sent on its link. `run` sees every
// instruction as it executes. Returns where each stage stopped (its schedule's size if it reached the end).
std::vector<std::size_t> execute(const std::vector<StageSchedule>& stages,
                                 const std::function<void(int stage, const PipeInstruction&)>& run) {
  const int p = static_cast<int>(stages.size());
  std::vector<std::size_t> pc(static_cast<std::size_t>(p), 0);
  std::set<std::tuple<int, int, int>> sent;  // (from, to, micro-batch)
  bool progress = true;
  while (progress) {
    progress = false;
    for (int s = 0; s < p; ++s) {
      const StageSchedule& schedule = stages[s];
      for (std::size_t& i = pc[s]; i < schedule.size(); ++i, progress = true) {
        const PipeInstruction& in = schedule[i];
        if (in.op == PipeOp::kRecvActivation || in.op == PipeOp::kRecvGradient) {
          const int from = in.op == PipeOp::kRecvActivation ? s - 1 : s + 1;
          if (sent.count({from, s, in.micro_batch}) == 0) break;
        }
        if (in.op == PipeOp::kSendActivation) sent.insert({s, s + 1, in.micro_batch});
        if (in.op == PipeOp::kSendGradient) sent.insert({s, s - 1, in.micro_batch});
        run(s, in);
      }
    }
  }
  return pc;
}

// "" if every stage reaches its end, else where each stage is stuck. The schedules pair up (check_pairing).
std::string check_progress(const std::vector<StageSchedule>& stages) {
  const std::vector<std::size_t> pc = execute(stages, [](int, const PipeInstruction&) {});
  bool done = true;
  for (std::size_t s = 0; s < stages.size(); ++s) done = done && pc[s] == stages[s].size();
  if (done) return "";
  std::vector<std::string> stuck;
  for (std::size_t s = 0; s < stages.size(); ++s)
    stuck.push_back(fmt::format("stage {} at {}", s, at(stages[s], pc[s])));
  return fmt::format("pipeline schedules would deadlock: {}", fmt::join(stuck, "; "));
}

}  // namespace

StageSchedule make_schedule(ScheduleKind kind, int stages, int stage, int micro_batches) {
  if (stages < 1) throw std::invalid_argument(fmt::format("a pipeline needs >= 1 stage (got {})", stages));
  if (stage < 0 || stage >= stages) {
    throw std::invalid_argument(fmt::format("pipeline stage {} out of range for {} stages", stage, stages));
  }
  if (micro_batches < 1) {
    throw std::invalid_argument(fmt::format("a pipeline step needs >= 1 micro-batch (got {})", micro_batches));
  }
  StageSchedule out;
  if (kind == ScheduleKind::kGPipe) {
    for (int mb = 0; mb < micro_batches; ++mb) forward(out, stages, stage, mb);
    for (int mb = 0; mb < micro_batches; ++mb) backward(out, stages, stage, mb);
    return out;
  }
  // 1F1B: stage s runs p - s - 1 forwards ahead (fewer if the step has fewer micro-batches), then alternates one
  // forward with one backward, then drains the remaining backwards.
  const int warmup = std::min(stages - stage - 1, micro_batches);
  for (int mb = 0; mb < warmup; ++mb) forward(out, stages, stage, mb);
  for (int i = 0; i + warmup < micro_batches; ++i) {
    forward(out, stages, stage, warmup + i);
    backward(out, stages, stage, i);
  }
  for (int mb = micro_batches - warmup; mb < micro_batches; ++mb) backward(out, stages, stage, mb);
  return out;
}

std::string describe(const StageSchedule& schedule) {
  std::string out;
  for (const auto& in : schedule) {
    static const char* const kShort[] = {"Ra", "F", "Sa", "Rg", "B", "Sg"};
    if (!out.empty()) out += ' ';
    out += fmt::format("{}{}", kShort[static_cast<int>(in.op)], in.micro_batch);
  }
  return out;
}

std::uint64_t schedule_hash(const StageSchedule& schedule) {
  std::vector<std::int64_t> fields{static_cast<std::int64_t>(schedule.size())};
  for (const auto& in : schedule) {
    fields.push_back(static_cast<std::int64_t>(in.op));
    fields.push_back(in.micro_batch);
  }
  return comm::fnv1a(fields.data(), fields.size() * sizeof(std::int64_t));
}

int max_live_activations(const StageSchedule& schedule) {
  int live = 0, peak = 0;
  for (const auto& in : schedule) {
    if (in.op == PipeOp::kForward) peak = std::max(peak, ++live);
    if (in.op == PipeOp::kBackward) --live;
  }
  return peak;
}

std::string check_schedules(const std::vector<StageSchedule>& stages, int micro_batches) {
  const int p = static_cast<int>(stages.size());
  for (int s = 0; s < p; ++s) {
    std::string error = check_stage(stages[s], p, s, micro_batches);
    if (!error.empty()) return error;
  }
  std::string error = check_pairing(stages);
  if (!error.empty()) return error;
  return check_progress(stages);
}

double simulated_bubble_fraction(const std::vector<StageSchedule>& stages, double forward, double backward) {
  // Each stage's clock advances by its compute; a receive also waits for the time its message was sent.
  const int p = static_cast<int>(stages.size());
  std::map<std::tuple<int, int, int>, double> sent_at;  // (from, to, micro-batch) -> time
  std::vector<double> clock(static_cast<std::size_t>(p), 0.0);
  double busy = 0;
  execute(stages, [&](int s, const PipeInstruction& in) {
    double& t = clock[s];
    if (in.op == PipeOp::kForward || in.op == PipeOp::kBackward) {
      const double cost = in.op == PipeOp::kForward ? forward : backward;
      t += cost;
      busy += cost;
    }
    if (in.op == PipeOp::kSendActivation) sent_at[{s, s + 1, in.micro_batch}] = t;
    if (in.op == PipeOp::kSendGradient) sent_at[{s, s - 1, in.micro_batch}] = t;
    if (in.op == PipeOp::kRecvActivation) t = std::max(t, sent_at[{s - 1, s, in.micro_batch}]);
    if (in.op == PipeOp::kRecvGradient) t = std::max(t, sent_at[{s + 1, s, in.micro_batch}]);
  });
  const double total = *std::max_element(clock.begin(), clock.end());
  return total > 0 ? 1.0 - busy / (total * p) : 0.0;
}

}  // namespace dtrain::runtime
