// The NCCL backend without a GPU (CI): bootstrapping fails with a precise error from the checked CUDA call on every
// rank instead of crashing or hanging. The tests on GPUs are in test_nccl_gpu.cpp (label gpu, tests/gpu/run.sh).

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>

#include "comm/error.h"
#include "comm/nccl_communicator.h"

namespace dtrain::comm {
namespace {

int visible_devices() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
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

}  // namespace
}  // namespace dtrain::comm
