#include "runtime/data/device_feed.h"

namespace dtrain::runtime {

DeviceFeed::DeviceFeed(DataFeed& host, ComputeDevice& device) : host_(host), device_(device) {}

void DeviceFeed::start_epoch(std::int64_t epoch) {
  ahead_.reset();
  host_.start_epoch(epoch);
}

void DeviceFeed::stage_next() {
  state_before_ahead_ = host_.state();
  std::optional<Batch> batch = host_.next();
  ahead_.emplace(batch ? std::optional<StagedBatch>(device_.stage(*batch)) : std::nullopt);
}

std::optional<Batch> DeviceFeed::next() {
  if (!ahead_) stage_next();
  std::optional<StagedBatch> staged = std::move(*ahead_);
  ahead_.reset();
  if (!staged) return std::nullopt;
  stage_next();  // the next copy overlaps the step that uses this batch
  return device_.receive(std::move(*staged));
}

std::string DeviceFeed::state() const {
  return ahead_ ? state_before_ahead_ : host_.state();
}

void DeviceFeed::restore(const std::string& state) {
  ahead_.reset();
  host_.restore(state);
}

std::int64_t DeviceFeed::batches_left() const {
  return host_.batches_left() + (ahead_ && *ahead_ ? 1 : 0);
}

}  // namespace dtrain::runtime
