#pragma once
// The random numbers behind every shuffled order, specified bit for bit in docs/sampler.md so that another
// implementation (tests/sampler/sampler_spec.py, a Python data loader, a later dtrain on another compiler) reproduces
// dtrain's orders exactly. std::shuffle and the std:: distributions are deliberately not used: their algorithms are
// implementation-defined, so the same seed would give another order with another standard library.

#include <cstdint>

namespace dtrain::sampler {

// SplitMix64's output function: a bijection of 64-bit words in which every input bit reaches every output bit.
std::uint64_t mix64(std::uint64_t z);

// SplitMix64 (Steele, Lea and Flood, 2014): the state advances by 0x9E3779B97F4A7C15, the output is mix64(state).
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t state) : state_(state) {}

  std::uint64_t next();
  // Uniform in [0, bound), bound >= 1, without bias: Lemire's multiply-shift, redrawing while the low 64 bits of
  // the product fall below 2^64 mod bound.
  std::uint64_t below(std::uint64_t bound);

 private:
  std::uint64_t state_;
};

// The one generator an epoch's order draws from: state mix64(mix64(seed) ^ epoch).
SplitMix64 epoch_generator(std::uint64_t seed, std::uint64_t epoch);

// Fisher–Yates from the back: for i = count-1 down to 1, swap data[i] with data[rng.below(i + 1)].
void shuffle(std::int64_t* data, std::int64_t count, SplitMix64& rng);

}  // namespace dtrain::sampler
