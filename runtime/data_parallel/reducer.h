#pragma once
// Note [Gradient buckets]
// The Reducer is dtrain's DistributedDataParallel core (what LibTorch lacks): it averages gradients across the ranks
// of a communicator while backward is still running.
//  - Parameters are grouped into buckets: one flat tensor per bucket, parameters in reverse registration order (the
//    order backward produces their gradients), a small first bucket (ReducerOptions::first_bucket_bytes) so that
//    communication starts early, then up to bucket_cap_bytes each; one dtype per bucket.
//  - A post-hook on each parameter's gradient accumulator copies the fresh gradient into its bucket, divided by the
//    world size on the way; when a bucket's last gradient arrives it is handed to the communicator at once, as an
//    allreduce(sum), while backward goes on. Buckets are always launched in bucket-index order, on every rank, so
//    the n-th allreduce means the same bucket everywhere (a ready bucket waits for the ones before it).
//  - After the first iteration the buckets are rebuilt once from the order in which gradients really became ready;
//    rank 0's order is broadcast so that every rank builds the same plan, and the plan's hash is compared across ranks.
//  - When the buckets have been reduced, every parameter's .grad becomes a view into its bucket, so later iterations
//    accumulate straight into the bucket and no second copy is made.
//  - Each bucket carries one extra element: the number of its parameters that got no gradient on this rank. It is
//    summed with the gradients, so every rank learns in the same collective whether some rank left a parameter
//    unused, and every rank raises the same error (or, with find_unused_parameters, treats it as a zero gradient).
//  - Because every rank ends with bit-identical reduced buckets, anything computed from them alone (the AMP
//    found-inf flag, a gradient norm) is identical on every rank without another collective.
//  - Every bucket is padded with zeros to a multiple of the world size, so that it splits into one equal shard per
//    rank: shard r is elements [r * shard_numel, (r + 1) * shard_numel) (Note [Optimizer shards]). With
//    shard_gradients (ZeRO stage 2) a bucket is reduce-scattered instead of allreduced: each rank receives only its
//    shard, the full bucket lives only from its first gradient to its launch, parameters keep no .grad, the unused
//    counts travel on the control plane, and the figures (found-inf, norm) are summed over the shards.
//  - With bucket_groups (ZeRO stage 3) each bucket is one block of the model, so that a block's gradients leave as
//    soon as its backward is done and its gathered parameters can go (Note [Parameter shards]).

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "runtime/model/named_tensor.h"

namespace dtrain::runtime {

class ReducerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ReducerOptions {
  std::size_t first_bucket_bytes = std::size_t{1} << 20;
  std::size_t bucket_cap_bytes = std::size_t{25} << 20;
  // false: a parameter that gets no gradient on some rank is an error naming it. true: it counts as a zero gradient.
  bool find_unused_parameters = false;
  // Rebuild the buckets once, after the first iteration, from the order gradients became ready.
  bool rebuild_buckets = true;
  // Allreduce the buckets in this dtype (kBFloat16 or kHalf) to halve the traffic; gradients are cast back after.
  std::optional<c10::ScalarType> compression;
  // ZeRO stage 2: reduce-scatter each bucket, keep only this rank's shard (needs rebuild_buckets off: the
  // optimizer's shards follow the first plan).
  bool shard_gradients = false;
  // Buckets chosen by the caller instead of filled up to the caps: each group of parameter names (trainable ones;
  // one dtype per group) is one bucket, the last group launched first. ZeRO stage 3 reduces a model block by block.
  // Needs rebuild_buckets off.
  std::vector<std::vector<std::string>> bucket_groups;
};

class Reducer {
 public:
  // Collective over `comm`: checks that every rank has the same parameters (names, shapes, dtypes) and buffers,
  // throwing ReducerError naming the first difference on every rank otherwise, then broadcasts rank 0's values.
  Reducer(std::vector<NamedTensor> parameters, std::vector<NamedTensor> buffers, comm::Communicator& comm,
          ReducerOptions options = {});
  ~Reducer();
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  // Call once after each loss.backward() (DistributedDataParallel::backward does): launches the buckets that are
  // not launched yet, waits for all of them, and leaves the averaged gradients in every parameter's .grad.
  // Throws ReducerError if some rank produced no gradient for a parameter (unless find_unused_parameters).
  void finish_backward();

  // While a NoSync is alive, backward passes only accumulate gradients locally (gradient accumulation); the next
  // backward outside it reduces the accumulated sum.
  class NoSync {
   public:
    explicit NoSync(Reducer& reducer);
    ~NoSync();
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    Reducer& reducer_;
  };

  // What the optimizer update decides from the reduced gradients of the last iteration; the same on every rank.
  struct GradientChecks {
    bool non_finite = false;  // some gradient is inf or NaN
    double norm = 0;          // global L2 norm (computed only when asked for)
  };
  // With `inv_scale` (loss scaling), first multiplies every reduced gradient by it (one fused kernel per bucket on
  // LibTorch 2.x, see runtime/model/torch_compat.h); non_finite then describes the gradients before. The norm is
  // that of the gradients after. Computed on the gradients' device and read back together: one host
  // synchronisation on a GPU.
  // With shard_gradients, each rank checks its shards and the figures are summed on the control plane.
  GradientChecks check_gradients(std::optional<double> inv_scale, bool with_norm);
  // Multiplies every reduced gradient this rank holds by `factor` (clipping), one operation per bucket.
  void scale_gradients(double factor);

  // Where each parameter lies in the flat space of its bucket, for the sharded optimizer (Note [Optimizer shards]).
  struct BucketLayout {
    std::vector<at::Tensor> parameters;  // in bucket order
    std::vector<std::int64_t> offsets;   // of each parameter's first element
    std::int64_t numel = 0;              // gradient elements, padding excluded
    std::int64_t shard_numel = 0;        // elements per rank: the padded bucket is size() * shard_numel
  };
  std::vector<BucketLayout> layout() const;
  // This rank's shard of bucket `bucket`'s reduced gradients (shard_numel elements). The same tensor every
  // iteration: a view into the bucket, or with shard_gradients the reduce-scatter's output.
  at::Tensor gradient_shard(std::size_t bucket) const;
  // Whether the plan can still change (rebuilt after the first iteration).
  bool plan_is_final() const;

  // The bucket plan: parameter indices per bucket, in launch order.
  std::vector<std::vector<std::size_t>> bucket_plan() const;
  std::uint64_t plan_hash() const;
  std::size_t iteration() const;
  // How many buckets of the last reduced iteration were handed to the communicator while backward was still running
  // (the overlap); the rest were launched by finish_backward.
  std::size_t buckets_launched_in_backward() const;
  // Bytes of gradient memory the reducer holds between steps (buckets, or shards with shard_gradients).
  std::int64_t gradient_bytes() const;
  // With shard_gradients, at the end of a run: frees the gradient shards (ZeRO stage 3 gathers the whole model into
  // their memory). The reducer reduces nothing more: a later backward throws ReducerError.
  void free_gradient_shards();

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace dtrain::runtime
