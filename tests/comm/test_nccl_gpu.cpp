// The NCCL backend on real GPUs (label gpu; tests/gpu/run.sh runs these). Each test fails, never skips, when the GPUs
// it needs are not visible: a GPU lane that passes by skipping would prove nothing.
// Every collective x every dtype with exact results: the inputs differ per rank and per element (no all-ones), small
// integers and halves that every dtype holds exactly, so a wrong offset, a wrong root or a wrong operator shows.

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm/error.h"
#include "comm/nccl_communicator.h"

namespace dtrain::comm {
namespace {

constexpr auto kHostWait = std::chrono::seconds(60);

int visible_devices() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

// Element i of rank r's input: distinct across ranks and along the buffer, at most 5 * (r + 1) + 2.
double input_value(int rank, std::size_t i) {
  return static_cast<double>((rank + 1) * static_cast<int>(i % 5 + 1) + static_cast<int>(i % 3));
}

std::uint16_t to_bfloat16(float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  return static_cast<std::uint16_t>(bits >> 16);  // exact: the test's values need at most 8 significant bits
}

float from_bfloat16(std::uint16_t half) {
  const std::uint32_t bits = static_cast<std::uint32_t>(half) << 16;
  float value = 0;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// IEEE half for the test's values (zero or normal, at most 11 significant bits): no rounding needed.
std::uint16_t to_float16(float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  if ((bits & 0x7fffffffu) == 0) return static_cast<std::uint16_t>(sign);
  const int exponent = static_cast<int>((bits >> 23) & 0xffu) - 127 + 15;
  return static_cast<std::uint16_t>(sign | (static_cast<std::uint32_t>(exponent) << 10) | ((bits >> 13) & 0x3ffu));
}

float from_float16(std::uint16_t half) {
  const std::uint32_t sign = static_cast<std::uint32_t>(half & 0x8000u) << 16;
  if ((half & 0x7fffu) == 0) {
    float zero = 0;
    std::memcpy(&zero, &sign, sizeof(zero));
    return zero;
  }
  const std::uint32_t exponent = static_cast<std::uint32_t>(((half >> 10) & 0x1f) - 15 + 127);
  const std::uint32_t bits = sign | (exponent << 23) | (static_cast<std::uint32_t>(half & 0x3ffu) << 13);
  float value = 0;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

std::vector<unsigned char> encode(const std::vector<double>& values, DataType dtype) {
  std::vector<unsigned char> bytes(values.size() * element_size(dtype));
  for (std::size_t i = 0; i < values.size(); ++i) {
    unsigned char* out = bytes.data() + i * element_size(dtype);
    const double v = values[i];
    switch (dtype) {
      case DataType::kFloat32: {
        const float f = static_cast<float>(v);
        std::memcpy(out, &f, sizeof(f));
        break;
      }
      case DataType::kFloat64:
        std::memcpy(out, &v, sizeof(v));
        break;
      case DataType::kBFloat16: {
        const std::uint16_t h = to_bfloat16(static_cast<float>(v));
        std::memcpy(out, &h, sizeof(h));
        break;
      }
      case DataType::kFloat16: {
        const std::uint16_t h = to_float16(static_cast<float>(v));
        std::memcpy(out, &h, sizeof(h));
        break;
      }
      case DataType::kInt32: {
        const auto n = static_cast<std::int32_t>(v);
        std::memcpy(out, &n, sizeof(n));
        break;
      }
      case DataType::kInt64: {
        const auto n = static_cast<std::int64_t>(v);
        std::memcpy(out, &n, sizeof(n));
        break;
      }
      case DataType::kUInt8:
        *out = static_cast<unsigned char>(v);
        break;
    }
  }
  return bytes;
}

std::vector<double> decode(const std::vector<unsigned char>& bytes, DataType dtype) {
  std::vector<double> values(bytes.size() / element_size(dtype));
  for (std::size_t i = 0; i < values.size(); ++i) {
    const unsigned char* in = bytes.data() + i * element_size(dtype);
    switch (dtype) {
      case DataType::kFloat32: {
        float f = 0;
        std::memcpy(&f, in, sizeof(f));
        values[i] = f;
        break;
      }
      case DataType::kFloat64:
        std::memcpy(&values[i], in, sizeof(double));
        break;
      case DataType::kBFloat16:
      case DataType::kFloat16: {
        std::uint16_t h = 0;
        std::memcpy(&h, in, sizeof(h));
        values[i] = dtype == DataType::kBFloat16 ? from_bfloat16(h) : from_float16(h);
        break;
      }
      case DataType::kInt32: {
        std::int32_t n = 0;
        std::memcpy(&n, in, sizeof(n));
        values[i] = n;
        break;
      }
      case DataType::kInt64: {
        std::int64_t n = 0;
        std::memcpy(&n, in, sizeof(n));
        values[i] = static_cast<double>(n);
        break;
      }
      case DataType::kUInt8:
        values[i] = *in;
        break;
    }
  }
  return values;
}

const DataType kDtypes[] = {DataType::kFloat32, DataType::kFloat64, DataType::kBFloat16, DataType::kFloat16,
                            DataType::kInt32,   DataType::kInt64,   DataType::kUInt8};

class NcclGpuTest : public testing::Test {
 protected:
  void SetUp() override {
    const int devices = visible_devices();
    ASSERT_GE(devices, 1) << "no CUDA device is visible: the GPU tests need one (they never pass by skipping)";
    ASSERT_GE(devices, world_size()) << "NCCL needs one GPU per rank: " << world_size() << " ranks, " << devices
                                     << " GPUs visible";
    comm_ = NcclCommunicator::create(MPI_COMM_WORLD, world_rank());
  }

  void TearDown() override {
    comm_.reset();
    for (void* p : allocations_) cudaFree(p);
  }

  // A device buffer holding `values` as `dtype`, freed with the test.
  Buffer device_buffer(const std::vector<double>& values, DataType dtype) {
    const std::vector<unsigned char> bytes = encode(values, dtype);
    void* data = nullptr;
    EXPECT_EQ(cudaMalloc(&data, bytes.size() + 1), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, bytes.data(), bytes.size(), cudaMemcpyHostToDevice), cudaSuccess);
    allocations_.push_back(data);
    Buffer buffer;
    buffer.data = data;
    buffer.count = values.size();
    buffer.dtype = dtype;
    buffer.device = DeviceKind::kCuda;
    return buffer;
  }

  // Reads on the legacy default stream, which Work::wait() made wait for the operation.
  static std::vector<double> host_copy(const Buffer& buffer) {
    std::vector<unsigned char> bytes(buffer.bytes());
    EXPECT_EQ(cudaMemcpy(bytes.data(), buffer.data, bytes.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    return decode(bytes, buffer.dtype);
  }

  static std::vector<double> inputs(int rank, std::size_t count) {
    std::vector<double> values(count);
    for (std::size_t i = 0; i < count; ++i) values[i] = input_value(rank, i);
    return values;
  }

  std::unique_ptr<NcclCommunicator> comm_;
  std::vector<void*> allocations_;
};

std::vector<double> reduced(int size, std::size_t count, ReduceOp op, std::size_t offset = 0) {
  std::vector<double> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    double acc = input_value(0, offset + i);
    for (int r = 1; r < size; ++r) {
      const double v = input_value(r, offset + i);
      acc = op == ReduceOp::kMax ? std::max(acc, v) : op == ReduceOp::kMin ? std::min(acc, v) : acc + v;
    }
    out[i] = op == ReduceOp::kAvg ? acc / size : acc;
  }
  return out;
}

TEST_F(NcclGpuTest, AllreduceOfEveryDtypeAndOperatorIsExact) {
  const int rank = comm_->rank();
  const int size = comm_->size();
  for (const DataType dtype : kDtypes) {
    for (const ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
      // Averages of integers are refused by the communicator; uint8 sums stay below 256 at up to 8 ranks.
      if (op == ReduceOp::kAvg && !is_floating_point(dtype)) continue;
      Buffer buffer = device_buffer(inputs(rank, 1001), dtype);
      comm_->allreduce(buffer, op)->wait();
      EXPECT_EQ(host_copy(buffer), reduced(size, 1001, op)) << to_string(dtype) << " " << to_string(op);
    }
  }
}

TEST_F(NcclGpuTest, BroadcastAllgatherReduceScatterOfEveryDtypeAreExact) {
  const int rank = comm_->rank();
  const int size = comm_->size();
  for (const DataType dtype : kDtypes) {
    for (int root = 0; root < size; ++root) {
      Buffer buffer = device_buffer(inputs(rank, 77), dtype);
      comm_->broadcast(buffer, root)->wait();
      EXPECT_EQ(host_copy(buffer), inputs(root, 77)) << to_string(dtype) << " root " << root;
    }

    Buffer mine = device_buffer(inputs(rank, 13), dtype);
    Buffer all = device_buffer(std::vector<double>(13 * static_cast<std::size_t>(size), 0.0), dtype);
    comm_->allgather(all, mine)->wait();
    std::vector<double> expected;
    for (int r = 0; r < size; ++r) {
      const std::vector<double> part = inputs(r, 13);
      expected.insert(expected.end(), part.begin(), part.end());
    }
    EXPECT_EQ(host_copy(all), expected) << to_string(dtype);

    const std::size_t slice = 9;
    Buffer input = device_buffer(inputs(rank, slice * static_cast<std::size_t>(size)), dtype);
    Buffer output = device_buffer(std::vector<double>(slice, 0.0), dtype);
    comm_->reduce_scatter(output, input, ReduceOp::kSum)->wait();
    EXPECT_EQ(host_copy(output), reduced(size, slice, ReduceOp::kSum, slice * static_cast<std::size_t>(rank)))
        << to_string(dtype);
  }
  NcclCommunicator::wait_on_host(*comm_->barrier(), kHostWait);
}

TEST_F(NcclGpuTest, WaitOnHostSeesTheResultWithoutAStreamWait) {
  const int size = comm_->size();
  Buffer buffer = device_buffer(inputs(comm_->rank(), 4096), DataType::kFloat32);
  NcclCommunicator::wait_on_host(*comm_->allreduce(buffer, ReduceOp::kSum), kHostWait);
  std::vector<float> out(buffer.count);
  // A copy on a fresh non-blocking stream, which nothing orders after the operation but the host wait.
  cudaStream_t reader = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&reader, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(out.data(), buffer.data, buffer.bytes(), cudaMemcpyDeviceToHost, reader), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(reader), cudaSuccess);
  cudaStreamDestroy(reader);
  const std::vector<double> expected = reduced(size, 4096, ReduceOp::kSum);
  EXPECT_EQ(std::vector<double>(out.begin(), out.end()), expected);
}

TEST_F(NcclGpuTest, BuffersStayAliveUntilTheOperationHasFinished) {
  auto owner = std::make_shared<std::vector<int>>(1);
  std::weak_ptr<std::vector<int>> watch = owner;
  Buffer buffer = device_buffer(inputs(comm_->rank(), 1 << 20), DataType::kFloat32);
  buffer.keepalive = owner;
  owner.reset();
  WorkPtr work = comm_->allreduce(buffer, ReduceOp::kSum);
  buffer.keepalive.reset();
  NcclCommunicator::wait_on_host(*work, kHostWait);
  work.reset();
  // The monitor releases the owner once it has seen the end event; it looks every millisecond.
  for (int i = 0; i < 2000 && !watch.expired(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(watch.expired()) << "the buffer's owner was not released after the operation finished";
}

TEST_F(NcclGpuTest, HostBuffersAreRejected) {
  std::vector<float> host(4, 1.0f);
  Buffer buffer;
  buffer.data = host.data();
  buffer.count = host.size();
  EXPECT_THROW(comm_->allreduce(buffer, ReduceOp::kSum), CommError);
}

TEST_F(NcclGpuTest, SplitGivesWorkingSubCommunicatorsInKeyOrder) {
  const int rank = comm_->rank();
  const int size = comm_->size();
  // Two colours (even and odd ranks), ordered by descending rank: a child rank follows the key, not the parent rank.
  std::unique_ptr<Communicator> child = comm_->split(rank % 2, -rank, "parity");
  ASSERT_NE(child, nullptr);
  std::vector<int> members;
  for (int r = size - 1; r >= 0; --r) {
    if (r % 2 == rank % 2) members.push_back(r);
  }
  ASSERT_EQ(child->size(), static_cast<int>(members.size()));
  EXPECT_EQ(members[static_cast<std::size_t>(child->rank())], rank);
  Buffer buffer = device_buffer(inputs(rank, 257), DataType::kFloat32);
  NcclCommunicator::wait_on_host(*child->allreduce(buffer, ReduceOp::kSum), kHostWait);
  std::vector<double> expected(257, 0.0);
  for (int r : members) {
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] += input_value(r, i);
  }
  EXPECT_EQ(host_copy(buffer), expected);
}

TEST_F(NcclGpuTest, SendAndReceiveBothWaysBetweenEveryPair) {
  const int rank = comm_->rank();
  const int size = comm_->size();
  ASSERT_GE(size, 2) << "point-to-point needs 2 ranks (run with 2 GPUs or more)";
  // Every rank walks the pairs in the same order, so no two ranks wait on each other's later operation.
  for (int a = 0; a < size; ++a) {
    for (int b = a + 1; b < size; ++b) {
      if (rank != a && rank != b) continue;
      const int peer = rank == a ? b : a;
      for (const int sender : {a, b}) {
        const int receiver = sender == a ? b : a;
        // The payload names its sender and receiver, so a message delivered to the wrong rank shows.
        std::vector<double> payload = inputs(sender, 333);
        for (double& v : payload) v += 10 * receiver;
        if (rank == sender) {
          Buffer out = device_buffer(payload, DataType::kFloat32);
          NcclCommunicator::wait_on_host(*comm_->send(out, peer, 0), kHostWait);
        } else {
          Buffer in = device_buffer(std::vector<double>(333, -1.0), DataType::kFloat32);
          NcclCommunicator::wait_on_host(*comm_->recv(in, peer, 0), kHostWait);
          EXPECT_EQ(host_copy(in), payload) << "from " << sender << " to " << receiver;
        }
      }
    }
  }
}

TEST_F(NcclGpuTest, AnOperationPastItsDeadlineAbortsTheCommunicatorWithAClearError) {
  const int rank = comm_->rank();
  ASSERT_GE(comm_->size(), 2) << "a receive that no peer matches needs 2 ranks (run with 2 GPUs or more)";
  if (rank == 0) {
    Buffer in = device_buffer(std::vector<double>(16, 0.0), DataType::kFloat32);
    WorkPtr work = comm_->recv(in, 1, 0);  // rank 1 never sends
    try {
      NcclCommunicator::wait_on_host(*work, std::chrono::milliseconds(500));
      FAIL() << "a receive without a send must time out";
    } catch (const CommTimeout& e) {
      EXPECT_NE(std::string(e.what()).find("did not finish within 500 ms (the NCCL communicator is aborted)"),
                std::string::npos)
          << e.what();
    }
    EXPECT_THROW(comm_->allreduce(in, ReduceOp::kSum), CommError);
  } else {
    // Its peer is gone for good: end this side too rather than wait for it at destruction.
    comm_->abort("rank 0 aborted its side of the communicator (test)");
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace dtrain::comm
