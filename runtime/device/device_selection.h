#pragma once
// Which device a rank trains on and which backend moves its data (--device, --backend), decided from facts a rank can
// see: whether LibTorch was built with CUDA, how many GPUs are visible, its local rank. A pure function, so that every
// rule is tested on machines without GPUs (tests/runtime/device/test_device_selection.cpp).
//  - --device auto: CUDA where LibTorch has CUDA and a GPU is visible, else the CPU.
//  - --backend auto: NCCL on CUDA, MPI on the CPU. --backend mpi --device cuda is allowed: gradients and activations
//    are staged through pinned host memory (Note [Host staging]), so ranks may share a GPU and Open MPI need not be
//    CUDA-aware. --backend nccl on the CPU is refused.
//  - The GPU of a rank: its local rank modulo the visible GPUs (both "every GPU visible to every task" and "one GPU per
//    task" work). Two ranks of a node on one GPU under NCCL are refused by the NCCL bootstrap (comm/gpu_sharing.h).

#include <c10/core/Device.h>

#include <string>

#include "comm/communicator.h"

namespace dtrain::runtime {

enum class DeviceRequest { kCpu, kCuda, kAuto };
const char* to_string(DeviceRequest request);  // "cpu", "cuda", "auto"

enum class BackendRequest { kMpi, kNccl, kAuto };
const char* to_string(BackendRequest request);  // "mpi", "nccl", "auto"

struct DeviceFacts {
  bool torch_has_cuda = false;  // LibTorch built with CUDA
  int visible_gpus = 0;         // CUDA devices this rank sees
  int local_rank = 0;           // among the ranks of its node
  std::string visibility;       // how the GPUs were made visible (CUDA_VISIBLE_DEVICES=...), for messages; may be ""
};

struct DevicePlan {
  c10::Device device{c10::kCPU};
  comm::Backend backend = comm::Backend::kMpi;
};

// Throws std::invalid_argument with one line naming the option and what is missing.
DevicePlan plan_device(DeviceRequest device, BackendRequest backend, const DeviceFacts& facts);

// This process's facts (CUDA runtime and LibTorch queried, CUDA_VISIBLE_DEVICES read).
DeviceFacts device_facts(int local_rank);

}  // namespace dtrain::runtime
