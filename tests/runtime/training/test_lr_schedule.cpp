#include "runtime/training/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

namespace dtrain::runtime {
namespace {

TEST(LrSchedule, WarmupRampsLinearlyThenHoldsTheBaseRate) {
  LrScheduleOptions o;
  o.base_lr = 0.4;
  o.warmup_steps = 4;
  LrSchedule schedule(o);
  EXPECT_DOUBLE_EQ(schedule.lr_at(0), 0.1);
  EXPECT_DOUBLE_EQ(schedule.lr_at(1), 0.2);
  EXPECT_DOUBLE_EQ(schedule.lr_at(3), 0.4);
  EXPECT_DOUBLE_EQ(schedule.lr_at(100), 0.4);
}

TEST(LrSchedule, StepDecaysByGammaEveryStepSizeAfterWarmup) {
  LrScheduleOptions o;
  o.kind = LrScheduleKind::kStep;
  o.base_lr = 1.0;
  o.warmup_steps = 2;
  o.step_size = 10;
  o.gamma = 0.5;
  LrSchedule schedule(o);
  EXPECT_DOUBLE_EQ(schedule.lr_at(2), 1.0);
  EXPECT_DOUBLE_EQ(schedule.lr_at(11), 1.0);
  EXPECT_DOUBLE_EQ(schedule.lr_at(12), 0.5);
  EXPECT_DOUBLE_EQ(schedule.lr_at(32), 0.125);
}

TEST(LrSchedule, CosineGoesFromBaseToMinimum) {
  LrScheduleOptions o;
  o.kind = LrScheduleKind::kCosine;
  o.base_lr = 1.0;
  o.min_lr = 0.1;
  o.total_steps = 100;
  LrSchedule schedule(o);
  EXPECT_DOUBLE_EQ(schedule.lr_at(0), 1.0);
  EXPECT_NEAR(schedule.lr_at(50), 0.55, 1e-12);
  EXPECT_DOUBLE_EQ(schedule.lr_at(100), 0.1);
  EXPECT_DOUBLE_EQ(schedule.lr_at(1000), 0.1);
}

TEST(LrSchedule, BadOptionsAreNamed) {
  LrScheduleOptions o;
  o.kind = LrScheduleKind::kCosine;
  o.total_steps = 0;
  try {
    LrSchedule schedule(o);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "cosine schedule needs total steps (0) > warm-up steps (0)");
  }
}

}  // namespace
}  // namespace dtrain::runtime
