// Prints what dtrain's sampler computes, in the text form tests/sampler/sampler_spec.py prints from its own
// implementation of docs/sampler.md; the test_sampler_spec test runs both and compares them character for character.
// Reads one case a line from stdin (one process for all cases: loading libdtrain takes most of a second) and
// answers each with "$ <the line>" and its output:
//
//   below state=S bound=B count=C      C draws of SplitMix64(S).below(B)
//   order n=N [seed= epoch= shuffle=0|1 shards=a,b,... window=W]
//   ranks n=N world=R batch=B [... mode=train|eval drop_last=0|1 drop_last_batch=0|1 position=P]
//                                      every rank's batches; evaluation padding is marked with '*'

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdint>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

#include "sampler/distributed_sampler.h"
#include "sampler/random.h"

namespace dtrain::sampler {
namespace {

class Args {
 public:
  explicit Args(std::istringstream& words) {
    std::string arg;
    while (words >> arg) {
      const std::size_t equals = arg.find('=');
      if (equals == std::string::npos) throw std::invalid_argument("expected key=value, got '" + arg + "'");
      values_[arg.substr(0, equals)] = arg.substr(equals + 1);
    }
  }
  std::string text(const std::string& key, const std::string& fallback) const {
    const auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  std::uint64_t number(const std::string& key, const std::string& fallback = "0") const {
    return std::stoull(text(key, fallback));
  }

 private:
  std::map<std::string, std::string> values_;
};

SamplerOptions options_from(const Args& args) {
  SamplerOptions options;
  options.dataset_size = static_cast<std::int64_t>(args.number("n"));
  options.seed = args.number("seed");
  options.shuffle = args.number("shuffle", "1") == 1;
  for (std::string shards = args.text("shards", ""); !shards.empty();) {
    const std::size_t comma = shards.find(',');
    options.shard_sizes.push_back(std::stoll(shards.substr(0, comma)));
    shards = comma == std::string::npos ? "" : shards.substr(comma + 1);
  }
  options.window = static_cast<std::int64_t>(args.number("window"));
  options.world_size = static_cast<int>(args.number("world", "1"));
  options.batch_size = static_cast<std::int64_t>(args.number("batch", "1"));
  options.mode = args.text("mode", "train") == "eval" ? Mode::kEval : Mode::kTrain;
  options.drop_last = args.number("drop_last") == 1;
  options.drop_last_batch = args.number("drop_last_batch") == 1;
  return options;
}

void dump(const std::string& command, const Args& args) {
  if (command == "below") {
    SplitMix64 rng(args.number("state"));
    const std::uint64_t bound = args.number("bound");
    const std::uint64_t count = args.number("count");
    for (std::uint64_t i = 0; i < count; ++i) fmt::print(i == 0 ? "{}" : " {}", rng.below(bound));
    fmt::print("\n");
    return;
  }
  SamplerOptions options = options_from(args);
  const auto epoch = static_cast<std::int64_t>(args.number("epoch"));
  if (command == "order") {
    const std::vector<std::int64_t> order = global_order(options, epoch);
    fmt::print("{}\n", fmt::join(order, " "));
    return;
  }
  if (command != "ranks") throw std::invalid_argument("unknown command '" + command + "'");
  for (int rank = 0; rank < options.world_size; ++rank) {
    options.rank = rank;
    DistributedSampler sampler(options);
    sampler.start_epoch(epoch, static_cast<std::int64_t>(args.number("position")));
    fmt::print("rank {} ({} batches):", rank, sampler.batches_left());
    const char* separator = " ";
    while (const std::optional<Batch> batch = sampler.next()) {
      for (std::size_t i = 0; i < batch->indices.size(); ++i) {
        fmt::print("{}{}{}", i == 0 ? separator : " ", batch->indices[i], batch->valid[i] ? "" : "*");
      }
      separator = " | ";
    }
    fmt::print("\n");
  }
}

}  // namespace
}  // namespace dtrain::sampler

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    fmt::print("$ {}\n", line);
    std::istringstream words(line);
    std::string command;
    words >> command;
    try {
      dtrain::sampler::dump(command, dtrain::sampler::Args(words));
    } catch (const std::exception& e) {
      fmt::print("sampler_dump: {}\n", e.what());  // in the output, where the comparison shows it
    }
  }
  return 0;
}
