// dtrain's learning-rate schedule, one value per optimizer step, for lr_schedules_vs_pytorch.py to compare with
// PyTorch's schedulers. A LIGHT program: the schedule needs no LibTorch.

#include <boost/program_options.hpp>
#include <cstdio>
#include <map>
#include <string>

#include "runtime/training/lr_schedule.h"

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  using dtrain::runtime::LrScheduleKind;
  dtrain::runtime::LrScheduleOptions o;
  std::string kind = "constant";
  std::int64_t steps = 0;
  po::options_description options("lr_curve: prints lr_at(step) for step 0..--steps-1, one per line");
  options.add_options()("schedule", po::value(&kind), "constant | step | cosine")(
      "lr", po::value(&o.base_lr)->default_value(o.base_lr), "base learning rate")(
      "warmup-steps", po::value(&o.warmup_steps)->default_value(o.warmup_steps), "linear warm-up steps")(
      "step-size", po::value(&o.step_size)->default_value(o.step_size), "step: steps per decay")(
      "gamma", po::value(&o.gamma)->default_value(o.gamma), "step: decay factor")(
      "total-steps", po::value(&o.total_steps)->default_value(o.total_steps), "cosine: steps to reach --min-lr")(
      "min-lr", po::value(&o.min_lr)->default_value(o.min_lr), "cosine: final learning rate")(
      "steps", po::value(&steps)->required(), "how many values to print");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
    const std::map<std::string, LrScheduleKind> kinds = {
        {"constant", LrScheduleKind::kConstant}, {"step", LrScheduleKind::kStep}, {"cosine", LrScheduleKind::kCosine}};
    o.kind = kinds.at(kind);
    const dtrain::runtime::LrSchedule schedule(o);
    for (std::int64_t step = 0; step < steps; ++step) std::printf("%.17g\n", schedule.lr_at(step));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lr_curve: %s\n", e.what());
    return 2;
  }
  return 0;
}
