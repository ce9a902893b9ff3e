// The CUDA device of a build against a LibTorch without CUDA (Debian's): there is none to make.
#include <stdexcept>

#include "runtime/device/compute_device.h"

namespace dtrain::runtime {

bool torch_has_cuda() {
  return false;
}

std::unique_ptr<ComputeDevice> make_cuda_device(c10::DeviceIndex) {
  throw std::invalid_argument(
      "--device cuda: this dtrain is built against a LibTorch without CUDA (build it against PyTorch's CUDA LibTorch: "
      "README, GPU build)");
}

}  // namespace dtrain::runtime
