#pragma once
// ResNet-18 (He et al. 2016, the model of the seed articles' data-parallel examples) for small images: a 3x3 stem
// (the CIFAR variant: 28x28 or 32x32 inputs are too small for the ImageNet stem's 7x7 stride-2 convolution and max
// pooling), four stages of two basic residual blocks (64, 128, 256, 512 channels, stride 2 from the second stage),
// global average pooling and one linear layer: 11.2M parameters for 10 classes. A torch::nn::Sequential of whole
// blocks, so the pipeline engine can cut it between any two; BatchNorm keeps running statistics as buffers.
// Input: [n, height, width] (one channel) or [n, channels, height, width]; output: logits [n, classes].

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <vector>

namespace dtrain::jobs {

// `sample_shape`: {height, width} or {channels, height, width}. Throws std::invalid_argument for other shapes.
torch::nn::Sequential make_resnet18(const std::vector<std::int64_t>& sample_shape, std::int64_t classes);

}  // namespace dtrain::jobs
