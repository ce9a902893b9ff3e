#pragma once
// The vocabulary every backend shares: element types, reduction operators, operation kinds and the raw buffer view
// that collectives operate on. Nothing here depends on MPI, NCCL or LibTorch.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace dtrain::comm {

enum class DataType : std::uint8_t { kFloat32, kFloat64, kBFloat16, kFloat16, kInt32, kInt64, kUInt8 };
enum class ReduceOp : std::uint8_t { kSum, kAvg, kMax, kMin };
enum class OpType : std::uint8_t { kAllreduce, kBroadcast, kAllgather, kReduceScatter, kSend, kRecv, kBarrier, kSplit };
enum class DeviceKind : std::uint8_t { kCpu, kCuda };

std::size_t element_size(DataType dtype);
bool is_floating_point(DataType dtype);
const char* to_string(DataType dtype);
const char* to_string(ReduceOp op);
const char* to_string(OpType type);
const char* to_string(DeviceKind device);

// A contiguous run of `count` elements at `data` (host memory, or device memory of the NCCL backend's device).
// `keepalive` holds whatever owns the memory (a tensor, say) until the operation that uses it has finished.
struct Buffer {
  void* data = nullptr;
  std::size_t count = 0;
  DataType dtype = DataType::kFloat32;
  DeviceKind device = DeviceKind::kCpu;
  std::shared_ptr<const void> keepalive;

  std::size_t bytes() const { return count * element_size(dtype); }
};

// What one operation is: enough to describe it in an error, to compare it across ranks, and to benchmark it.
struct OpInfo {
  OpType type = OpType::kBarrier;
  std::uint64_t seq = 0;  // n-th collective (or n-th point-to-point op) issued on this communicator, from 0
  DataType dtype = DataType::kUInt8;
  std::size_t count = 0;  // elements per rank: the input of allreduce/broadcast/allgather/send, the output of
                          // reduce-scatter/recv
  ReduceOp op = ReduceOp::kSum;
  int peer = -1;  // broadcast root, send destination or recv source
  int tag = 0;
  std::uint64_t peer_seq = 0;  // point-to-point: the n-th send to (or receive from) `peer` on this communicator

  // "allreduce #12 (float32 x 1024, sum)"
  std::string describe() const;
};

}  // namespace dtrain::comm
