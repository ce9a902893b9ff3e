#include "runtime/training/grad_scaler.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <stdexcept>

namespace dtrain::runtime {
namespace {

TEST(GradScaler, BacksOffOnInfAndGrowsAfterTheIntervalOfCleanSteps) {
  GradScalerOptions o;
  o.enabled = true;
  o.growth_interval = 3;
  GradScaler scaler(o);
  EXPECT_EQ(scaler.scale(), 65536.0);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 32768.0);
  scaler.update(false);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 32768.0);
  scaler.update(true);  // an inf restarts the count
  scaler.update(false);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 16384.0);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 32768.0);
  EXPECT_EQ(scaler.clean_steps(), 0);
}

TEST(GradScaler, ScalesTheLossOnlyWhenEnabled) {
  GradScaler off(GradScalerOptions{});
  at::Tensor loss = at::full({}, 0.5f);
  EXPECT_EQ(off.scale_loss(loss).item<float>(), 0.5f);
  off.update(true);
  EXPECT_EQ(off.scale(), 1.0);
  GradScalerOptions o;
  o.enabled = true;
  o.init_scale = 8;
  EXPECT_EQ(GradScaler(o).scale_loss(loss).item<float>(), 4.0f);
}

TEST(GradScaler, RejectsNonsense) {
  GradScalerOptions o;
  o.backoff_factor = 1.5;
  EXPECT_THROW(GradScaler{o}, std::invalid_argument);
  GradScaler scaler(GradScalerOptions{});
  EXPECT_THROW(scaler.restore(-1, 0), std::invalid_argument);
}

}  // namespace
}  // namespace dtrain::runtime
