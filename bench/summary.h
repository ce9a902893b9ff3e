#pragma once
// The benchmarks' common summary: with --summary FILE each benchmark appends one markdown row per headline figure,
// "| benchmark | figure | dtrain | peer | peer's figure | ratio |", which bench/run-all.sh gathers into one table.

#include <cstdio>
#include <string>

namespace dtrain::bench {

inline void append_summary_row(const std::string& path, const std::string& benchmark, const std::string& figure,
                               const std::string& ours, const std::string& peer, const std::string& theirs,
                               double ratio) {
  if (path.empty()) return;
  std::FILE* out = std::fopen(path.c_str(), "a");
  if (out == nullptr) {
    std::fprintf(stderr, "%s: cannot append to the summary file %s\n", benchmark.c_str(), path.c_str());
    return;
  }
  std::fprintf(out, "| %s | %s | %s | %s | %s | %.3f |\n", benchmark.c_str(), figure.c_str(), ours.c_str(),
               peer.c_str(), theirs.c_str(), ratio);
  std::fclose(out);
}

}  // namespace dtrain::bench
