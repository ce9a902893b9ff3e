#pragma once
// The DataFeed of a sharded HDF5 dataset (io/): the distributed sampler decides which samples this rank reads, the
// prefetcher reads them ahead on its own thread, and batches come out as float32 inputs (uint8 images scaled to
// [0, 1]) and int64 targets, or, for next-token models, int64 token inputs and targets.

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "runtime/data/data_feed.h"

namespace dtrain::runtime {

// Hdf5FeedOptions::targets for language models: each sample of `inputs` is a token sequence one longer than the
// model's context; the model reads tokens [0, L) and learns to predict tokens [1, L] (int64 inputs and targets).
inline constexpr const char* kNextTokenTargets = "next-token";

// How ranks read their samples (--read-mode): each on its own, or together in MPI-IO collective reads.
enum class ReadMode { kIndependent, kCollective };
const char* to_string(ReadMode mode);  // "independent", "collective"

struct Hdf5FeedOptions {
  std::int64_t batch_size = 64;  // per rank
  int prefetch_depth = 4;
  ReadMode read_mode = ReadMode::kIndependent;
  std::uint64_t seed = 0;
  double fraction = 1.0;  // use the first fraction of the samples (quick validation)
  std::string inputs = "images";
  std::string targets = "labels";  // or kNextTokenTargets
  bool drop_last = false;          // training: drop the tail of the epoch instead of padding it
  bool verify_checksums = false;   // read every shard once at open and check its CRC-32s against the manifest
  bool pin_memory = false;         // batches in pinned host memory, for asynchronous copies to a GPU
};

// Collective over `comm` (its rank and size decide the sampler's share). `evaluation`: every sample once, padding
// marked invalid, no shuffling. Throws io::DataError naming the file for bad data, std::invalid_argument for bad
// options.
std::unique_ptr<DataFeed> make_hdf5_feed(const std::string& folder, const Hdf5FeedOptions& options, bool evaluation,
                                         comm::Communicator& comm);

}  // namespace dtrain::runtime
