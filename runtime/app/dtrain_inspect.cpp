// dtrain-inspect CHECKPOINT: what a checkpoint holds (model, step, epoch, ranks, optimizer, loss scale, sampler
// position, shard layout) and every entry of it and of its optimizer shards, with its shape and whether its checksum
// holds (Note [Verified checkpoints]). Exit code: 0 all intact, 1 some entry damaged or missing, 2 bad usage or a
// file without readable metadata.

#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <exception>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/training/checkpoint.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string path;
  po::options_description visible("dtrain-inspect CHECKPOINT: a dtrain checkpoint's contents and their checksums");
  visible.add_options()("help", "this help");
  po::options_description all;
  all.add(visible).add_options()("checkpoint", po::value(&path));
  po::positional_options_description positional;
  positional.add("checkpoint", 1);
  try {
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
    if (vm.count("help") || path.empty()) {
      std::cout << visible << "\n";
      return vm.count("help") ? 0 : 2;
    }
    const dtrain::runtime::CheckpointInspection inspection = dtrain::runtime::inspect_checkpoint(path);
    const nlohmann::json meta = nlohmann::json::parse(inspection.meta_json);
    const nlohmann::json extra = meta.value("extra", nlohmann::json::object());
    std::printf("checkpoint %s (%s)\n", path.c_str(), meta.value("format", "").c_str());
    std::printf("model: %s\noptimizer: %s\nstep %lld, epoch %lld%s\nwritten by %d ranks on %s\n",
                meta.value("model", "").c_str(), meta.value("optimizer", "").c_str(),
                static_cast<long long>(meta.value("step", std::int64_t{0})),
                static_cast<long long>(meta.value("epoch", std::int64_t{0})),
                extra.value("mid_epoch", false) ? " (mid-epoch)" : "", meta.value("world_size", 0),
                meta.value("device", "cpu").c_str());
    std::printf("loss scale: %g\nsampler: %s\noptimizer state: %s\n\n", meta.value("loss_scale", 1.0),
                meta.value("sampler_state", "").c_str(),
                inspection.shard_layout.empty() ? "in the main file" : ("sharded: " + inspection.shard_layout).c_str());
    std::printf("| file | entry | shape | checksum |\n|---|---|---|---|\n");
    int bad = 0;
    for (const auto& e : inspection.entries) {
      std::printf("| %s | %s | %s | %s |\n", e.file.c_str(), e.part.c_str(), e.shape.c_str(), e.status.c_str());
      if (e.status != "ok") ++bad;
    }
    std::printf("\n%s\n", bad == 0 ? fmt::format("all {} entries intact", inspection.entries.size()).c_str()
                                   : fmt::format("{} of {} entries damaged or missing: this checkpoint would not be "
                                                 "resumed",
                                                 bad, inspection.entries.size())
                                         .c_str());
    return bad == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dtrain-inspect: error: %s\n", e.what());
    return 2;
  }
}
