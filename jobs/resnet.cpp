#include "jobs/resnet.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <stdexcept>

namespace dtrain::jobs {

namespace {

torch::nn::Conv2d conv3x3(std::int64_t in, std::int64_t out, std::int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

// Two 3x3 convolutions with batch norm, added to the input (through a 1x1 convolution where the shape changes).
class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(std::int64_t in, std::int64_t out, std::int64_t stride)
      : conv1_(register_module("conv1", conv3x3(in, out, stride))),
        bn1_(register_module("bn1", torch::nn::BatchNorm2d(out))),
        conv2_(register_module("conv2", conv3x3(out, out, 1))),
        bn2_(register_module("bn2", torch::nn::BatchNorm2d(out))) {
    if (stride != 1 || in != out) {
      shortcut_ = register_module(
          "shortcut",
          torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)),
                                torch::nn::BatchNorm2d(out)));
    }
  }

  at::Tensor forward(const at::Tensor& x) {
    const at::Tensor y = bn2_(conv2_(torch::relu(bn1_(conv1_(x)))));
    return torch::relu(y + (shortcut_ ? shortcut_->forward(x) : x));
  }

 private:
  torch::nn::Conv2d conv1_;
  torch::nn::BatchNorm2d bn1_;
  torch::nn::Conv2d conv2_;
  torch::nn::BatchNorm2d bn2_;
  torch::nn::Sequential shortcut_{nullptr};
};
TORCH_MODULE(BasicBlock);

}  // namespace

torch::nn::Sequential make_resnet18(const std::vector<std::int64_t>& sample_shape, std::int64_t classes) {
  if (sample_shape.size() != 2 && sample_shape.size() != 3) {
    throw std::invalid_argument(fmt::format(
        "model 'resnet18' needs image samples ([height, width] or [channels, height, width]); the data has [{}]",
        fmt::join(sample_shape, ", ")));
  }
  const std::int64_t channels = sample_shape.size() == 3 ? sample_shape[0] : 1;
  torch::nn::Sequential model;
  if (sample_shape.size() == 2) {
    model->push_back(torch::nn::Unflatten(torch::nn::UnflattenOptions(1, {1, sample_shape[0]})));
  }
  model->push_back(conv3x3(channels, 64, 1));
  model->push_back(torch::nn::BatchNorm2d(64));
  model->push_back(torch::nn::ReLU());
  std::int64_t in = 64;
  for (const std::int64_t out : {64, 128, 256, 512}) {
    const std::int64_t stride = out == 64 ? 1 : 2;
    model->push_back(BasicBlock(in, out, stride));
    model->push_back(BasicBlock(out, out, 1));
    in = out;
  }
  model->push_back(torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions(1)));
  model->push_back(torch::nn::Flatten());
  model->push_back(torch::nn::Linear(512, classes));
  return model;
}

}  // namespace dtrain::jobs
