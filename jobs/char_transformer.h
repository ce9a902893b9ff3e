#pragma once
// A small decoder-only Transformer for character-level language modelling, written as a torch::nn::Sequential of
// whole blocks (embedding, N causal self-attention blocks, output head) so that the pipeline engine can cut it
// between any two of them. Input: token ids [n, L]; output: next-token logits [n, L, vocab].

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>

namespace dtrain::jobs {

struct CharTransformerOptions {
  std::int64_t vocabulary = 0;
  std::int64_t context = 128;  // longest input sequence
  std::int64_t width = 128;    // model dimension
  std::int64_t heads = 4;
  std::int64_t blocks = 4;
};

// Throws std::invalid_argument if width is not a multiple of heads or a size is not positive.
torch::nn::Sequential make_char_transformer(const CharTransformerOptions& options);

}  // namespace dtrain::jobs
