#pragma once
// What rank 0 shows and records while training: a progress bar with ETA and samples/s when stdout is a terminal,
// plain periodic lines otherwise, and one JSON object per line in the metrics file (steps, evaluations, summary).

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

namespace dtrain::runtime {

// auto: a bar on a terminal, lines otherwise.
enum class ProgressMode { kAuto, kBar, kLines, kNone };
const char* to_string(ProgressMode mode);  // "auto", "bar", "lines", "none"

class ProgressReporter {
 public:
  // `active` is false on every rank but 0. Throws std::runtime_error if the metrics file cannot be opened for writing.
  ProgressReporter(bool active, ProgressMode mode, const std::string& metrics_file, std::int64_t total_steps);

  // A training record: printed (bar or line) and appended to the metrics file.
  void step(const nlohmann::json& record, std::int64_t step, double samples_per_second);
  // Any other record (evaluation, summary, warning): a line and a metrics record.
  void event(const std::string& line, const nlohmann::json& record);

 private:
  void write(const nlohmann::json& record);
  void end_bar();

  bool active_;
  bool bar_;
  bool quiet_;
  bool bar_open_ = false;
  std::ofstream metrics_;
  std::int64_t total_steps_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace dtrain::runtime
