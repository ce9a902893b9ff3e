#include "runtime/data_parallel/sharded_optimizer.h"

#include <ATen/ATen.h>
#include <c10/core/StorageImpl.h>

#include <stdexcept>

#include "runtime/device/host_staging.h"

namespace dtrain::runtime {

namespace {

// Stage 3 frees a flat bucket's memory but keeps the tensor, its views (the model's parameters) and every view
// autograd saved of them: they all read the storage, which gets new memory before it is read again.
void set_memory(const at::Tensor& flat, at::DataPtr memory, std::size_t bytes) {
  c10::StorageImpl* storage = flat.storage().unsafeGetStorageImpl();
  const at::DataPtr previous = storage->set_data_ptr(std::move(memory));  // freed on return
  storage->set_nbytes(bytes);
}

void free_memory(const at::Tensor& flat) {
  set_memory(flat, at::DataPtr(nullptr, flat.device()), 0);
}

void give_memory(const at::Tensor& flat) {
  const std::size_t bytes = static_cast<std::size_t>(flat.numel()) * flat.element_size();
  set_memory(flat, flat.storage().unsafeGetStorageImpl()->allocator()->allocate(bytes), bytes);
}

}  // namespace

ShardedOptimizer::ShardedOptimizer(const OptimizerOptions& options, Reducer& reducer, comm::Communicator& replicas,
                                   bool shard_parameters)
    : reducer_(reducer), replicas_(replicas), shard_parameters_(shard_parameters) {
  if (!reducer.plan_is_final()) {
    throw std::invalid_argument("a sharded optimizer needs the reducer's bucket plan fixed (rebuild_buckets off)");
  }
  at::NoGradGuard no_grad;
  const std::vector<Reducer::BucketLayout> buckets = reducer.layout();
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    const Reducer::BucketLayout& bucket = buckets[b];
    const at::Tensor& first = bucket.parameters.front();
    at::Tensor flat = at::zeros({bucket.shard_numel * replicas.size()}, first.options().requires_grad(false));
    for (std::size_t i = 0; i < bucket.parameters.size(); ++i) {
      at::Tensor parameter = bucket.parameters[i];
      at::Tensor seat = flat.narrow(0, bucket.offsets[i], parameter.numel());
      seat.copy_(parameter.detach().reshape({-1}));
      parameter.set_data(seat.view(parameter.sizes()));  // the module's tensor now lives in the flat bucket
      parameters_.push_back(parameter);
    }
    at::Tensor shard = flat.narrow(0, replicas.rank() * bucket.shard_numel, bucket.shard_numel);
    if (shard_parameters_) {
      shard = shard.clone();
      free_memory(flat);  // bucket by bucket: the whole model never exists twice
    }
    shard.mutable_grad() = reducer.gradient_shard(b);
    flat_.push_back(flat);
    shards_.push_back(shard);
    layout_.numel.push_back(bucket.numel);
  }
  held_.assign(flat_.size(), shard_parameters_ ? Held::kShard : Held::kWhole);
  gathers_.resize(flat_.size());
  optimizer_ = make_optimizer(options, shards_);
  // Stages 1 and 2 cut alike (either resumes the other's checkpoint); stage 3 cuts a bucket per block.
  layout_.ranks = replicas.size();
  layout_.plan = reducer.plan_hash();
  layout_.parameters = shard_parameters_;
}

void ShardedOptimizer::set_learning_rate(double lr) {
  runtime::set_learning_rate(optimizer(), lr);
}

void ShardedOptimizer::step() {
  if (finished_) throw std::logic_error("ShardedOptimizer::step after finish()");
  if (shard_parameters_) {
    // A block whose gradient never came (an unused parameter) is still whole; the step makes it stale.
    for (std::size_t b = 0; b < flat_.size(); ++b) release(b);
    optimizer_->step();
    return;
  }
  optimizer_->step();
  at::NoGradGuard no_grad;
  std::vector<comm::WorkPtr> works;
  for (std::size_t b = 0; b < flat_.size(); ++b) {
    if (needs_host_staging(replicas_, flat_[b])) {
      allgather_in_place(replicas_, flat_[b]);
    } else {
      works.push_back(replicas_.allgather(flat_[b], shards_[b]));
    }
  }
  for (auto& work : works) work->wait();
}

// The parameters' gradients are the next backward's accumulators (views into the buckets in stage 1, none in stage
// 2); the shards' gradients are the reducer's, overwritten by the next reduction.
void ShardedOptimizer::zero_grad() {
  for (at::Tensor& parameter : parameters_) {
    if (parameter.grad().defined()) parameter.mutable_grad().zero_();
  }
}

void ShardedOptimizer::start_gather(std::size_t bucket) {
  if (held_.at(bucket) != Held::kShard) return;
  at::NoGradGuard no_grad;
  const at::Tensor& flat = flat_[bucket];
  const at::Tensor& shard = shards_[bucket];
  give_memory(flat);
  if (needs_host_staging(replicas_, flat)) {
    flat.narrow(0, replicas_.rank() * shard.numel(), shard.numel()).copy_(shard);
    allgather_in_place(replicas_, flat);
    held_[bucket] = Held::kWhole;
    return;
  }
  gathers_[bucket] = replicas_.allgather(flat, shard);
  held_[bucket] = Held::kGathering;
}

void ShardedOptimizer::wait_gathered(std::size_t bucket) {
  start_gather(bucket);
  if (held_[bucket] != Held::kGathering) return;
  gathers_[bucket]->wait();
  gathers_[bucket].reset();
  held_[bucket] = Held::kWhole;
}

void ShardedOptimizer::release(std::size_t bucket) {
  if (!shard_parameters_ || finished_ || held_.at(bucket) == Held::kShard) return;
  wait_gathered(bucket);  // the collective must be done writing before the memory goes
  free_memory(flat_[bucket]);
  held_[bucket] = Held::kShard;
}

std::vector<at::Tensor> ShardedOptimizer::parameter_shards() const {
  return shard_parameters_ ? shards_ : std::vector<at::Tensor>{};
}

void ShardedOptimizer::finish() {
  if (!shard_parameters_ || finished_) return;
  // No step follows: the optimizer (its state and its hold on the shards) and the gradient shards go first, and each
  // parameter shard as soon as its bucket is gathered, so the whole model grows into the memory they leave: the run's
  // peak stays that of its steps.
  optimizer_.reset();
  for (at::Tensor& shard : shards_) shard.mutable_grad() = at::Tensor();
  reducer_.free_gradient_shards();
  for (std::size_t b = 0; b < flat_.size(); ++b) {
    wait_gathered(b);
    shards_[b] = at::Tensor();
  }
  shards_.clear();
  finished_ = true;
}

torch::optim::Optimizer& ShardedOptimizer::optimizer() {
  if (!optimizer_) throw std::logic_error("ShardedOptimizer::optimizer after finish()");
  return *optimizer_;
}

std::int64_t ShardedOptimizer::parameter_bytes() const {
  std::int64_t bytes = 0;
  for (const at::Tensor& held : shard_parameters_ && !finished_ ? shards_ : flat_) {
    bytes += held.numel() * static_cast<std::int64_t>(held.element_size());
  }
  return bytes;
}

}  // namespace dtrain::runtime
