#include "runtime/data_parallel/reducer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include "comm/control_plane.h"
#include "comm/hash.h"
#include "comm/tensor_buffer.h"
#include "runtime/data_parallel/model_agreement.h"
#include "runtime/device/host_staging.h"
#include "runtime/model/torch_compat.h"
#include "runtime/observability/timeline.h"

namespace dtrain::runtime {

struct Reducer::State {
  struct Param {
    std::string name;
    at::Tensor tensor;
    std::size_t bucket = 0;
    at::Tensor view;  // this parameter's slice of its bucket, shaped like the parameter
    bool ready = false;
  };
  struct Bucket {
    std::vector<std::size_t> params;
    std::int64_t numel = 0;        // gradient elements
    std::int64_t shard_numel = 0;  // the bucket padded with zeros to size() * shard_numel
    at::TensorOptions options;
    // The gradients, the padding, then (allreduced buckets) one slot: how many of them got no gradient, summed over
    // ranks. With shard_gradients only alive from the bucket's first gradient to its launch.
    at::Tensor flat;
    // What travels: `flat`, or its compressed copy; in pinned host memory when staged (Note [Host staging]).
    at::Tensor wire;
    at::Tensor shard;       // this rank's reduced shard: a view into `flat`, or (shard_gradients) its own tensor
    at::Tensor wire_shard;  // shard_gradients: what the reduce-scatter receives (`shard`, compressed, or staged)
    at::Tensor in_flight;   // shard_gradients: the full bucket the reduce-scatter reads, until it is waited for
    std::size_t pending = 0;
    std::size_t unused_here = 0;
    comm::WorkPtr work;
    std::chrono::steady_clock::time_point launched_at;  // for the timeline
  };

  comm::Communicator& comm;                     // the gradients, parameters and buffers
  std::unique_ptr<comm::ControlPlane> control;  // every agreement (Note [Control plane and data plane])
  ReducerOptions options;
  std::vector<Param> params;
  std::vector<Bucket> buckets;
  // Hooks fire only while their accumulators live; the keys remove them when the reducer goes (they point at it).
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<std::uintptr_t> hook_keys;
  std::mutex mutex;  // hooks may run on autograd's device threads
  std::size_t next_to_launch = 0;
  std::size_t oldest_in_flight = 0;  // shard_gradients: the first launched bucket whose full copy may still be read
  std::size_t launched_in_backward = 0;  // of the last reduced iteration
  int no_sync_depth = 0;
  bool shards_freed = false;  // free_gradient_shards() was called
  std::size_t iteration = 0;
  std::vector<std::size_t> ready_order;  // first iteration only: the order gradients became ready
  std::vector<std::string> unused_here;

  State(comm::Communicator& c, ReducerOptions o)
      : comm(c), control(comm::ControlPlane::for_group(c)), options(std::move(o)) {}

  std::vector<std::vector<std::size_t>> plan_by_size(const std::vector<std::size_t>& order) const;
  std::vector<std::vector<std::size_t>> plan_by_groups() const;
  void build_buckets(std::vector<std::vector<std::size_t>> plan);
  void allocate_flat(Bucket& bucket);
  void release_flat(Bucket& bucket);
  void mark_ready(std::size_t index);
  void launch_ready_buckets();
  void pace_in_flight();
  void reset_for_next_iteration();
  void rebuild_from_ready_order();
  void verify_plan();
  std::string plan_text() const;
  std::vector<at::Tensor> held_gradients() const;
};

namespace {

class ReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(Reducer::State* state, std::size_t index) : state_(state), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    state_->mark_ready(index_);
    return outputs;
  }

 private:
  Reducer::State* state_;
  std::size_t index_;
};

}  // namespace

std::vector<std::vector<std::size_t>> Reducer::State::plan_by_size(const std::vector<std::size_t>& order) const {
  // Buckets fill in `order`, one open bucket per dtype; the first closes at first_bucket_bytes, later ones at
  // bucket_cap_bytes. Bucket index = closing order = launch order.
  struct Open {
    c10::ScalarType dtype;
    std::vector<std::size_t> params;
    std::size_t bytes = 0;
  };
  std::vector<Open> open;
  std::vector<std::vector<std::size_t>> closed;
  for (std::size_t index : order) {
    const at::Tensor& t = params[index].tensor;
    auto it = std::find_if(open.begin(), open.end(), [&](const Open& o) { return o.dtype == t.scalar_type(); });
    if (it == open.end()) it = open.insert(open.end(), Open{t.scalar_type(), {}, 0});
    it->params.push_back(index);
    it->bytes += t.numel() * t.element_size();
    const std::size_t cap = closed.empty() ? options.first_bucket_bytes : options.bucket_cap_bytes;
    if (it->bytes >= cap) {
      closed.push_back(std::move(it->params));
      open.erase(it);
    }
  }
  for (Open& o : open) closed.push_back(std::move(o.params));
  return closed;
}

// Every trainable parameter in exactly one group; groups and their parameters in reverse, the order of backward.
std::vector<std::vector<std::size_t>> Reducer::State::plan_by_groups() const {
  std::vector<std::size_t> group_of(params.size(), options.bucket_groups.size());
  for (std::size_t g = 0; g < options.bucket_groups.size(); ++g) {
    for (const std::string& name : options.bucket_groups[g]) {
      const auto it = std::find_if(params.begin(), params.end(), [&](const Param& p) { return p.name == name; });
      if (it == params.end()) continue;  // not trainable
      group_of[static_cast<std::size_t>(it - params.begin())] = g;
    }
  }
  std::vector<std::vector<std::size_t>> plan(options.bucket_groups.size());
  for (std::size_t i = params.size(); i-- > 0;) {
    if (group_of[i] == options.bucket_groups.size()) {
      throw ReducerError(fmt::format("parameter {} is in no bucket group", params[i].name));
    }
    std::vector<std::size_t>& bucket = plan[plan.size() - 1 - group_of[i]];
    if (!bucket.empty() && params[bucket.front()].tensor.scalar_type() != params[i].tensor.scalar_type()) {
      throw ReducerError(fmt::format("the bucket group of parameter {} mixes dtypes", params[i].name));
    }
    bucket.push_back(i);
  }
  plan.erase(std::remove_if(plan.begin(), plan.end(), [](const auto& b) { return b.empty(); }), plan.end());
  return plan;
}

void Reducer::State::build_buckets(std::vector<std::vector<std::size_t>> closed) {

  buckets.clear();
  buckets.resize(closed.size());
  const std::int64_t world = comm.size();
  for (std::size_t b = 0; b < closed.size(); ++b) {
    Bucket& bucket = buckets[b];
    bucket.params = std::move(closed[b]);
    for (std::size_t index : bucket.params) {
      bucket.numel += params[index].tensor.numel();
      params[index].bucket = b;
    }
    bucket.shard_numel = (bucket.numel + world - 1) / world;
    bucket.options = params[bucket.params.front()].tensor.options().requires_grad(false);
    const std::int64_t padded = bucket.shard_numel * world;
    const c10::ScalarType wire_dtype = options.compression ? *options.compression : bucket.options.dtype().toScalarType();
    const std::int64_t own_offset = comm.rank() * bucket.shard_numel;
    if (!options.shard_gradients) {
      allocate_flat(bucket);
      bucket.shard = bucket.flat.narrow(0, own_offset, bucket.shard_numel);
      if (needs_host_staging(comm, bucket.flat)) {
        bucket.wire = staging_buffer(bucket.flat, wire_dtype);
      } else {
        bucket.wire = options.compression ? bucket.flat.to(wire_dtype) : bucket.flat;
      }
    } else {
      bucket.shard = at::zeros({bucket.shard_numel}, bucket.options);
      if (needs_host_staging(comm, bucket.shard)) {
        // Pinned host memory is not the device memory stage 2 saves: the staging buffers stay.
        bucket.wire = staging_buffer(at::empty({padded}, bucket.options), wire_dtype);
        bucket.wire_shard = staging_buffer(bucket.shard, wire_dtype);
      } else {
        bucket.wire_shard = options.compression ? bucket.shard.to(wire_dtype) : bucket.shard;
      }
    }
    bucket.pending = bucket.params.size();
  }
}

void Reducer::State::allocate_flat(Bucket& bucket) {
  const std::int64_t padded = bucket.shard_numel * comm.size();
  const std::int64_t slot = options.shard_gradients ? 0 : 1;
  bucket.flat = at::empty({padded + slot}, bucket.options);
  bucket.flat.narrow(0, bucket.numel, padded + slot - bucket.numel).zero_();
  std::int64_t offset = 0;
  for (std::size_t index : bucket.params) {
    Param& p = params[index];
    // An alias of the bucket's storage rather than an autograd view: optimizers' zero_grad() detaches gradients
    // in place, which autograd forbids on views.
    p.view = at::empty({0}, bucket.flat.options());
    p.view.set_(bucket.flat.storage(), offset, p.tensor.sizes(), p.tensor.contiguous().strides());
    offset += p.tensor.numel();
  }
}

// shard_gradients, once the bucket is launched: the communicator keeps what it still reads alive (Buffer keepalive).
void Reducer::State::release_flat(Bucket& bucket) {
  bucket.flat = at::Tensor();
  for (std::size_t index : bucket.params) params[index].view = at::Tensor();
}

void Reducer::State::mark_ready(std::size_t index) {
  std::lock_guard<std::mutex> lock(mutex);
  if (no_sync_depth > 0) return;
  Param& p = params[index];
  if (p.ready) return;  // a reducer nobody finishes (the model wrapped again in another) stays out of the way
  if (shards_freed) throw ReducerError("a backward after the end of the run: its gradient shards are freed");
  p.ready = true;
  if (iteration == 0) ready_order.push_back(index);
  const at::Tensor grad = p.tensor.grad();
  at::NoGradGuard no_grad;
  Bucket& bucket = buckets[p.bucket];
  if (!bucket.flat.defined()) allocate_flat(bucket);
  if (!grad.defined()) {
    p.view.zero_();
  } else if (grad.data_ptr() != p.view.data_ptr()) {
    p.view.copy_(grad);
  }
  p.view.div_(static_cast<double>(comm.size()));
  // The bucket has the gradient now: autograd's own tensor goes at once (in the first iteration, and whenever the
  // gradient was not already the bucket's view), not when the reduction ends.
  p.tensor.mutable_grad() = options.shard_gradients ? at::Tensor() : p.view;
  if (--bucket.pending == 0) launch_ready_buckets();
}

void Reducer::State::launch_ready_buckets() {
  while (next_to_launch < buckets.size() && buckets[next_to_launch].pending == 0) {
    Bucket& bucket = buckets[next_to_launch++];
    bucket.launched_at = std::chrono::steady_clock::now();
    if (!options.shard_gradients) {
      bucket.flat[bucket.flat.numel() - 1].fill_(static_cast<double>(bucket.unused_here));
      if (!bucket.wire.is_same(bucket.flat)) bucket.wire.copy_(bucket.flat);
      bucket.work = comm.allreduce(bucket.wire, comm::ReduceOp::kSum);
      continue;
    }
    at::Tensor wire = bucket.flat;
    if (bucket.wire.defined()) {
      bucket.wire.copy_(bucket.flat);
      wire = bucket.wire;
    } else if (options.compression) {
      wire = bucket.flat.to(*options.compression);
    }
    bucket.work = comm.reduce_scatter(bucket.wire_shard, wire, comm::ReduceOp::kSum);
    bucket.in_flight = wire;
    release_flat(bucket);
    pace_in_flight();
  }
}

// A reduce-scattered bucket's full copy lives until the collective has read it. When backward produces buckets
// faster than they travel, every one of them would be alive at once — the whole gradient, which stage 2 exists not
// to hold — so backward waits for the oldest while more than a bucket's worth is in flight (on a GPU the wait
// orders streams only; the caching allocator reuses a bucket's memory once its collective is done). Buckets the
// caller chose (a block each in ZeRO stage 3) are as large as their blocks: only the newest stays in flight, and
// overlaps the next block's backward. Measured in bench/memory_bench.cpp (docs/memory.md).
void Reducer::State::pace_in_flight() {
  const auto bytes = [](const at::Tensor& t) { return t.numel() * static_cast<std::int64_t>(t.element_size()); };
  std::int64_t in_flight = 0;
  for (std::size_t b = oldest_in_flight; b < next_to_launch; ++b) in_flight += bytes(buckets[b].in_flight);
  const auto limit = options.bucket_groups.empty() ? static_cast<std::int64_t>(options.bucket_cap_bytes) : 0;
  while (in_flight > limit && oldest_in_flight + 1 < next_to_launch) {
    Bucket& oldest = buckets[oldest_in_flight++];
    oldest.work->wait();
    in_flight -= bytes(oldest.in_flight);
    oldest.in_flight = at::Tensor();
  }
}

void Reducer::State::reset_for_next_iteration() {
  for (Param& p : params) p.ready = false;
  for (Bucket& bucket : buckets) {
    bucket.pending = bucket.params.size();
    bucket.unused_here = 0;
    bucket.work.reset();
    bucket.in_flight = at::Tensor();
  }
  next_to_launch = 0;
  oldest_in_flight = 0;
  unused_here.clear();
}

void Reducer::State::rebuild_from_ready_order() {
  // Rank 0's order, completed with the parameters it never saw ready, decides for everyone.
  std::vector<std::size_t> order = ready_order;
  std::vector<bool> seen(params.size(), false);
  for (std::size_t index : order) seen[index] = true;
  for (std::size_t i = params.size(); i-- > 0;) {
    if (!seen[i]) order.push_back(i);
  }
  const std::vector<std::int64_t> shared = control->broadcast(std::vector<std::int64_t>(order.begin(), order.end()), 0);
  order.assign(shared.begin(), shared.end());

  std::vector<at::Tensor> reduced;
  for (Param& p : params) reduced.push_back(p.view);
  build_buckets(plan_by_size(order));
  at::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params.size(); ++i) {
    params[i].view.copy_(reduced[i]);
    params[i].tensor.mutable_grad() = params[i].view;
  }
  verify_plan();
}

std::string Reducer::State::plan_text() const {
  std::string plan;
  for (const Bucket& bucket : buckets) plan += fmt::format("{};", fmt::join(bucket.params, ","));
  return plan;
}

void Reducer::State::verify_plan() {
  const std::string plan = plan_text();
  if (!control->same_everywhere(comm::fnv1a(plan))) {
    throw ReducerError(
        fmt::format("gradient bucket plans differ across ranks (rank {} has {} buckets: {}); every "
                    "rank must build the same plan",
                    comm.rank(), buckets.size(), plan));
  }
}

Reducer::Reducer(std::vector<NamedTensor> parameters, std::vector<NamedTensor> buffers, comm::Communicator& comm,
                 ReducerOptions options)
    : state_(std::make_unique<State>(comm, std::move(options))) {
  if (state_->options.first_bucket_bytes == 0 || state_->options.bucket_cap_bytes == 0) {
    throw ReducerError("bucket sizes must be positive (first_bucket_bytes, bucket_cap_bytes)");
  }
  if (state_->options.compression && *state_->options.compression != at::kBFloat16 &&
      *state_->options.compression != at::kHalf) {
    throw ReducerError("gradient compression must be bfloat16 or float16");
  }
  if ((state_->options.shard_gradients || !state_->options.bucket_groups.empty()) && state_->options.rebuild_buckets) {
    throw ReducerError("sharded gradients and bucket groups need a fixed bucket plan: turn rebuild_buckets off");
  }

  // Same model everywhere? Compare one hash; on a difference, find and name it on every rank.
  if (const std::string difference = model_difference(parameters, buffers, *state_->control); !difference.empty()) {
    throw ReducerError(difference);
  }

  {
    at::NoGradGuard no_grad;
    std::vector<comm::WorkPtr> works;
    for (const auto* group : {&parameters, &buffers}) {
      for (const auto& t : *group) {
        if (needs_host_staging(comm, t.tensor)) {
          broadcast_in_place(comm, t.tensor, 0);
        } else {
          works.push_back(comm.broadcast(t.tensor, 0));
        }
      }
    }
    for (auto& work : works) work->wait();
  }

  for (auto& p : parameters) {
    if (!p.tensor.requires_grad()) continue;
    State::Param param;
    param.name = std::move(p.name);
    param.tensor = p.tensor;
    state_->params.push_back(std::move(param));
  }
  if (state_->params.empty()) throw ReducerError("the model has no parameter that requires a gradient");
  if (state_->options.bucket_groups.empty()) {
    std::vector<std::size_t> reverse(state_->params.size());
    for (std::size_t i = 0; i < reverse.size(); ++i) reverse[i] = reverse.size() - 1 - i;
    state_->build_buckets(state_->plan_by_size(reverse));
  } else {
    state_->build_buckets(state_->plan_by_groups());
  }
  state_->verify_plan();

  for (std::size_t i = 0; i < state_->params.size(); ++i) {
    auto accumulator = torch::autograd::impl::grad_accumulator(state_->params[i].tensor);
    state_->hook_keys.push_back(accumulator->add_post_hook(std::make_unique<ReadyHook>(state_.get(), i)));
    state_->accumulators.push_back(std::move(accumulator));
  }
}

// The accumulators belong to the parameters and outlive the reducer; their hooks must not call into a freed state
// (a model wrapped again in a new DistributedDataParallel, say).
Reducer::~Reducer() {
  for (std::size_t i = 0; i < state_->accumulators.size(); ++i) {
    state_->accumulators[i]->del_post_hook(state_->hook_keys[i]);
  }
}

void Reducer::finish_backward() {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.no_sync_depth > 0) return;
  at::NoGradGuard no_grad;
  for (State::Param& p : s.params) {
    if (p.ready) continue;
    p.ready = true;
    State::Bucket& bucket = s.buckets[p.bucket];
    if (!bucket.flat.defined()) s.allocate_flat(bucket);
    p.view.zero_();
    ++bucket.unused_here;
    --bucket.pending;
    s.unused_here.push_back(p.name);
  }
  s.launched_in_backward = s.next_to_launch;
  s.launch_ready_buckets();

  // On a GPU, wait() orders the compute stream after the bucket's collective without blocking the host; the one
  // host read is the unused-parameter count, summed over the buckets on the device first (or, for reduce-scattered
  // buckets, which have no count slot, summed on the control plane while they travel).
  double unused_anywhere = 0;
  if (s.options.shard_gradients) {
    unused_anywhere = static_cast<double>(s.control->sum(static_cast<std::int64_t>(s.unused_here.size())));
    for (State::Bucket& bucket : s.buckets) {
      bucket.work->wait();
      if (!bucket.wire_shard.is_same(bucket.shard)) bucket.shard.copy_(bucket.wire_shard);
    }
  } else {
    std::vector<at::Tensor> unused_counts;
    for (State::Bucket& bucket : s.buckets) {
      bucket.work->wait();
      if (!bucket.wire.is_same(bucket.flat)) bucket.flat.copy_(bucket.wire);
      unused_counts.push_back(bucket.flat.narrow(0, bucket.flat.numel() - 1, 1));
    }
    unused_anywhere = at::cat(unused_counts).sum().item<double>();
  }
  // Every allreduce has finished now (the read waited for them); a GPU's work reports when the host first saw it.
  for (std::size_t b = 0; b < s.buckets.size(); ++b) {
    State::Bucket& bucket = s.buckets[b];
    if (bucket.work->status() != comm::WorkStatus::kSucceeded) continue;
    Timeline::instance().add(s.options.shard_gradients ? "reduce-scatter bucket" : "allreduce bucket", "communication", bucket.launched_at, bucket.work->finished_at(),
                             Lane::kCommunication, static_cast<std::int64_t>(b));
  }
  if (unused_anywhere > 0 && !s.options.find_unused_parameters) {
    const std::string here = s.unused_here.empty() ? "none on this rank"
                                                   : fmt::format("{} on this rank: {}", s.unused_here.size(),
                                                                 fmt::join(s.unused_here, ", "));
    const std::string message = fmt::format(
        "{} parameter gradient(s) were never produced in iteration {} (rank {}: {}). Every parameter must take part "
        "in the loss on every rank; if some legitimately do not, enable find_unused_parameters",
        static_cast<long long>(unused_anywhere), s.iteration, s.comm.rank(), here);
    s.reset_for_next_iteration();
    throw ReducerError(message);
  }
  for (State::Param& p : s.params) {
    if (s.options.shard_gradients) break;  // a parameter keeps no gradient: its shard is on some rank
    if (!p.tensor.grad().defined() || p.tensor.grad().data_ptr() != p.view.data_ptr()) {
      p.tensor.mutable_grad() = p.view;
    }
  }
  if (s.iteration == 0 && s.options.rebuild_buckets) s.rebuild_from_ready_order();
  s.ready_order.clear();
  s.reset_for_next_iteration();
  ++s.iteration;
}

Reducer::NoSync::NoSync(Reducer& reducer) : reducer_(reducer) {
  std::lock_guard<std::mutex> lock(reducer_.state_->mutex);
  ++reducer_.state_->no_sync_depth;
}

Reducer::NoSync::~NoSync() {
  std::lock_guard<std::mutex> lock(reducer_.state_->mutex);
  --reducer_.state_->no_sync_depth;
}

// The reduced gradients this rank holds: whole buckets (their padding is zeros), or its shards.
std::vector<at::Tensor> Reducer::State::held_gradients() const {
  std::vector<at::Tensor> gradients;
  for (const Bucket& bucket : buckets) {
    gradients.push_back(options.shard_gradients ? bucket.shard : bucket.flat.narrow(0, 0, bucket.flat.numel() - 1));
  }
  return gradients;
}

Reducer::GradientChecks Reducer::check_gradients(std::optional<double> inv_scale, bool with_norm) {
  at::NoGradGuard no_grad;
  const std::vector<at::Tensor> gradients = state_->held_gradients();
  // [non-finite flag, then one sum of squares per bucket], in double, on the gradients' device.
  std::vector<at::Tensor> figures;
  if (inv_scale) {
    figures.push_back(compat::unscale_and_find_non_finite(gradients, *inv_scale).to(at::kDouble).reshape({1}));
  } else {
    std::vector<at::Tensor> finite;
    for (const at::Tensor& g : gradients) finite.push_back(at::isfinite(g).all().reshape({1}));
    figures.push_back(at::logical_not(at::cat(finite).all()).to(at::kDouble).reshape({1}));
  }
  if (with_norm) {
    for (const at::Tensor& g : gradients) {
      const at::Tensor wide = g.to(at::kDouble);
      figures.push_back(wide.dot(wide).reshape({1}));
    }
  }
  const at::Tensor host = at::cat(figures).cpu();
  std::vector<double> values(host.data_ptr<double>(), host.data_ptr<double>() + host.numel());
  if (state_->options.shard_gradients) values = state_->control->sum(std::move(values));  // over the shards
  GradientChecks checks;
  checks.non_finite = values[0] != 0;
  // Summed on the host in bucket order: the same rounding on every rank and in every run.
  double sum_of_squares = 0;
  for (std::size_t b = 1; b < values.size(); ++b) sum_of_squares += values[b];
  checks.norm = std::sqrt(sum_of_squares);
  return checks;
}

void Reducer::scale_gradients(double factor) {
  at::NoGradGuard no_grad;
  for (const at::Tensor& gradient : state_->held_gradients()) gradient.mul_(factor);
}

std::vector<Reducer::BucketLayout> Reducer::layout() const {
  std::vector<BucketLayout> out;
  for (const State::Bucket& bucket : state_->buckets) {
    BucketLayout layout;
    layout.numel = bucket.numel;
    layout.shard_numel = bucket.shard_numel;
    std::int64_t offset = 0;
    for (std::size_t index : bucket.params) {
      layout.parameters.push_back(state_->params[index].tensor);
      layout.offsets.push_back(offset);
      offset += state_->params[index].tensor.numel();
    }
    out.push_back(std::move(layout));
  }
  return out;
}

at::Tensor Reducer::gradient_shard(std::size_t bucket) const {
  return state_->buckets.at(bucket).shard;
}

bool Reducer::plan_is_final() const {
  return !state_->options.rebuild_buckets || state_->iteration > 0;
}

std::int64_t Reducer::gradient_bytes() const {
  std::int64_t bytes = 0;
  for (const State::Bucket& bucket : state_->buckets) {
    const at::Tensor& held = state_->options.shard_gradients ? bucket.shard : bucket.flat;
    if (held.defined()) bytes += held.numel() * static_cast<std::int64_t>(held.element_size());
  }
  return bytes;
}

void Reducer::free_gradient_shards() {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.options.shard_gradients) return;
  s.shards_freed = true;
  for (State::Bucket& bucket : s.buckets) {
    bucket.shard = at::Tensor();
    bucket.wire_shard = at::Tensor();
  }
}

std::vector<std::vector<std::size_t>> Reducer::bucket_plan() const {
  std::vector<std::vector<std::size_t>> plan;
  for (const State::Bucket& bucket : state_->buckets) plan.push_back(bucket.params);
  return plan;
}

std::uint64_t Reducer::plan_hash() const {
  return comm::fnv1a(state_->plan_text());
}

std::size_t Reducer::iteration() const {
  return state_->iteration;
}

std::size_t Reducer::buckets_launched_in_backward() const {
  return state_->launched_in_backward;
}

}  // namespace dtrain::runtime
