// --device and --backend resolved for made-up machines: every rule of runtime/device/device_selection.h.

#include "runtime/device/device_selection.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace dtrain::runtime {
namespace {

DeviceFacts machine(bool torch_cuda, int gpus, int local_rank, std::string visibility = "") {
  return {torch_cuda, gpus, local_rank, std::move(visibility)};
}

std::string error_of(DeviceRequest device, BackendRequest backend, const DeviceFacts& facts) {
  try {
    plan_device(device, backend, facts);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceSelection, AutoTrainsOnTheGpuOfTheLocalRankModuloTheVisibleGpus) {
  const DevicePlan plan = plan_device(DeviceRequest::kAuto, BackendRequest::kAuto, machine(true, 4, 6));
  EXPECT_EQ(plan.device, c10::Device(c10::kCUDA, 2));
  EXPECT_EQ(plan.backend, comm::Backend::kNccl);
  // One GPU per task: each rank sees one device, its device 0.
  EXPECT_EQ(plan_device(DeviceRequest::kCuda, BackendRequest::kNccl, machine(true, 1, 3)).device,
            c10::Device(c10::kCUDA, 0));
}

TEST(DeviceSelection, AutoFallsBackToTheCpuWithoutCudaOrWithoutGpus) {
  for (const DeviceFacts& facts : {machine(false, 0, 0), machine(true, 0, 1), machine(false, 2, 0)}) {
    const DevicePlan plan = plan_device(DeviceRequest::kAuto, BackendRequest::kAuto, facts);
    EXPECT_EQ(plan.device, c10::Device(c10::kCPU));
    EXPECT_EQ(plan.backend, comm::Backend::kMpi);
  }
}

TEST(DeviceSelection, MpiOnGpusIsAllowedSoRanksCanShareAGpu) {
  const DevicePlan plan = plan_device(DeviceRequest::kCuda, BackendRequest::kMpi, machine(true, 1, 3));
  EXPECT_EQ(plan.device, c10::Device(c10::kCUDA, 0));
  EXPECT_EQ(plan.backend, comm::Backend::kMpi);
  EXPECT_EQ(plan_device(DeviceRequest::kCpu, BackendRequest::kAuto, machine(true, 8, 0)).backend, comm::Backend::kMpi);
}

TEST(DeviceSelection, ImpossibleRequestsAreOneLineNamingTheOption) {
  EXPECT_EQ(error_of(DeviceRequest::kCuda, BackendRequest::kAuto, machine(false, 0, 0)),
            "--device cuda: this dtrain is built against a LibTorch without CUDA (build it against PyTorch's CUDA "
            "LibTorch: README, GPU build)");
  EXPECT_EQ(error_of(DeviceRequest::kCuda, BackendRequest::kAuto, machine(true, 0, 0, "CUDA_VISIBLE_DEVICES=")),
            "--device cuda: no CUDA device is visible to this rank (CUDA_VISIBLE_DEVICES=)");
  EXPECT_EQ(error_of(DeviceRequest::kAuto, BackendRequest::kNccl, machine(true, 0, 0)),
            "--backend nccl needs a GPU: no CUDA device is visible to this rank");
  EXPECT_EQ(error_of(DeviceRequest::kCpu, BackendRequest::kNccl, machine(true, 4, 0)),
            "--backend nccl moves GPU memory, but --device cpu trains on the CPU: use --backend mpi (or auto)");
}

}  // namespace
}  // namespace dtrain::runtime
