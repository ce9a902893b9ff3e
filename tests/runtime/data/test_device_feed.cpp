// The DeviceFeed through a fake ComputeDevice that records what it was asked: the copy of batch k+1 is started when
// batch k is handed out (one ahead, never more), each batch is received exactly once after it was staged, and
// state() / batches_left() count what the trainer has, so a checkpoint resumes at the right sample.

#include "runtime/data/device_feed.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/data/tensor_data_feed.h"

namespace dtrain::runtime {
namespace {

// Stages by tagging: the staged batch's inputs are the host inputs + 1000, so a test sees which batches went through.
class RecordingDevice final : public ComputeDevice {
 public:
  std::vector<std::string> log;
  c10::Device device() const override { return c10::kCPU; }
  std::string describe() const override { return "recording"; }
  bool pins_host_batches() const override { return false; }
  StagedBatch stage(const Batch& host) override {
    log.push_back("stage " + std::to_string(first_index(host)));
    Batch copy{host.inputs + 1000, host.targets, host.valid};
    return {copy, std::make_shared<int>(first_index(host))};
  }
  Batch receive(StagedBatch staged) override {
    log.push_back("receive " + std::to_string(*static_cast<int*>(staged.arrived.get())));
    return staged.batch;
  }
  void synchronize() override {}
  DeviceMemory memory() const override { return {}; }
  std::int64_t held_bytes() const override { return 0; }
  at::Tensor rng_state() const override { return {}; }
  void set_rng_state(const at::Tensor&) override {}
  void allow_tf32(bool) override {}

 private:
  static int first_index(const Batch& b) { return static_cast<int>(b.inputs[0][0].item<float>()); }
};

// 10 samples whose single feature is their index, unshuffled, batches of 3: [0 1 2] [3 4 5] [6 7 8] [9].
TensorDataFeed counting_feed() {
  sampler::SamplerOptions options;
  options.batch_size = 3;
  options.shuffle = false;
  return TensorDataFeed(at::arange(10, at::kFloat).reshape({10, 1}), at::zeros({10}, at::kLong), 2, options);
}

// A fresh feed over counting_feed() through a recording device, at the start of epoch 0.
struct FeedOnDevice {
  TensorDataFeed host = counting_feed();
  RecordingDevice device;
  DeviceFeed feed{host, device};
  FeedOnDevice() { feed.start_epoch(0); }
};

TEST(DeviceFeed, CopiesOneBatchAheadAndHandsOutEachOnce) {
  FeedOnDevice f;
  std::vector<float> firsts;
  while (auto batch = f.feed.next()) firsts.push_back(batch->inputs[0][0].item<float>());
  EXPECT_EQ(firsts, (std::vector<float>{1000, 1003, 1006, 1009}));
  // Batch k+1's copy is started before batch k is received, and never two ahead.
  EXPECT_EQ(f.device.log, (std::vector<std::string>{"stage 0", "stage 3", "receive 0", "stage 6", "receive 3",
                                                    "stage 9", "receive 6", "receive 9"}));
}

TEST(DeviceFeed, StateCountsTheBatchesHandedOutNotTheOneBeingCopied) {
  FeedOnDevice f;
  ASSERT_TRUE(f.feed.next());
  EXPECT_EQ(f.feed.batches_left(), 3);
  const std::string after_one = f.feed.state();

  TensorDataFeed reference = counting_feed();
  reference.start_epoch(0);
  ASSERT_TRUE(reference.next());
  EXPECT_EQ(after_one, reference.state());

  // Resuming from that state continues with the second batch, on a fresh feed as after a restart.
  FeedOnDevice resumed;
  resumed.feed.restore(after_one);
  EXPECT_EQ(resumed.feed.batches_left(), 3);
  EXPECT_EQ(resumed.feed.next()->inputs[0][0].item<float>(), 1003);
}

TEST(DeviceFeed, ANewEpochDropsTheBatchCopiedAhead) {
  FeedOnDevice f;
  ASSERT_TRUE(f.feed.next());
  f.feed.start_epoch(1);
  EXPECT_EQ(f.feed.batches_left(), 4);
  EXPECT_EQ(f.feed.next()->inputs[0][0].item<float>(), 1000);
}

}  // namespace
}  // namespace dtrain::runtime
