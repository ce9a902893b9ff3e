#pragma once
// The training record of each metrics interval (--log-every steps): the mean loss and the step-time breakdown over
// all ranks (one small sum on the control plane per interval), throughput, learning rate, loss scale, gradient
// buckets overlapped with backward and this rank's memory (resident, and on a GPU the caching allocator's and the
// device's); reported by rank 0 (progress line and metrics file). A rank whose memory (device memory on a GPU)
// passes --memory-warn-gb says so.

#include <cstdint>

#include "comm/clock.h"
#include "comm/control_plane.h"
#include "runtime/device/compute_device.h"
#include "runtime/observability/memory_monitor.h"
#include "runtime/observability/progress_reporter.h"
#include "runtime/training/training_step.h"

namespace dtrain::runtime {

class IntervalMetrics {
 public:
  // `samples_per_step`: the global batch of one optimizer step.
  IntervalMetrics(comm::ControlPlane& world, ProgressReporter& reporter, ComputeDevice& device, double memory_warn_gb,
                  std::int64_t samples_per_step);

  // Where the steps of this interval add their times.
  StepTimes& times() { return times_; }
  // After a step: its loss over `micro_batches_with_loss` micro-batches (0 on ranks that compute no loss).
  void add_step(const StepResult& result, int micro_batches_with_loss);

  // Collective over the world: reports the interval that ends after step `step` and starts the next one. Returns
  // the interval's mean training loss (over every rank that computed one).
  double report(std::int64_t step, std::int64_t epoch, double lr, double loss_scale, Reducer& reducer);

 private:
  comm::ControlPlane& world_;
  ProgressReporter& reporter_;
  ComputeDevice& device_;
  MemoryMonitor memory_;
  double memory_warn_gb_;
  std::int64_t samples_per_step_;
  StepTimes times_;
  double loss_ = 0;
  std::int64_t micro_batches_ = 0;
  std::int64_t steps_ = 0;
  comm::SteadyClock::time_point start_ = comm::SteadyClock::now();
};

}  // namespace dtrain::runtime
