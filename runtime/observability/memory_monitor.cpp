#include "runtime/observability/memory_monitor.h"

#include <fstream>
#include <sstream>
#include <string>

namespace dtrain::runtime {

MemoryUsage current_memory() {
  MemoryUsage usage;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    std::istringstream fields(line);
    std::string key;
    double kb = 0;
    fields >> key >> kb;
    if (key == "VmRSS:") usage.resident_gb = kb / (1024.0 * 1024.0);
    if (key == "VmHWM:") usage.peak_gb = kb / (1024.0 * 1024.0);
  }
  return usage;
}

bool MemoryMonitor::crossed(const MemoryUsage& usage) {
  if (warn_gb_ <= 0) return false;
  const bool above = usage.resident_gb > warn_gb_;
  const bool just_crossed = above && !above_;
  above_ = above;
  return just_crossed;
}

}  // namespace dtrain::runtime
