// The NCCL backend. Where CUDA devices exist it checks exact results of every collective on device memory; where
// none exist (CI) it checks that bootstrapping fails with a precise error from the checked CUDA call instead of
// crashing or hanging.

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>
#include <vector>

#include "comm/error.h"
#include "comm/nccl_communicator.h"

namespace dtrain::comm {
namespace {

int visible_devices() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

TEST(NcclCommunicator, WithoutADeviceBootstrapFailsWithTheCudaCallNamed) {
  if (visible_devices() > 0) GTEST_SKIP() << "a CUDA device is present; see the device tests";
  try {
    NcclCommunicator::create(MPI_COMM_WORLD, 0);
    FAIL() << "creating a NCCL communicator without a CUDA device must fail";
  } catch (const CommError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("creating NCCL communicator 'world' on rank"), std::string::npos) << message;
    EXPECT_NE(message.find("cudaGetDeviceCount failed"), std::string::npos) << message;
  }
}

class NcclDeviceTest : public testing::Test {
 protected:
  void SetUp() override {
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (visible_devices() < size) GTEST_SKIP() << "needs one CUDA device per rank";
    comm_ = NcclCommunicator::create(MPI_COMM_WORLD, world_rank());
  }

  // A device buffer holding `values`, freed with the test.
  Buffer device_buffer(const std::vector<float>& values) {
    void* data = nullptr;
    EXPECT_EQ(cudaMalloc(&data, values.size() * sizeof(float) + 1), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    allocations_.push_back(data);
    Buffer buffer;
    buffer.data = data;
    buffer.count = values.size();
    buffer.dtype = DataType::kFloat32;
    buffer.device = DeviceKind::kCuda;
    return buffer;
  }

  std::vector<float> host_copy(const Buffer& buffer) {
    std::vector<float> out(buffer.count);
    EXPECT_EQ(cudaMemcpy(out.data(), buffer.data, out.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

  void TearDown() override {
    for (void* p : allocations_) cudaFree(p);
  }

  std::unique_ptr<NcclCommunicator> comm_;
  std::vector<void*> allocations_;
};

TEST_F(NcclDeviceTest, AllreduceBroadcastAllgatherReduceScatterAreExact) {
  const int rank = comm_->rank();
  const int size = comm_->size();
  Buffer sum = device_buffer(std::vector<float>(1001, static_cast<float>(rank + 1)));
  comm_->allreduce(sum, ReduceOp::kSum)->wait();
  EXPECT_EQ(host_copy(sum), std::vector<float>(1001, static_cast<float>(size * (size + 1) / 2)));

  Buffer bcast = device_buffer(std::vector<float>(77, static_cast<float>(rank)));
  comm_->broadcast(bcast, size - 1)->wait();
  EXPECT_EQ(host_copy(bcast), std::vector<float>(77, static_cast<float>(size - 1)));

  Buffer mine = device_buffer(std::vector<float>(5, static_cast<float>(rank)));
  Buffer all = device_buffer(std::vector<float>(5 * size, -1.0f));
  comm_->allgather(all, mine)->wait();
  std::vector<float> expected;
  for (int r = 0; r < size; ++r) expected.insert(expected.end(), 5, static_cast<float>(r));
  EXPECT_EQ(host_copy(all), expected);

  Buffer input = device_buffer(std::vector<float>(3 * size, 1.0f));
  Buffer output = device_buffer(std::vector<float>(3, 0.0f));
  comm_->reduce_scatter(output, input, ReduceOp::kMax)->wait();
  EXPECT_EQ(host_copy(output), std::vector<float>(3, 1.0f));
  comm_->barrier()->wait();
}

TEST_F(NcclDeviceTest, HostBuffersAreRejected) {
  std::vector<float> host(4, 1.0f);
  Buffer buffer;
  buffer.data = host.data();
  buffer.count = host.size();
  EXPECT_THROW(comm_->allreduce(buffer, ReduceOp::kSum), CommError);
}

}  // namespace
}  // namespace dtrain::comm
