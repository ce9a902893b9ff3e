#pragma once
// The bridge from LibTorch tensors to the backend-neutral Buffer. Only this file knows about both.

#include <ATen/core/Tensor.h>

#include "comm/types.h"

namespace dtrain::comm {

// The dtype of a tensor as the communication layer names it; throws CommError for unsupported dtypes.
DataType to_data_type(c10::ScalarType type);

// A view of `tensor`'s storage that keeps the tensor alive. Throws CommError, naming `role`, if the tensor is
// undefined, not contiguous, or of an unsupported dtype or device.
Buffer as_buffer(const at::Tensor& tensor, const char* role = "tensor");

}  // namespace dtrain::comm
