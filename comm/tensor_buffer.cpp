#include "comm/tensor_buffer.h"

#include <fmt/format.h>

#include "comm/error.h"

namespace dtrain::comm {

DataType to_data_type(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Float:
      return DataType::kFloat32;
    case c10::ScalarType::Double:
      return DataType::kFloat64;
    case c10::ScalarType::BFloat16:
      return DataType::kBFloat16;
    case c10::ScalarType::Half:
      return DataType::kFloat16;
    case c10::ScalarType::Int:
      return DataType::kInt32;
    case c10::ScalarType::Long:
      return DataType::kInt64;
    case c10::ScalarType::Byte:
      return DataType::kUInt8;
    default:
      throw CommError(
          fmt::format("tensor dtype {} is not supported by dtrain's communicators (supported: float32, "
                      "float64, bfloat16, float16, int32, int64, uint8)",
                      c10::toString(type)));
  }
}

Buffer as_buffer(const at::Tensor& tensor, const char* role) {
  if (!tensor.defined()) throw CommError(fmt::format("{} is an undefined tensor", role));
  if (!tensor.is_contiguous()) {
    throw CommError(fmt::format("{} must be contiguous (call .contiguous() first); its strides are not", role));
  }
  Buffer buffer;
  buffer.dtype = to_data_type(tensor.scalar_type());
  if (tensor.is_cuda()) {
    buffer.device = DeviceKind::kCuda;
  } else if (tensor.is_cpu()) {
    buffer.device = DeviceKind::kCpu;
  } else {
    throw CommError(
        fmt::format("{} is on device {}; only CPU and CUDA tensors can be communicated", role, tensor.device().str()));
  }
  buffer.data = tensor.data_ptr();
  buffer.count = static_cast<std::size_t>(tensor.numel());
  buffer.keepalive = std::make_shared<const at::Tensor>(tensor);
  return buffer;
}

}  // namespace dtrain::comm
