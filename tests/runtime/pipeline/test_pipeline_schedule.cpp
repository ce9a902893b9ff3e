// Pipeline schedules as data: GPipe and 1F1B instruction lists for every stage, their activation footprint and
// bubble, and the pre-flight check that names schedules which do not pair up or would deadlock.

#include "runtime/pipeline/pipeline_schedule.h"

#include <gtest/gtest.h>

#include <vector>

namespace dtrain::runtime {
namespace {

std::vector<StageSchedule> all_stages(ScheduleKind kind, int stages, int micro_batches) {
  std::vector<StageSchedule> out;
  for (int s = 0; s < stages; ++s) out.push_back(make_schedule(kind, stages, s, micro_batches));
  return out;
}

TEST(PipelineSchedule, InstructionListsAreTheTextbookOnes) {
  EXPECT_EQ(describe(make_schedule(ScheduleKind::kGPipe, 2, 0, 2)), "F0 Sa0 F1 Sa1 Rg0 B0 Rg1 B1");
  EXPECT_EQ(describe(make_schedule(ScheduleKind::kGPipe, 2, 1, 2)), "Ra0 F0 Ra1 F1 B0 Sg0 B1 Sg1");
  // Stage 0 of 3 warms up with two forwards; the last stage alternates from the start.
  EXPECT_EQ(describe(make_schedule(ScheduleKind::k1F1B, 3, 0, 4)),
            "F0 Sa0 F1 Sa1 F2 Sa2 Rg0 B0 F3 Sa3 Rg1 B1 Rg2 B2 Rg3 B3");
  EXPECT_EQ(describe(make_schedule(ScheduleKind::k1F1B, 3, 2, 4)),
            "Ra0 F0 B0 Sg0 Ra1 F1 B1 Sg1 Ra2 F2 B2 Sg2 Ra3 F3 B3 Sg3");
  EXPECT_EQ(describe(make_schedule(ScheduleKind::k1F1B, 1, 0, 2)), "F0 B0 F1 B1");
}

TEST(PipelineSchedule, EveryShapeIsSoundIncludingFewerMicroBatchesThanStages) {
  for (auto kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B}) {
    for (int p = 1; p <= 6; ++p) {
      for (int m = 1; m <= 10; ++m) {
        EXPECT_EQ(check_schedules(all_stages(kind, p, m), m), "") << to_string(kind) << " p=" << p << " m=" << m;
      }
    }
  }
}

TEST(PipelineSchedule, OneFOneBHoldsAtMostStagesMinusStageMicroBatches) {
  for (int p = 1; p <= 6; ++p) {
    for (int m = 1; m <= 10; ++m) {
      for (int s = 0; s < p; ++s) {
        EXPECT_EQ(max_live_activations(make_schedule(ScheduleKind::k1F1B, p, s, m)), std::min(p - s, m));
        EXPECT_EQ(max_live_activations(make_schedule(ScheduleKind::kGPipe, p, s, m)), m);
      }
    }
  }
}

TEST(PipelineSchedule, SimulatedBubbleIsTheTheoreticalOne) {
  for (auto kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B}) {
    for (int p = 1; p <= 5; ++p) {
      for (int m = 1; m <= 9; ++m) {
        const double theory = static_cast<double>(p - 1) / (m + p - 1);
        EXPECT_NEAR(simulated_bubble_fraction(all_stages(kind, p, m), 1.0, 2.0), theory, 1e-12)
            << to_string(kind) << " p=" << p << " m=" << m;
      }
    }
  }
}

TEST(PipelineSchedule, SendsThatDoNotPairUpAreNamed) {
  auto stages = all_stages(ScheduleKind::kGPipe, 2, 4);
  std::swap(stages[1][0], stages[1][2]);  // stage 1 receives micro-batch 1 first
  std::swap(stages[1][1], stages[1][3]);
  EXPECT_EQ(check_schedules(stages, 4),
            "pipeline schedules do not pair up: stage 0 sends activations of micro-batches [0, 1, 2, 3] to stage 1, "
            "which receives [1, 0, 2, 3]");
  stages = all_stages(ScheduleKind::k1F1B, 3, 2);
  stages[2].pop_back();  // the last stage forgets to send the gradient of micro-batch 1
  EXPECT_EQ(check_schedules(stages, 2), "pipeline stage 2: micro-batch 1 misses its forward, backward or a transfer");
}

TEST(PipelineSchedule, MixedSchedulesThatWouldDeadlockAreCaughtBeforeTheyRun) {
  // 1F1B's first stage waits for a gradient that GPipe's last stage sends only after all its forwards.
  std::vector<StageSchedule> stages = {make_schedule(ScheduleKind::k1F1B, 2, 0, 4),
                                       make_schedule(ScheduleKind::kGPipe, 2, 1, 4)};
  EXPECT_EQ(check_schedules(stages, 4),
            "pipeline schedules would deadlock: stage 0 at #4 recv-gradient mb 0; stage 1 at #4 recv-activation mb 2");
  // A stage that receives before it sends, waiting on a neighbour that waits on it.
  stages = all_stages(ScheduleKind::kGPipe, 2, 1);
  std::swap(stages[0][1], stages[0][2]);  // F0 Rg0 Sa0 B0
  EXPECT_EQ(check_schedules(stages, 1),
            "pipeline schedules would deadlock: stage 0 at #1 recv-gradient mb 0; stage 1 at #0 recv-activation mb 0");
}

TEST(PipelineSchedule, BadShapesAreRefused) {
  EXPECT_THROW(make_schedule(ScheduleKind::kGPipe, 0, 0, 1), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::kGPipe, 2, 2, 1), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::k1F1B, 2, 0, 0), std::invalid_argument);
  EXPECT_NE(schedule_hash(make_schedule(ScheduleKind::kGPipe, 2, 0, 4)),
            schedule_hash(make_schedule(ScheduleKind::k1F1B, 2, 0, 4)));
}

}  // namespace
}  // namespace dtrain::runtime
