// Single-process tests of the backend-neutral vocabulary and of the tensor bridge.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "comm/error.h"
#include "comm/tensor_buffer.h"
#include "comm/types.h"

namespace dtrain::comm {
namespace {

TEST(Types, ElementSizesMatchLibTorch) {
  EXPECT_EQ(element_size(DataType::kFloat32), at::elementSize(at::kFloat));
  EXPECT_EQ(element_size(DataType::kFloat64), at::elementSize(at::kDouble));
  EXPECT_EQ(element_size(DataType::kBFloat16), at::elementSize(at::kBFloat16));
  EXPECT_EQ(element_size(DataType::kFloat16), at::elementSize(at::kHalf));
  EXPECT_EQ(element_size(DataType::kInt32), at::elementSize(at::kInt));
  EXPECT_EQ(element_size(DataType::kInt64), at::elementSize(at::kLong));
  EXPECT_EQ(element_size(DataType::kUInt8), at::elementSize(at::kByte));
}

TEST(Types, DescribeNamesEverythingAnErrorNeeds) {
  OpInfo info;
  info.type = OpType::kAllreduce;
  info.seq = 12;
  info.dtype = DataType::kBFloat16;
  info.count = 1024;
  info.op = ReduceOp::kAvg;
  EXPECT_EQ(info.describe(), "allreduce #12 (bfloat16 x 1024, avg)");
  info.type = OpType::kRecv;
  info.peer = 3;
  info.tag = 9;
  EXPECT_EQ(info.describe(), "recv #12 (bfloat16 x 1024 from rank 3, tag 9)");
  info.type = OpType::kBroadcast;
  EXPECT_EQ(info.describe(), "broadcast #12 (bfloat16 x 1024, root 3)");
}

TEST(TensorBuffer, ViewsTheTensorAndKeepsItAlive) {
  Buffer buffer;
  void* data = nullptr;
  {
    at::Tensor tensor = at::arange(10, at::kLong);
    data = tensor.data_ptr();
    buffer = as_buffer(tensor);
  }
  EXPECT_EQ(buffer.data, data);
  EXPECT_EQ(buffer.count, 10u);
  EXPECT_EQ(buffer.dtype, DataType::kInt64);
  EXPECT_EQ(buffer.device, DeviceKind::kCpu);
  EXPECT_EQ(static_cast<const int64_t*>(buffer.data)[9], 9);  // still alive through keepalive
}

TEST(TensorBuffer, RejectsWhatCannotBeSentAsIs) {
  EXPECT_THROW(as_buffer(at::Tensor()), CommError);
  EXPECT_THROW(as_buffer(at::ones({3, 4}).t()), CommError);
  try {
    as_buffer(at::ones({2}, at::kBool), "gradient bucket");
    FAIL();
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("dtype Bool is not supported"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dtrain::comm
