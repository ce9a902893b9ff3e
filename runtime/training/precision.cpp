#include "runtime/training/precision.h"

#include "runtime/model/torch_compat.h"

namespace dtrain::runtime {

const char* to_string(Precision precision) {
  switch (precision) {
    case Precision::kFp32:
      return "none";
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp16:
      return "fp16";
  }
  return "?";
}

at::Tensor forward_in(Precision precision, TrainableModel& model, const at::Tensor& inputs) {
  compat::AutocastScope autocast(precision != Precision::kFp32, inputs.device().type(),
                                 precision == Precision::kFp16 ? at::kHalf : at::kBFloat16);
  return model.forward(inputs);
}

}  // namespace dtrain::runtime
