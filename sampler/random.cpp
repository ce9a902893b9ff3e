#include "sampler/random.h"

#include <stdexcept>
#include <utility>

namespace dtrain::sampler {

std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  return mix64(state_);
}

std::uint64_t SplitMix64::below(std::uint64_t bound) {
  if (bound == 0) throw std::invalid_argument("SplitMix64::below needs a bound >= 1");
  __extension__ using Wide = unsigned __int128;
  Wide product = static_cast<Wide>(next()) * bound;
  auto low = static_cast<std::uint64_t>(product);
  // The 2^64 mod bound smallest low halves would make some results one draw more likely than others. The threshold
  // is below bound, so it only needs computing (one division) when low < bound, which is rare for small bounds.
  if (low < bound) {
    const std::uint64_t threshold = (0 - bound) % bound;  // (2^64 - bound) mod bound == 2^64 mod bound
    while (low < threshold) {
      product = static_cast<Wide>(next()) * bound;
      low = static_cast<std::uint64_t>(product);
    }
  }
  return static_cast<std::uint64_t>(product >> 64);
}

SplitMix64 epoch_generator(std::uint64_t seed, std::uint64_t epoch) {
  return SplitMix64(mix64(mix64(seed) ^ epoch));
}

void shuffle(std::int64_t* data, std::int64_t count, SplitMix64& rng) {
  for (std::int64_t i = count - 1; i > 0; --i) {
    std::swap(data[i], data[rng.below(static_cast<std::uint64_t>(i) + 1)]);
  }
}

}  // namespace dtrain::sampler
