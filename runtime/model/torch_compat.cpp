#include "runtime/model/torch_compat.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/util/string_utils.h>
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>
#include <torch/version.h>

#define DTRAIN_TORCH_2 (TORCH_VERSION_MAJOR >= 2)

namespace dtrain::runtime::compat {

bool cpu_fp16_autocast_supported() {
  return DTRAIN_TORCH_2;
}

bool autocast_enabled(c10::DeviceType device) {
#if DTRAIN_TORCH_2
  return at::autocast::is_autocast_enabled(device);
#else
  return device == c10::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

c10::ScalarType autocast_dtype(c10::DeviceType device) {
#if DTRAIN_TORCH_2
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

namespace {

void set_autocast(c10::DeviceType device, bool enabled, c10::ScalarType dtype) {
#if DTRAIN_TORCH_2
  at::autocast::set_autocast_enabled(device, enabled);
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == c10::kCUDA) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

}  // namespace

AutocastScope::AutocastScope(bool enabled, c10::DeviceType device, c10::ScalarType dtype)
    : active_(enabled), device_(device) {
  if (!active_) return;
  previous_enabled_ = autocast_enabled(device_);
  previous_dtype_ = autocast_dtype(device_);
  set_autocast(device_, true, dtype);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // Leaving the outermost scope frees the cached low-precision copies of the weights.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(device_, previous_enabled_, previous_dtype_);
}

at::Tensor unscale_and_find_non_finite(const std::vector<at::Tensor>& tensors, double inv_scale, bool portable) {
#if DTRAIN_TORCH_2
  if (!portable) {
    const auto options = tensors.front().options().dtype(at::kFloat);
    at::Tensor found_inf = at::zeros({}, options);
    const at::Tensor scale = at::full({}, inv_scale, options);
    at::_amp_foreach_non_finite_check_and_unscale_(tensors, found_inf, scale);
    return found_inf;
  }
#endif
  (void)portable;
  std::vector<at::Tensor> finite;
  for (const at::Tensor& t : tensors) finite.push_back(at::isfinite(t).all().reshape({1}));
  const at::Tensor found = at::logical_not(at::cat(finite).all()).to(at::kFloat);
  for (const at::Tensor& t : tensors) const_cast<at::Tensor&>(t).mul_(inv_scale);
  return found;
}

torch::optim::OptimizerParamState* optimizer_state(torch::optim::Optimizer& optimizer, const at::Tensor& parameter) {
#if DTRAIN_TORCH_2
  auto& states = optimizer.state();
  auto it = states.find(parameter.unsafeGetTensorImpl());
#else
  auto& states = optimizer.state();
  auto it = states.find(c10::guts::to_string(parameter.unsafeGetTensorImpl()));
#endif
  return it == states.end() ? nullptr : it->second.get();
}

void set_optimizer_state(torch::optim::Optimizer& optimizer, const at::Tensor& parameter,
                         std::unique_ptr<torch::optim::OptimizerParamState> state) {
#if DTRAIN_TORCH_2
  void* key = parameter.unsafeGetTensorImpl();
#else
  const std::string key = c10::guts::to_string(parameter.unsafeGetTensorImpl());
#endif
  if (state) {
    optimizer.state()[key] = std::move(state);
  } else {
    optimizer.state().erase(key);
  }
}

void zero_grad_in_place(torch::optim::Optimizer& optimizer) {
#if DTRAIN_TORCH_2
  optimizer.zero_grad(/*set_to_none=*/false);
#else
  optimizer.zero_grad();
#endif
}

void prepare_torchscript_runtime() {
#if DTRAIN_TORCH_2
  torch::jit::setTensorExprFuserEnabled(false);
#endif
}

}  // namespace dtrain::runtime::compat
