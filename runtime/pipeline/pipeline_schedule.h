#pragma once
// Note [Pipeline schedules as data]
// A pipeline schedule is a list of instructions per stage (as in DeepSpeed), not control flow: it can be printed,
// hashed, compared across ranks and checked before step 1. The engine (runtime/pipeline/pipeline_engine.h) executes it
// literally, with these semantics, which check_schedules() simulates:
//  - kSendActivation / kSendGradient post a send and go on at once (the stage computes while it sends);
//  - kRecvActivation / kRecvGradient post a receive and wait for its message, and for nothing else: each link and
//    direction has a communicator of its own (runtime/pipeline/pipeline_engine.cpp), because a communicator completes
//    its operations in issue order (Note [Communicator contract]), and on a shared one a receive would also wait for
//    the stage's earlier sends to be matched (with a large transfer sent as header + payload, 1F1B would deadlock);
//  - kForward(mb) needs mb's input (received, or read from data on stage 0); kBackward(mb) needs kForward(mb) and, on
//    every stage but the last, mb's output gradient.
// Activations travel from stage s to s+1 and gradients back from s+1 to s, in micro-batch order on each link; the
// loss lives on the last stage. Between kForward(mb) and kBackward(mb) a stage holds mb's activations: GPipe holds all
// m, 1F1B at most p - s (it runs p - s - 1 warm-up forwards).

#include <cstdint>
#include <string>
#include <vector>

namespace dtrain::runtime {

enum class PipeOp : std::uint8_t {
  kRecvActivation,
  kForward,
  kSendActivation,
  kRecvGradient,
  kBackward,
  kSendGradient,
};
const char* to_string(PipeOp op);

struct PipeInstruction {
  PipeOp op;
  int micro_batch;
  bool operator==(const PipeInstruction& other) const { return op == other.op && micro_batch == other.micro_batch; }
};

enum class ScheduleKind { kGPipe, k1F1B };
const char* to_string(ScheduleKind kind);  // "gpipe", "1f1b": the --pipeline-schedule names

using StageSchedule = std::vector<PipeInstruction>;

// The instructions of `stage` (0-based) of a `stages`-stage pipeline running `micro_batches` micro-batches per step.
// Throws std::invalid_argument if stages < 1, stage is out of range or micro_batches < 1. Any m >= 1 works, m < p too.
StageSchedule make_schedule(ScheduleKind kind, int stages, int stage, int micro_batches);

// "F0 S0 F1 S1 R0 B0 ..." (R/S = receive/send, a/g = activation/gradient); for errors and --dry-run.
std::string describe(const StageSchedule& schedule);
// A hash of the instruction list (FNV-1a), compared across ranks before step 1.
std::uint64_t schedule_hash(const StageSchedule& schedule);

// The most micro-batches whose activations the stage holds at once (forward done, backward not yet).
int max_live_activations(const StageSchedule& schedule);

// Checks the schedules of all stages (index = stage) against each other: each stage's own order (a forward before
// its backward, sends after the compute that produces them, every micro-batch once), that the sends on every link
// pair up with the receives of the neighbour, and that executing them cannot deadlock. Returns "" when they are
// sound, else one line naming the stages, the link and the first mismatch or the instructions every stage is stuck at.
std::string check_schedules(const std::vector<StageSchedule>& stages, int micro_batches);

// Simulated idle share of a step if every forward and backward on every stage takes `forward` and `backward` time
// units and transfers are free: what the schedule itself costs, (p-1)/(m+p-1) for GPipe and 1F1B alike.
double simulated_bubble_fraction(const std::vector<StageSchedule>& stages, double forward, double backward);

}  // namespace dtrain::runtime
