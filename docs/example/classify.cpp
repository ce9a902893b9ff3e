// Inference with a model dtrain trained: loads the TorchScript module that `dtrain --torchscript NET.pt
// --export-model TRAINED.pt` wrote (the same module, its weights trained) with torch::jit::load, classifies the
// Fashion-MNIST test images (the idx files of Debian's dataset-fashion-mnist) and prints the accuracy. Plain
// LibTorch: inference needs nothing of dtrain.
//   classify TRAINED.pt /usr/share/datasets/fashion-mnist
#include <torch/script.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// An idx file (gzip'ed): a big-endian header of magic, dimensions, then the bytes.
at::Tensor read_idx(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw std::runtime_error("cannot open " + path);
  const auto read_u32 = [&] {
    unsigned char b[4];
    if (gzread(file, b, 4) != 4) throw std::runtime_error(path + ": truncated header");
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
  };
  const std::uint32_t magic = read_u32();
  std::vector<std::int64_t> shape(magic & 0xff);
  std::int64_t count = 1;
  for (auto& d : shape) count *= d = read_u32();
  at::Tensor bytes = torch::empty(shape, torch::kUInt8);
  if (gzread(file, bytes.data_ptr(), static_cast<unsigned>(count)) != count) {
    throw std::runtime_error(path + ": truncated data");
  }
  gzclose(file);
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: classify TRAINED.pt FASHION_MNIST_FOLDER\n");
    return 2;
  }
  try {
    torch::jit::Module model = torch::jit::load(argv[1]);
    model.eval();
    const std::string folder = argv[2];
    // As dtrain's data feed scales uint8 images: to [0, 1].
    const at::Tensor images = read_idx(folder + "/t10k-images-idx3-ubyte.gz").to(torch::kFloat) / 255;
    const at::Tensor labels = read_idx(folder + "/t10k-labels-idx1-ubyte.gz").to(torch::kLong);
    torch::NoGradGuard no_grad;
    const at::Tensor predicted = model.forward({images}).toTensor().argmax(1);
    const double accuracy = predicted.eq(labels).to(torch::kDouble).mean().item<double>();
    std::printf("classify: %lld test images, accuracy %.4f\n", static_cast<long long>(labels.size(0)), accuracy);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
