#pragma once
// Reads batches ahead of the trainer on one background thread, which makes every HDF5 call of the process (Debian's
// HDF5 is not thread-safe). The consumer hands over the index lists of the batches to read next (an epoch's plan);
// the thread reads them in order into a bounded queue of ready tensors. An error on the thread (a corrupt shard, say)
// is re-thrown to the consumer at its next batch, never lost and never a hang.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/manifest.h"
#include "io/sharded_dataset.h"

namespace dtrain::io {

class Prefetcher {
 public:
  // Opens the dataset on the background thread (collectively, if `options` say so) and waits for the result:
  // throws the DataError of a bad dataset here. Each batch holds one tensor per name in `datasets`, shaped
  // [n, sample shape...] in the dataset's dtype; `depth` batches at most wait in the queue.
  Prefetcher(const std::string& folder, std::vector<std::string> datasets, ReadOptions options, int depth);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  const Manifest& manifest() const;
  // Drops whatever was planned or read ahead and starts reading `batches` (lists of global sample indices).
  // Collective reads (Note [Collective reads]): only once every batch of the previous plan was taken with next(), so
  // that every rank's thread has made the same reads.
  void schedule(std::vector<std::vector<std::int64_t>> batches);
  // The next planned batch, waiting for it if needed; throws the background thread's error.
  std::vector<at::Tensor> next();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace dtrain::io
