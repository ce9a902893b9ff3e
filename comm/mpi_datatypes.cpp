#include "comm/mpi_datatypes.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <mutex>

#include "comm/mpi_check.h"

namespace dtrain::comm {

namespace {

struct HalfTypes {
  MPI_Datatype bf16 = MPI_DATATYPE_NULL;
  MPI_Datatype fp16 = MPI_DATATYPE_NULL;
  MPI_Op sum = MPI_OP_NULL;
  MPI_Op max = MPI_OP_NULL;
  MPI_Op min = MPI_OP_NULL;
};

HalfTypes& half_types();

template <typename T, typename Combine>
void combine_as_float(const void* in, void* inout, int len, Combine combine) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < len; ++i) b[i] = T(combine(static_cast<float>(a[i]), static_cast<float>(b[i])));
}

template <typename Combine>
void combine_half(void* in, void* inout, int* len, MPI_Datatype* type, Combine combine) {
  if (*type == half_types().bf16) {
    combine_as_float<c10::BFloat16>(in, inout, *len, combine);
  } else {
    combine_as_float<c10::Half>(in, inout, *len, combine);
  }
}

void half_sum(void* in, void* inout, int* len, MPI_Datatype* type) {
  combine_half(in, inout, len, type, [](float a, float b) { return a + b; });
}
void half_max(void* in, void* inout, int* len, MPI_Datatype* type) {
  combine_half(in, inout, len, type, [](float a, float b) { return std::max(a, b); });
}
void half_min(void* in, void* inout, int* len, MPI_Datatype* type) {
  combine_half(in, inout, len, type, [](float a, float b) { return std::min(a, b); });
}

// Created on first use (MPI must be initialized by then) and left to MPI_Finalize.
HalfTypes& half_types() {
  static HalfTypes types;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string context = "creating MPI types for 16-bit floats";
    DTRAIN_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &types.bf16), context);
    DTRAIN_MPI_CHECK(MPI_Type_commit(&types.bf16), context);
    DTRAIN_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &types.fp16), context);
    DTRAIN_MPI_CHECK(MPI_Type_commit(&types.fp16), context);
    DTRAIN_MPI_CHECK(MPI_Op_create(&half_sum, /*commute=*/1, &types.sum), context);
    DTRAIN_MPI_CHECK(MPI_Op_create(&half_max, /*commute=*/1, &types.max), context);
    DTRAIN_MPI_CHECK(MPI_Op_create(&half_min, /*commute=*/1, &types.min), context);
  });
  return types;
}

template <typename T>
void divide_as(void* data, std::size_t count, int divisor) {
  T* values = static_cast<T*>(data);
  for (std::size_t i = 0; i < count; ++i) values[i] = T(static_cast<float>(values[i]) / static_cast<float>(divisor));
}

}  // namespace

MPI_Datatype mpi_datatype(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32:
      return MPI_FLOAT;
    case DataType::kFloat64:
      return MPI_DOUBLE;
    case DataType::kBFloat16:
      return half_types().bf16;
    case DataType::kFloat16:
      return half_types().fp16;
    case DataType::kInt32:
      return MPI_INT32_T;
    case DataType::kInt64:
      return MPI_INT64_T;
    case DataType::kUInt8:
      return MPI_UINT8_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_reduce_op(ReduceOp op, DataType dtype) {
  const bool half = dtype == DataType::kBFloat16 || dtype == DataType::kFloat16;
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return half ? half_types().sum : MPI_SUM;
    case ReduceOp::kMax:
      return half ? half_types().max : MPI_MAX;
    case ReduceOp::kMin:
      return half ? half_types().min : MPI_MIN;
  }
  return MPI_OP_NULL;
}

void divide_in_place(const Buffer& buffer, int divisor) {
  switch (buffer.dtype) {
    case DataType::kFloat32: {
      float* values = static_cast<float*>(buffer.data);
      for (std::size_t i = 0; i < buffer.count; ++i) values[i] /= static_cast<float>(divisor);
      break;
    }
    case DataType::kFloat64: {
      double* values = static_cast<double*>(buffer.data);
      for (std::size_t i = 0; i < buffer.count; ++i) values[i] /= static_cast<double>(divisor);
      break;
    }
    case DataType::kBFloat16:
      divide_as<c10::BFloat16>(buffer.data, buffer.count, divisor);
      break;
    case DataType::kFloat16:
      divide_as<c10::Half>(buffer.data, buffer.count, divisor);
      break;
    default:
      break;  // rejected when the op is issued (Communicator::allreduce)
  }
}

}  // namespace dtrain::comm
