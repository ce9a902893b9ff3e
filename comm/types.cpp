#include "comm/types.h"

#include <fmt/format.h>

namespace dtrain::comm {

std::size_t element_size(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat64:
    case DataType::kInt64:
      return 8;
    case DataType::kFloat32:
    case DataType::kInt32:
      return 4;
    case DataType::kBFloat16:
    case DataType::kFloat16:
      return 2;
    case DataType::kUInt8:
      return 1;
  }
  return 0;
}

bool is_floating_point(DataType dtype) {
  return dtype == DataType::kFloat32 || dtype == DataType::kFloat64 || dtype == DataType::kBFloat16 ||
         dtype == DataType::kFloat16;
}

const char* to_string(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32:
      return "float32";
    case DataType::kFloat64:
      return "float64";
    case DataType::kBFloat16:
      return "bfloat16";
    case DataType::kFloat16:
      return "float16";
    case DataType::kInt32:
      return "int32";
    case DataType::kInt64:
      return "int64";
    case DataType::kUInt8:
      return "uint8";
  }
  return "?";
}

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kAvg:
      return "avg";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
  }
  return "?";
}

const char* to_string(OpType type) {
  switch (type) {
    case OpType::kAllreduce:
      return "allreduce";
    case OpType::kBroadcast:
      return "broadcast";
    case OpType::kAllgather:
      return "allgather";
    case OpType::kReduceScatter:
      return "reduce_scatter";
    case OpType::kSend:
      return "send";
    case OpType::kRecv:
      return "recv";
    case OpType::kBarrier:
      return "barrier";
    case OpType::kSplit:
      return "split";
  }
  return "?";
}

const char* to_string(DeviceKind device) {
  return device == DeviceKind::kCpu ? "cpu" : "cuda";
}

std::string OpInfo::describe() const {
  switch (type) {
    case OpType::kAllreduce:
    case OpType::kReduceScatter:
      return fmt::format("{} #{} ({} x {}, {})", to_string(type), seq, to_string(dtype), count, to_string(op));
    case OpType::kBroadcast:
      return fmt::format("{} #{} ({} x {}, root {})", to_string(type), seq, to_string(dtype), count, peer);
    case OpType::kSend:
      return fmt::format("send #{} ({} x {} to rank {}, tag {})", seq, to_string(dtype), count, peer, tag);
    case OpType::kRecv:
      return fmt::format("recv #{} ({} x {} from rank {}, tag {})", seq, to_string(dtype), count, peer, tag);
    case OpType::kAllgather:
      return fmt::format("{} #{} ({} x {})", to_string(type), seq, to_string(dtype), count);
    case OpType::kBarrier:
    case OpType::kSplit:
      return fmt::format("{} #{}", to_string(type), seq);
  }
  return "?";
}

}  // namespace dtrain::comm
