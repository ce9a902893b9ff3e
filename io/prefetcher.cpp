#include "io/prefetcher.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <thread>

#include "io/data_error.h"

namespace dtrain::io {

namespace {

c10::ScalarType scalar_type(const std::string& dtype) {
  if (dtype == "uint8") return at::kByte;
  if (dtype == "int32") return at::kInt;
  if (dtype == "int64") return at::kLong;
  if (dtype == "float32") return at::kFloat;
  return at::kDouble;
}

}  // namespace

struct Prefetcher::State {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::vector<std::int64_t>> plan;
  std::size_t planned = 0;       // next plan entry the thread reads
  std::uint64_t generation = 0;  // bumped by schedule(): batches of older generations are dropped
  std::deque<std::vector<at::Tensor>> ready;
  std::exception_ptr error;
  bool stopping = false;
  std::size_t depth = 1;
  Manifest manifest;
  std::vector<std::string> names;
  std::thread thread;

  void run(const std::string& folder, ReadOptions options, std::promise<void> opened);
};

void Prefetcher::State::run(const std::string& folder, ReadOptions options, std::promise<void> opened) {
  std::unique_ptr<ShardedDataset> dataset;
  try {
    dataset = std::make_unique<ShardedDataset>(folder, names, options);
    manifest = dataset->manifest();
    opened.set_value();
  } catch (...) {
    opened.set_exception(std::current_exception());
    return;
  }
  for (;;) {
    std::vector<std::int64_t> indices;
    std::uint64_t generation_read = 0;
    {
      std::unique_lock<std::mutex> lock(mutex);
      changed.wait(lock, [&] { return stopping || (!error && planned < plan.size() && ready.size() < depth); });
      if (stopping) return;
      indices = plan[planned++];
      generation_read = generation;
    }
    try {
      std::vector<at::Tensor> batch;
      for (const auto& name : names) {
        const DatasetSpec& spec = manifest.dataset(name);
        std::vector<std::int64_t> shape = {static_cast<std::int64_t>(indices.size())};
        shape.insert(shape.end(), spec.shape.begin(), spec.shape.end());
        at::Tensor tensor = at::empty(shape, scalar_type(spec.dtype));
        dataset->read(name, indices, tensor.data_ptr());
        batch.push_back(std::move(tensor));
      }
      std::lock_guard<std::mutex> lock(mutex);
      if (generation_read == generation) ready.push_back(std::move(batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      error = std::current_exception();
    }
    changed.notify_all();
  }
}

Prefetcher::Prefetcher(const std::string& folder, std::vector<std::string> datasets, ReadOptions options, int depth)
    : state_(std::make_shared<State>()) {
  if (depth < 1) throw DataError(fmt::format("prefetch depth must be >= 1 (got {})", depth));
  state_->depth = static_cast<std::size_t>(depth);
  state_->names = std::move(datasets);
  std::promise<void> opened;
  std::future<void> result = opened.get_future();
  state_->thread = std::thread([state = state_, folder, options, opened = std::move(opened)]() mutable {
    state->run(folder, options, std::move(opened));
  });
  try {
    result.get();
  } catch (...) {
    state_->thread.join();
    throw;
  }
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stopping = true;
  }
  state_->changed.notify_all();
  if (state_->thread.joinable()) state_->thread.join();
}

const Manifest& Prefetcher::manifest() const {
  return state_->manifest;
}

void Prefetcher::schedule(std::vector<std::vector<std::int64_t>> batches) {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->plan = std::move(batches);
    state_->planned = 0;
    ++state_->generation;
    state_->ready.clear();
  }
  state_->changed.notify_all();
}

std::vector<at::Tensor> Prefetcher::next() {
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->changed.wait(lock, [&] { return state_->error || !state_->ready.empty(); });
  if (state_->ready.empty()) std::rethrow_exception(state_->error);
  std::vector<at::Tensor> batch = std::move(state_->ready.front());
  state_->ready.pop_front();
  lock.unlock();
  state_->changed.notify_all();
  return batch;
}

}  // namespace dtrain::io
