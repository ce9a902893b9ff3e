#include "runtime/data/hdf5_data_feed.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

#include "io/prefetcher.h"
#include "sampler/distributed_sampler.h"
#include "sampler/sampler_state.h"

namespace dtrain::runtime {

namespace {

class Hdf5DataFeed final : public DataFeed {
 public:
  Hdf5DataFeed(std::unique_ptr<io::Prefetcher> prefetcher, sampler::SamplerOptions sampling, std::int64_t classes,
               std::vector<std::int64_t> sample_shape, bool next_token, bool pin_memory)
      : prefetcher_(std::move(prefetcher)),
        sampler_(std::move(sampling)),
        classes_(classes),
        sample_shape_(std::move(sample_shape)),
        next_token_(next_token),
        pin_memory_(pin_memory) {}

  void start_epoch(std::int64_t epoch) override {
    sampler_.start_epoch(epoch);
    plan();
  }

  std::optional<Batch> next() override {
    std::optional<sampler::Batch> picked = sampler_.next();  // the sampler mirrors what the prefetcher reads
    if (!picked) return std::nullopt;
    std::vector<at::Tensor> tensors = prefetcher_->next();
    Batch batch;
    if (next_token_) {
      // Each sample stores one token more than the model sees: the targets are the inputs shifted by one.
      const std::int64_t length = tensors[0].size(1) - 1;
      batch.inputs = converted(tensors[0].narrow(1, 0, length), at::kLong);
      batch.targets = converted(tensors[0].narrow(1, 1, length), at::kLong);
    } else {
      batch.inputs = converted(tensors[0], at::kFloat);
      if (tensors[0].scalar_type() == at::kByte) batch.inputs.div_(255.0f);
      batch.targets = converted(tensors[1], at::kLong);
    }
    const auto n = static_cast<std::int64_t>(picked->valid.size());
    batch.valid = converted(at::from_blob(picked->valid.data(), {n}, at::kByte), at::kBool);
    return batch;
  }

  std::string state() const override { return sampler::to_string(sampler_.state()); }

  void restore(const std::string& state) override {
    sampler_.restore(sampler::parse_sampler_state(state));
    plan();
  }

  std::int64_t epoch() const override { return sampler_.epoch(); }
  std::int64_t batches_left() const override { return sampler_.batches_left(); }
  std::int64_t batches_per_epoch() const override { return sampler_.batches_per_epoch(); }
  std::int64_t global_batch_size() const override {
    return sampler_.options().batch_size * sampler_.options().world_size;
  }
  std::vector<std::int64_t> sample_shape() const override { return sample_shape_; }
  std::int64_t classes() const override { return classes_; }

 private:
  // `t` in `dtype`, in a tensor of its own (pinned for a GPU's asynchronous copies).
  at::Tensor converted(const at::Tensor& t, c10::ScalarType dtype) const {
    return at::empty(t.sizes(), at::TensorOptions().dtype(dtype).pinned_memory(pin_memory_)).copy_(t);
  }

  // The rest of the epoch, handed to the prefetcher (a copy of the sampler walks it; ours stays put).
  void plan() {
    sampler::DistributedSampler ahead = sampler_;
    std::vector<std::vector<std::int64_t>> batches;
    while (auto batch = ahead.next()) batches.push_back(std::move(batch->indices));
    prefetcher_->schedule(std::move(batches));
  }

  std::unique_ptr<io::Prefetcher> prefetcher_;
  sampler::DistributedSampler sampler_;
  std::int64_t classes_;
  std::vector<std::int64_t> sample_shape_;
  bool next_token_;
  bool pin_memory_;
};

}  // namespace

const char* to_string(ReadMode mode) {
  return mode == ReadMode::kIndependent ? "independent" : "collective";
}

std::unique_ptr<DataFeed> make_hdf5_feed(const std::string& folder, const Hdf5FeedOptions& options, bool evaluation,
                                         comm::Communicator& comm) {
  io::ReadOptions read;
  read.collective = options.read_mode == ReadMode::kCollective;
  read.verify_checksums = options.verify_checksums;
  // The prefetch thread reads collectively on its own duplicate of the world, apart from the trainer's traffic.
  read.comm = MPI_COMM_WORLD;
  const bool next_token = options.targets == kNextTokenTargets;
  std::vector<std::string> datasets{options.inputs};
  if (!next_token) datasets.push_back(options.targets);
  auto prefetcher = std::make_unique<io::Prefetcher>(folder, datasets, read, options.prefetch_depth);
  const io::Manifest& manifest = prefetcher->manifest();
  std::vector<std::int64_t> sample_shape = manifest.dataset(options.inputs).shape;
  if (next_token) {
    const io::DatasetSpec& tokens = manifest.dataset(options.inputs);
    if (tokens.shape.size() != 1 || tokens.shape[0] < 2 || tokens.dtype == "float32" || tokens.dtype == "float64") {
      throw std::invalid_argument(fmt::format(
          "{}: --targets next-token needs '{}' to hold integer token sequences of length >= 2 (it holds {} [{}])",
          folder, options.inputs, tokens.dtype, fmt::join(tokens.shape, ", ")));
    }
    sample_shape = {tokens.shape[0] - 1};
  } else if (const io::DatasetSpec& targets = manifest.dataset(options.targets); !targets.shape.empty()) {
    throw std::invalid_argument(
        fmt::format("{}: targets '{}' must be one label per sample (its samples have shape "
                    "[{}])",
                    folder, options.targets, fmt::join(targets.shape, ", ")));
  }
  if (manifest.classes < 2) {
    throw std::invalid_argument(
        fmt::format("{}: the manifest gives {} classes; a classifier needs >= 2", folder, manifest.classes));
  }
  sampler::SamplerOptions sampling;
  sampling.dataset_size = std::max<std::int64_t>(
      1, static_cast<std::int64_t>(std::floor(static_cast<double>(manifest.samples) * options.fraction)));
  sampling.world_size = comm.size();
  sampling.rank = comm.rank();
  sampling.batch_size = options.batch_size;
  sampling.mode = evaluation ? sampler::Mode::kEval : sampler::Mode::kTrain;
  sampling.shuffle = !evaluation;
  sampling.seed = options.seed;
  sampling.drop_last = !evaluation && options.drop_last;
  return std::make_unique<Hdf5DataFeed>(std::move(prefetcher), std::move(sampling), manifest.classes,
                                        std::move(sample_shape), next_token, options.pin_memory);
}

}  // namespace dtrain::runtime
