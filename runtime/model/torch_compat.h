#pragma once
// Every LibTorch call that differs between 1.13 (Debian bookworm) and 2.x lives here, chosen by <torch/version.h>;
// no other file tests torch versions.

#include <ATen/core/Tensor.h>
#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

namespace dtrain::runtime::compat {

// CPU autocast to bf16 works everywhere; fp16 CPU kernels (addmm, relu, ...) exist from LibTorch 2.x on.
bool cpu_fp16_autocast_supported();

// Autocast on `device` (kCPU or kCUDA) on for its lifetime (or left as it was when `enabled` is false), restored on
// exit; nests.
class AutocastScope {
 public:
  AutocastScope(bool enabled, c10::DeviceType device, c10::ScalarType dtype);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_;
  c10::DeviceType device_;
  bool previous_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::BFloat16;
};

bool autocast_enabled(c10::DeviceType device);
c10::ScalarType autocast_dtype(c10::DeviceType device);

// tensors[i] *= inv_scale in place; returns a float scalar tensor on the tensors' device, 1 where any element (before
// scaling) was inf or NaN, else 0 — not read back, so the caller decides when the host waits for it. LibTorch 2.x
// does it in one fused kernel per dtype; 1.13 (whose fused kernel is CUDA-only) checks and multiplies separately.
// `portable` forces the 1.13 path (for tests). `tensors` must not be empty.
at::Tensor unscale_and_find_non_finite(const std::vector<at::Tensor>& tensors, double inv_scale, bool portable = false);

// The optimizer's per-parameter state (Adam's exp_avg, say), or nullptr before the first step. 1.13 keys it by the
// TensorImpl address as a string, 2.x by the address itself.
torch::optim::OptimizerParamState* optimizer_state(torch::optim::Optimizer& optimizer, const at::Tensor& parameter);

// Sets (or with nullptr removes) the optimizer's state of `parameter`.
void set_optimizer_state(torch::optim::Optimizer& optimizer, const at::Tensor& parameter,
                         std::unique_ptr<torch::optim::OptimizerParamState> state);

// Zeroes gradients in place (2.x's zero_grad() sets them to none by default, which would drop the reducer's
// gradient buckets and cost a copy per parameter in the next backward).
void zero_grad_in_place(torch::optim::Optimizer& optimizer);

// Call before running TorchScript modules: Debian's LibTorch 2.6 hangs in backward inside the TensorExpr fuser.
void prepare_torchscript_runtime();

}  // namespace dtrain::runtime::compat
