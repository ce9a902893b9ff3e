#pragma once
// A DataFeed that hands out another feed's batches on the training device, one batch ahead: when the trainer takes a
// batch, the copy of the next one to the device is started at once (ComputeDevice::stage, on the copy stream), so it
// runs while the current step computes; the compute stream waits for it with an event (Note [Compute device]).
// Where the feed stands (state(), batches_left()) counts the batches handed out, not the one being copied, so a
// checkpoint resumes exactly where the trainer was.

#include <memory>
#include <optional>

#include "runtime/data/data_feed.h"
#include "runtime/device/compute_device.h"

namespace dtrain::runtime {

class DeviceFeed final : public DataFeed {
 public:
  // Both must outlive the feed.
  DeviceFeed(DataFeed& host, ComputeDevice& device);

  void start_epoch(std::int64_t epoch) override;
  std::optional<Batch> next() override;
  std::string state() const override;
  void restore(const std::string& state) override;
  std::int64_t epoch() const override { return host_.epoch(); }
  std::int64_t batches_left() const override;
  std::int64_t batches_per_epoch() const override { return host_.batches_per_epoch(); }
  std::int64_t global_batch_size() const override { return host_.global_batch_size(); }
  std::vector<std::int64_t> sample_shape() const override { return host_.sample_shape(); }
  std::int64_t classes() const override { return host_.classes(); }

 private:
  void stage_next();

  DataFeed& host_;
  ComputeDevice& device_;
  // The batch being copied (nothing at the end of the epoch), and where the host feed stood before it was read.
  std::optional<std::optional<StagedBatch>> ahead_;
  std::string state_before_ahead_;
};

}  // namespace dtrain::runtime
