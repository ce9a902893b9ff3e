#pragma once
// Note [Compute device]
// Everything the training loop does differently on a GPU goes through one ComputeDevice, so the loop, the feeds and
// the checkpoints have no CUDA branch of their own:
//  - batches: stage() starts the host-to-device copy of the next batch on a copy stream while the current step
//    computes; receive() makes the compute stream wait for that copy (an event, no host synchronisation) and marks the
//    tensors as used on the compute stream, so the caching allocator does not hand their memory to the copy stream
//    again while the compute stream still reads it. Host batches are in pinned memory (pins_host_batches()), without
//    which a "non-blocking" copy is a synchronous one.
//  - memory: the caching allocator's allocated and peak bytes and the device's free and total memory (zeros on CPU);
//    held_bytes() also on the CPU, for the activation meter.
//  - random state: the device generator's state (the CPU generator is saved by the checkpoint on every device).
// CpuDevice is the identity. CudaDevice (runtime/device/cuda_device.cpp) exists only in a build against a CUDA
// LibTorch; elsewhere make_compute_device refuses CUDA with one line (runtime/device/cuda_device_absent.cpp).

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/data/data_feed.h"

namespace dtrain::runtime {

struct DeviceMemory {
  double allocated_gb = 0;       // held by tensors now
  double peak_allocated_gb = 0;  // the most held at once since the start (or reset_peak_memory)
  double free_gb = 0;            // the device's free memory (cudaMemGetInfo)
  double total_gb = 0;
};

// A batch whose copy to the device has been started; receive() it before use.
struct StagedBatch {
  Batch batch;
  std::shared_ptr<void> arrived;  // the copy stream's event after the copy (null when there was nothing to copy)
};

class ComputeDevice {
 public:
  virtual ~ComputeDevice() = default;
  virtual c10::Device device() const = 0;
  // "cpu", or "cuda:0 NVIDIA H200 (GPU-6f2b..., 139.8 GiB)": for --dry-run and the start-up line.
  virtual std::string describe() const = 0;
  // Whether feeds should write batches into pinned host memory (the copies are asynchronous only from there).
  virtual bool pins_host_batches() const = 0;
  // Starts copying `host` to this device; returns at once.
  virtual StagedBatch stage(const Batch& host) = 0;
  // The batch, usable by work queued from now on on the compute stream.
  virtual Batch receive(StagedBatch staged) = 0;
  // Blocks the host until the compute stream has finished what was queued (for timing and host reads).
  virtual void synchronize() = 0;
  virtual DeviceMemory memory() const = 0;
  // Bytes held for this process's data on the device now, exactly and cheaply (Note [Activation bytes]): on CUDA the
  // caching allocator's tensors; on the CPU malloc's bytes in use, tensors and everything else.
  virtual std::int64_t held_bytes() const = 0;
  // The device generator's state (a byte tensor on the CPU), undefined where the device has none of its own.
  virtual at::Tensor rng_state() const = 0;
  virtual void set_rng_state(const at::Tensor& state) = 0;
  // TF32 tensor cores for fp32 matrix products and convolutions (off unless --allow-tf32: results then differ
  // from fp32 in the 4th digit).
  virtual void allow_tf32(bool allow) = 0;
};

// CPU: the identity device. CUDA: its own copy stream; throws std::invalid_argument if this LibTorch has no CUDA.
std::unique_ptr<ComputeDevice> make_compute_device(const c10::Device& device);

// Whether this LibTorch was built with CUDA (it may still see no GPU).
bool torch_has_cuda();

// The CUDA implementation, defined by cuda_device.cpp or cuda_device_absent.cpp.
std::unique_ptr<ComputeDevice> make_cuda_device(c10::DeviceIndex index);

}  // namespace dtrain::runtime
