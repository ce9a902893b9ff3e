// The CUDA ComputeDevice (Note [Compute device]), built only against a CUDA LibTorch.
#include <ATen/Context.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <mutex>

#include "comm/cuda_check.h"
#include "comm/gpu_sharing.h"
#include "runtime/device/compute_device.h"

namespace dtrain::runtime {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

class CudaDevice final : public ComputeDevice {
 public:
  explicit CudaDevice(c10::DeviceIndex index)
      : index_(index), context_(fmt::format("CUDA device {}", index)), copy_stream_(make_copy_stream(index)) {}

  c10::Device device() const override { return {c10::kCUDA, index_}; }

  std::string describe() const override {
    cudaDeviceProp properties{};
    DTRAIN_CUDA_CHECK(cudaGetDeviceProperties(&properties, index_), context_);
    return fmt::format("cuda:{} {} ({}, {:.1f} GiB)", index_, properties.name,
                       comm::format_gpu_uuid(properties.uuid.bytes),
                       static_cast<double>(properties.totalGlobalMem) / kGiB);
  }

  bool pins_host_batches() const override { return true; }

  StagedBatch stage(const Batch& host) override {
    c10::cuda::CUDAGuard guard(index_);
    c10::cuda::CUDAStreamGuard on_copy_stream(copy_stream_);
    auto copy = [&](const at::Tensor& t) {
      if (!t.defined()) return t;
      // From pageable memory the copy would be synchronous; the feeds normally hand over pinned batches already.
      const at::Tensor pinned = t.is_pinned() ? t : t.pin_memory();
      return pinned.to(device(), /*non_blocking=*/true);
    };
    StagedBatch staged;
    staged.batch.inputs = copy(host.inputs);
    staged.batch.targets = copy(host.targets);
    staged.batch.valid = copy(host.valid);
    auto arrived = std::make_shared<at::cuda::CUDAEvent>();
    arrived->record(copy_stream_);
    staged.arrived = std::move(arrived);
    return staged;
  }

  Batch receive(StagedBatch staged) override {
    const c10::cuda::CUDAStream compute = c10::cuda::getCurrentCUDAStream(index_);
    if (staged.arrived) static_cast<at::cuda::CUDAEvent*>(staged.arrived.get())->block(compute);
    // Allocated on the copy stream, used on the compute stream: the allocator must wait for both before reuse.
    for (const at::Tensor* t : {&staged.batch.inputs, &staged.batch.targets, &staged.batch.valid}) {
      if (t->defined()) t->record_stream(compute.unwrap());
    }
    return std::move(staged.batch);
  }

  void synchronize() override {
    c10::cuda::CUDAGuard guard(index_);
    DTRAIN_CUDA_CHECK(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream(index_).stream()), context_);
  }

  DeviceMemory memory() const override {
    using c10::CachingAllocator::StatType;
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index_);
    const auto& allocated = stats.allocated_bytes[static_cast<std::size_t>(StatType::AGGREGATE)];
    DeviceMemory memory;
    memory.allocated_gb = static_cast<double>(allocated.current) / kGiB;
    memory.peak_allocated_gb = static_cast<double>(allocated.peak) / kGiB;
    c10::cuda::CUDAGuard guard(index_);
    std::size_t free = 0;
    std::size_t total = 0;
    DTRAIN_CUDA_CHECK(cudaMemGetInfo(&free, &total), context_);
    memory.free_gb = static_cast<double>(free) / kGiB;
    memory.total_gb = static_cast<double>(total) / kGiB;
    return memory;
  }

  std::int64_t held_bytes() const override {
    using c10::CachingAllocator::StatType;
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index_);
    return stats.allocated_bytes[static_cast<std::size_t>(StatType::AGGREGATE)].current;
  }

  at::Tensor rng_state() const override {
    at::Generator generator = at::cuda::detail::getDefaultCUDAGenerator(index_);
    std::lock_guard<std::mutex> lock(generator.mutex());
    return generator.get_state();
  }

  void set_rng_state(const at::Tensor& state) override {
    at::Generator generator = at::cuda::detail::getDefaultCUDAGenerator(index_);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state.clone());
  }

  void allow_tf32(bool allow) override {
    at::globalContext().setAllowTF32CuBLAS(allow);
    at::globalContext().setAllowTF32CuDNN(allow);
  }

 private:
  static c10::cuda::CUDAStream make_copy_stream(c10::DeviceIndex index) {
    // The rank's GPU becomes the current device, so LibTorch's default allocations and streams are on it.
    c10::cuda::set_device(index);
    return c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index);
  }

  c10::DeviceIndex index_;
  std::string context_;
  c10::cuda::CUDAStream copy_stream_;
};

}  // namespace

bool torch_has_cuda() {
  return true;
}

std::unique_ptr<ComputeDevice> make_cuda_device(c10::DeviceIndex index) {
  return std::make_unique<CudaDevice>(index);
}

}  // namespace dtrain::runtime
