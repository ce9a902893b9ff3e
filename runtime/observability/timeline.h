#pragma once
// Note [Timeline]
// A per-process recorder of time spans (data wait, forward, backward, each gradient bucket's allreduce, optimizer,
// pipeline transfers, checkpoints), merged at the end of a run into one Chrome / Perfetto trace file in which each
// rank is a process row with lanes for compute, communication and pipeline transfers. Off by default
// (`dtrain --trace FILE`); when off, recording a span costs one predictable branch. Spans are recorded from the
// training thread only (the reducer records bucket allreduces when it waits for them, with the time the backend saw
// each one finish), so the recorder needs no lock. Clocks are aligned to rank 0's at the merge: each rank measures
// its offset with a few round trips to rank 0 and keeps the one with the shortest round trip (error below half of
// it, typically well under 0.1 ms on one node).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/control_plane.h"

namespace dtrain::runtime {

enum class Lane : int { kCompute = 0, kCommunication = 1, kPipeline = 2 };

// How far ahead rank 0's clock is of this rank's, in microseconds (0 on rank 0), by Cristian's method over `world`:
// of a few round trips to rank 0, the shortest one's midpoint is compared with rank 0's reading. Collective.
double clock_offset_to_rank0(comm::ControlPlane& world, const std::function<double()>& now_us);

class Timeline {
 public:
  using Clock = std::chrono::steady_clock;

  // The process's timeline (one per rank).
  static Timeline& instance();

  void enable() { enabled_ = true; }
  bool enabled() const { return enabled_; }
  // Drops the recorded spans and turns recording off.
  void reset();

  // `name` and `category` must be string literals (they are kept as pointers). `index` (a micro-batch, a bucket) is
  // shown with the name when >= 0.
  void add(const char* name, const char* category, Clock::time_point start, Clock::time_point end,
           Lane lane = Lane::kCompute, std::int64_t index = -1) {
    if (enabled_) spans_.push_back({name, category, start, end, lane, index});
  }
  std::size_t size() const { return spans_.size(); }

  // Collective over `world`: aligns every rank's clock to rank 0's, gathers the spans and has rank 0 write them as
  // Chrome trace JSON to `path` (atomically). Throws std::runtime_error on rank 0 if the file cannot be written.
  void write_merged(comm::ControlPlane& world, const std::string& path, const std::string& host);

  // Records [construction, destruction) as one span.
  class Scope {
   public:
    Scope(const char* name, const char* category, Lane lane = Lane::kCompute, std::int64_t index = -1)
        : name_(name), category_(category), lane_(lane), index_(index) {
      if (Timeline::instance().enabled()) start_ = Clock::now();
    }
    ~Scope() {
      Timeline& t = Timeline::instance();
      if (t.enabled()) t.add(name_, category_, start_, Clock::now(), lane_, index_);
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    const char* name_;
    const char* category_;
    Lane lane_;
    std::int64_t index_;
    Clock::time_point start_{};
  };

 private:
  struct Span {
    const char* name;
    const char* category;
    Clock::time_point start, end;
    Lane lane;
    std::int64_t index;
  };
  bool enabled_ = false;
  std::vector<Span> spans_;
};

}  // namespace dtrain::runtime
