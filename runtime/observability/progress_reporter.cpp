#include "runtime/observability/progress_reporter.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>

namespace dtrain::runtime {

const char* to_string(ProgressMode mode) {
  switch (mode) {
    case ProgressMode::kAuto:
      return "auto";
    case ProgressMode::kBar:
      return "bar";
    case ProgressMode::kLines:
      return "lines";
    case ProgressMode::kNone:
      return "none";
  }
  return "?";
}

ProgressReporter::ProgressReporter(bool active, ProgressMode mode, const std::string& metrics_file,
                                   std::int64_t total_steps)
    : active_(active),
      // Under mpirun a rank's stdout is a pseudo-terminal even when the output goes to a file; its stderr is not.
      bar_(mode == ProgressMode::kBar ||
           (mode == ProgressMode::kAuto && ::isatty(STDOUT_FILENO) && ::isatty(STDERR_FILENO))),
      quiet_(mode == ProgressMode::kNone),
      total_steps_(total_steps),
      start_(std::chrono::steady_clock::now()) {
  if (active_ && !metrics_file.empty()) {
    metrics_.open(metrics_file, std::ios::out | std::ios::app);
    if (!metrics_) throw std::runtime_error(fmt::format("cannot open metrics file {} for writing", metrics_file));
  }
}

void ProgressReporter::write(const nlohmann::json& record) {
  if (!metrics_.is_open()) return;
  metrics_ << record.dump() << '\n';
  metrics_.flush();
}

void ProgressReporter::end_bar() {
  if (bar_open_) std::fputc('\n', stdout);
  bar_open_ = false;
}

void ProgressReporter::step(const nlohmann::json& record, std::int64_t step, double samples_per_second) {
  if (!active_) return;
  write(record);
  if (quiet_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double fraction = total_steps_ > 0 ? static_cast<double>(step) / static_cast<double>(total_steps_) : 0.0;
  const double eta = fraction > 0 ? elapsed * (1.0 - fraction) / fraction : 0.0;
  const std::string stats = fmt::format("loss {:.4f}  {:.0f} samples/s  lr {:.3g}", record.value("loss", 0.0),
                                        samples_per_second, record.value("lr", 0.0));
  if (bar_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::printf("\r[%s%s] %lld/%lld  %s  ETA %.0fs ", std::string(filled, '#').c_str(),
                std::string(kWidth - filled, ' ').c_str(), static_cast<long long>(step),
                static_cast<long long>(total_steps_), stats.c_str(), eta);
    bar_open_ = true;
  } else {
    std::printf("step %lld/%lld  epoch %lld  %s  ETA %.0fs\n", static_cast<long long>(step),
                static_cast<long long>(total_steps_), static_cast<long long>(record.value("epoch", 0)), stats.c_str(),
                eta);
  }
  std::fflush(stdout);
}

void ProgressReporter::event(const std::string& line, const nlohmann::json& record) {
  if (!active_) return;
  write(record);
  if (quiet_) return;
  end_bar();
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace dtrain::runtime
