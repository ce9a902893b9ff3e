#include "runtime/observability/timeline.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

namespace dtrain::runtime {

namespace {

// The offset is known to within half the quickest round trip; on a loaded machine a few of them are slow.
constexpr int kRoundTrips = 32;
constexpr int kTag = 7;

double micros(Timeline::Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(t.time_since_epoch()).count();
}

}  // namespace

double clock_offset_to_rank0(comm::ControlPlane& world, const std::function<double()>& now_us) {
  // Stamps travel as integer nanoseconds.
  auto stamp = [&] { return static_cast<std::int64_t>(std::llround(now_us() * 1e3)); };
  double best_offset = 0, best_round_trip = std::numeric_limits<double>::infinity();
  for (int peer = 1; peer < world.size(); ++peer) {
    for (int i = 0; i < kRoundTrips; ++i) {
      if (world.rank() == 0) {
        world.recv(1, peer, kTag);
        world.send({stamp()}, peer, kTag)->wait();
      } else if (world.rank() == peer) {
        const double sent = now_us();
        world.send({0}, 0, kTag)->wait();
        const std::int64_t theirs = world.recv(1, 0, kTag)[0];
        const double received = now_us();
        if (received - sent < best_round_trip) {
          best_round_trip = received - sent;
          best_offset = static_cast<double>(theirs) / 1e3 - (sent + received) / 2;
        }
      }
    }
  }
  return best_offset;
}

namespace {

const char* lane_name(int lane) {
  switch (lane) {
    case 0:
      return "compute";
    case 1:
      return "communication";
    default:
      return "pipeline transfers";
  }
}

}  // namespace

Timeline& Timeline::instance() {
  static Timeline timeline;
  return timeline;
}

void Timeline::reset() {
  enabled_ = false;
  spans_.clear();
}

void Timeline::write_merged(comm::ControlPlane& world, const std::string& path, const std::string& host) {
  const double offset = clock_offset_to_rank0(world, [] { return micros(Clock::now()); });
  nlohmann::json events = nlohmann::json::array();
  events.push_back({{"ph", "M"},
                    {"name", "process_name"},
                    {"pid", world.rank()},
                    {"tid", 0},
                    {"args", {{"name", fmt::format("rank {} ({})", world.rank(), host)}}}});
  events.push_back({{"ph", "M"},
                    {"name", "process_sort_index"},
                    {"pid", world.rank()},
                    {"tid", 0},
                    {"args", {{"sort_index", world.rank()}}}});
  for (int lane = 0; lane < 3; ++lane) {
    events.push_back({{"ph", "M"},
                      {"name", "thread_name"},
                      {"pid", world.rank()},
                      {"tid", lane},
                      {"args", {{"name", lane_name(lane)}}}});
  }
  for (const Span& span : spans_) {
    const double start = micros(span.start) + offset;
    events.push_back({{"ph", "X"},
                      {"name", span.index >= 0 ? fmt::format("{} {}", span.name, span.index) : span.name},
                      {"cat", span.category},
                      {"pid", world.rank()},
                      {"tid", static_cast<int>(span.lane)},
                      {"ts", start},
                      {"dur", micros(span.end) + offset - start}});
  }
  // Rank 0 collects every rank's events as text: a length, then the bytes.
  std::string error;
  if (world.rank() == 0) {
    nlohmann::json all = events;
    for (int peer = 1; peer < world.size(); ++peer) {
      for (auto& event : nlohmann::json::parse(world.recv_text(peer, kTag))) all.push_back(std::move(event));
    }
    const nlohmann::json trace = {{"traceEvents", std::move(all)}, {"displayTimeUnit", "ms"}};
    const std::string temporary = path + ".tmp";
    std::ofstream out(temporary);
    out << trace.dump();
    out.close();
    if (!out || std::rename(temporary.c_str(), path.c_str()) != 0) {
      std::filesystem::remove(temporary);
      error = fmt::format("cannot write the trace file {}", path);
    }
  } else {
    world.send_text(events.dump(), 0, kTag);
  }
  world.raise_if_any_failed(error);
}

}  // namespace dtrain::runtime
