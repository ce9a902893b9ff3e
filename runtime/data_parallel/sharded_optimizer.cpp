#include "runtime/data_parallel/sharded_optimizer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>

#include "runtime/device/host_staging.h"

namespace dtrain::runtime {

ShardedOptimizer::ShardedOptimizer(const OptimizerOptions& options, Reducer& reducer, comm::Communicator& replicas)
    : replicas_(replicas) {
  if (!reducer.plan_is_final()) {
    throw std::invalid_argument("a sharded optimizer needs the reducer's bucket plan fixed (rebuild_buckets off)");
  }
  at::NoGradGuard no_grad;
  const std::vector<Reducer::BucketLayout> buckets = reducer.layout();
  std::vector<std::int64_t> shard_sizes;
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
    shard.mutable_grad() = reducer.gradient_shard(b);
    flat_.push_back(flat);
    shards_.push_back(shard);
    shard_sizes.push_back(bucket.shard_numel);
  }
  optimizer_ = make_optimizer(options, shards_);
  layout_ = fmt::format("{} ranks, bucket plan {:016x}, shards of {} elements", replicas.size(), reducer.plan_hash(),
                        fmt::join(shard_sizes, ", "));
}

void ShardedOptimizer::set_learning_rate(double lr) {
  runtime::set_learning_rate(*optimizer_, lr);
}

void ShardedOptimizer::step() {
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

}  // namespace dtrain::runtime
