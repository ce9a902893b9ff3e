#pragma once
// The arithmetic a run computes its forward passes in (--amp): fp32 as is, or autocast to bf16 or fp16.

#include <ATen/core/Tensor.h>

#include "runtime/model/model.h"

namespace dtrain::runtime {

enum class Precision { kFp32, kBf16, kFp16 };
// "none", "bf16", "fp16": the --amp names.
const char* to_string(Precision precision);

// The model's forward pass under autocast to `precision` (kFp32: no autocast) on the inputs' device (CPU or CUDA).
at::Tensor forward_in(Precision precision, TrainableModel& model, const at::Tensor& inputs);

}  // namespace dtrain::runtime
