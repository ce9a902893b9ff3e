#include "runtime/device/compute_device.h"

#include <malloc.h>

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
// Declared by <sanitizer/allocator_interface.h>, which GCC does not install; defined by the AddressSanitizer runtime.
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#endif

namespace dtrain::runtime {

namespace {

class CpuDevice final : public ComputeDevice {
 public:
  c10::Device device() const override { return c10::kCPU; }
  std::string describe() const override { return "cpu"; }
  bool pins_host_batches() const override { return false; }
  StagedBatch stage(const Batch& host) override { return {host, nullptr}; }
  Batch receive(StagedBatch staged) override { return std::move(staged.batch); }
  void synchronize() override {}
  DeviceMemory memory() const override { return {}; }
  std::int64_t held_bytes() const override {
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer's malloc replaces glibc's, whose statistics then stay empty.
    return static_cast<std::int64_t>(__sanitizer_get_current_allocated_bytes());
#else
    const struct mallinfo2 heap = mallinfo2();  // every arena, and the chunks malloc mapped on its own
    return static_cast<std::int64_t>(heap.uordblks + heap.hblkhd);
#endif
  }
  at::Tensor rng_state() const override { return {}; }
  void set_rng_state(const at::Tensor&) override {}
  void allow_tf32(bool) override {}
};

}  // namespace

std::unique_ptr<ComputeDevice> make_compute_device(const c10::Device& device) {
  if (device.is_cpu()) return std::make_unique<CpuDevice>();
  return make_cuda_device(device.index());
}

}  // namespace dtrain::runtime
