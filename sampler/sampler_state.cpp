#include "sampler/sampler_state.h"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace dtrain::sampler {
namespace {

// The fields in the order to_string writes them.
constexpr std::array<const char*, 5> kFields = {"epoch", "position", "dataset_size", "seed", "layout"};

std::uint64_t parse_unsigned(const char* key, const std::string& value, std::uint64_t max, const std::string& text) {
  std::uint64_t parsed = 0;
  const char* end = value.data() + value.size();
  const auto [ptr, error] = std::from_chars(value.data(), end, parsed);
  // from_chars takes no sign for unsigned types, so "-1" fails here rather than wrapping around.
  if (error != std::errc() || ptr != end || parsed > max) {
    throw std::invalid_argument(
        fmt::format("sampler state field '{}' is not an integer in [0, {}]: '{}' (in '{}')", key, max, value, text));
  }
  return parsed;
}

}  // namespace

bool SamplerState::operator==(const SamplerState& other) const {
  return epoch == other.epoch && position == other.position && dataset_size == other.dataset_size &&
         seed == other.seed && layout == other.layout;
}

std::string to_string(const SamplerState& state) {
  return fmt::format("epoch={} position={} dataset_size={} seed={} layout={}", state.epoch, state.position,
                     state.dataset_size, state.seed, state.layout);
}

SamplerState parse_sampler_state(const std::string& text) {
  constexpr std::uint64_t kSignedMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::uint64_t kUnsignedMax = std::numeric_limits<std::uint64_t>::max();
  std::array<std::optional<std::uint64_t>, kFields.size()> values;
  std::istringstream words(text);
  std::string word;
  while (words >> word) {
    const std::size_t equals = word.find('=');
    if (equals == std::string::npos) {
      throw std::invalid_argument(fmt::format("sampler state '{}': '{}' is not key=value", text, word));
    }
    const std::string key = word.substr(0, equals);
    std::size_t k = 0;
    while (k < kFields.size() && key != kFields[k]) ++k;
    if (k == kFields.size())
      throw std::invalid_argument(fmt::format("sampler state '{}': unknown field '{}'", text, key));
    if (values[k]) throw std::invalid_argument(fmt::format("sampler state '{}': field '{}' given twice", text, key));
    const bool is_signed = k < 3;  // epoch, position and dataset_size are int64
    values[k] = parse_unsigned(kFields[k], word.substr(equals + 1), is_signed ? kSignedMax : kUnsignedMax, text);
  }
  for (std::size_t k = 0; k < kFields.size(); ++k) {
    if (!values[k])
      throw std::invalid_argument(fmt::format("sampler state '{}': field '{}' is missing", text, kFields[k]));
  }
  SamplerState state;
  state.epoch = static_cast<std::int64_t>(*values[0]);
  state.position = static_cast<std::int64_t>(*values[1]);
  state.dataset_size = static_cast<std::int64_t>(*values[2]);
  state.seed = *values[3];
  state.layout = *values[4];
  return state;
}

}  // namespace dtrain::sampler
