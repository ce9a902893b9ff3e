#include "runtime/training/interval_metrics.h"

#include <cstdio>

namespace dtrain::runtime {

IntervalMetrics::IntervalMetrics(comm::ControlPlane& world, ProgressReporter& reporter, ComputeDevice& device,
                                 double memory_warn_gb, std::int64_t samples_per_step)
    : world_(world),
      reporter_(reporter),
      device_(device),
      memory_(memory_warn_gb),
      memory_warn_gb_(memory_warn_gb),
      samples_per_step_(samples_per_step) {}

void IntervalMetrics::add_step(const StepResult& result, int micro_batches_with_loss) {
  loss_ += result.loss_sum;
  micro_batches_ += micro_batches_with_loss;
  ++steps_;
}

double IntervalMetrics::report(std::int64_t step, std::int64_t epoch, double lr, double loss_scale, Reducer& reducer) {
  // The host runs ahead of a GPU: the interval ends when the device has finished its work.
  device_.synchronize();
  const std::vector<double> sums = world_.sum({loss_, static_cast<double>(micro_batches_), times_.data, times_.forward,
                                               times_.backward, times_.comm, times_.optimizer, times_.pipeline_wait});
  const double ranks = world_.size();
  const double elapsed = comm::seconds_since(start_);
  const double steps = static_cast<double>(steps_);
  const double samples = steps * static_cast<double>(samples_per_step_);
  const double mean_loss = sums[0] / sums[1];
  auto per_step_ms = [&](double seconds) { return 1e3 * seconds / ranks / steps; };
  const MemoryUsage usage = current_memory();
  nlohmann::json record = {{"event", "train"},
                           {"step", step},
                           {"epoch", epoch},
                           {"loss", mean_loss},
                           {"lr", lr},
                           {"loss_scale", loss_scale},
                           {"samples_per_s", samples / elapsed},
                           {"step_ms", 1e3 * elapsed / steps},
                           {"data_wait_ms", per_step_ms(sums[2])},
                           {"forward_ms", per_step_ms(sums[3])},
                           {"backward_ms", per_step_ms(sums[4])},
                           {"exposed_comm_ms", per_step_ms(sums[5])},
                           {"optimizer_ms", per_step_ms(sums[6])},
                           {"pipeline_wait_ms", per_step_ms(sums[7])},
                           {"buckets_overlapped", reducer.buckets_launched_in_backward()},
                           {"buckets", reducer.bucket_plan().size()},
                           {"rss_gb", usage.resident_gb}};
  const bool gpu = device_.device().is_cuda();
  const DeviceMemory on_device = device_.memory();
  if (gpu) {
    record["gpu_allocated_gb"] = on_device.allocated_gb;
    record["gpu_peak_gb"] = on_device.peak_allocated_gb;
    record["gpu_free_gb"] = on_device.free_gb;
    record["gpu_total_gb"] = on_device.total_gb;
  }
  reporter_.step(record, step, samples / elapsed);
  // On a GPU the memory that runs out is the device's.
  const double watched = gpu ? on_device.allocated_gb : usage.resident_gb;
  if (memory_.crossed(MemoryUsage{watched, 0})) {
    std::fprintf(stderr, "dtrain: warning: rank %d uses %.2f GB of %s memory, above --memory-warn-gb %.2f\n",
                 world_.rank(), watched, gpu ? "GPU" : "host", memory_warn_gb_);
  }
  times_ = StepTimes{};
  loss_ = 0;
  micro_batches_ = 0;
  steps_ = 0;
  start_ = comm::SteadyClock::now();
  return mean_loss;
}

}  // namespace dtrain::runtime
