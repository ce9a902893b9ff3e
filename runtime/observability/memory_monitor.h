#pragma once
// This process's memory, from /proc/self/status, and a warning when it passes a threshold (the seeds' advice: find
// out before the kernel's OOM killer does).

#include <cstdint>

namespace dtrain::runtime {

struct MemoryUsage {
  double resident_gb = 0;  // VmRSS
  double peak_gb = 0;      // VmHWM
};

MemoryUsage current_memory();

class MemoryMonitor {
 public:
  explicit MemoryMonitor(double warn_gb) : warn_gb_(warn_gb) {}
  // Returns true (once per crossing) when resident memory has just passed the threshold.
  bool crossed(const MemoryUsage& usage);

 private:
  double warn_gb_;
  bool above_ = false;
};

}  // namespace dtrain::runtime
