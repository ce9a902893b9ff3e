#include "runtime/device/device_selection.h"

#include <fmt/format.h>

#include <cstdlib>
#include <stdexcept>

#include "comm/launch_check.h"
#include "runtime/device/compute_device.h"

namespace dtrain::runtime {

const char* to_string(DeviceRequest request) {
  switch (request) {
    case DeviceRequest::kCpu:
      return "cpu";
    case DeviceRequest::kCuda:
      return "cuda";
    case DeviceRequest::kAuto:
      return "auto";
  }
  return "?";
}

const char* to_string(BackendRequest request) {
  switch (request) {
    case BackendRequest::kMpi:
      return "mpi";
    case BackendRequest::kNccl:
      return "nccl";
    case BackendRequest::kAuto:
      return "auto";
  }
  return "?";
}

namespace {

// Why this rank cannot use a GPU ("" if it can).
std::string why_no_gpu(const DeviceFacts& facts) {
  if (!facts.torch_has_cuda) {
    return "this dtrain is built against a LibTorch without CUDA (build it against PyTorch's CUDA LibTorch: README, "
           "GPU build)";
  }
  if (facts.visible_gpus < 1) {
    return fmt::format("no CUDA device is visible to this rank{}",
                       facts.visibility.empty() ? "" : fmt::format(" ({})", facts.visibility));
  }
  return "";
}

}  // namespace

DevicePlan plan_device(DeviceRequest device, BackendRequest backend, const DeviceFacts& facts) {
  const std::string no_gpu = why_no_gpu(facts);
  bool cuda = false;
  switch (device) {
    case DeviceRequest::kCpu:
      cuda = false;
      break;
    case DeviceRequest::kCuda:
      if (!no_gpu.empty()) throw std::invalid_argument("--device cuda: " + no_gpu);
      cuda = true;
      break;
    case DeviceRequest::kAuto:
      // --backend nccl asks for GPUs: without one, say so rather than fall back to a CPU run NCCL cannot serve.
      if (backend == BackendRequest::kNccl && !no_gpu.empty()) {
        throw std::invalid_argument("--backend nccl needs a GPU: " + no_gpu);
      }
      cuda = no_gpu.empty();
      break;
  }
  DevicePlan plan;
  if (cuda) plan.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(facts.local_rank % facts.visible_gpus));
  switch (backend) {
    case BackendRequest::kMpi:
      plan.backend = comm::Backend::kMpi;
      break;
    case BackendRequest::kNccl:
      if (!cuda) {
        throw std::invalid_argument(
            "--backend nccl moves GPU memory, but --device cpu trains on the CPU: use --backend mpi (or auto)");
      }
      plan.backend = comm::Backend::kNccl;
      break;
    case BackendRequest::kAuto:
      plan.backend = cuda ? comm::Backend::kNccl : comm::Backend::kMpi;
      break;
  }
  return plan;
}

DeviceFacts device_facts(int local_rank) {
  DeviceFacts facts;
  facts.torch_has_cuda = torch_has_cuda();
  facts.visible_gpus = comm::visible_cuda_devices();
  facts.local_rank = local_rank;
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) {
    facts.visibility = fmt::format("CUDA_VISIBLE_DEVICES={}", visible);
  }
  return facts;
}

}  // namespace dtrain::runtime
