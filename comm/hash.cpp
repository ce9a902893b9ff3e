#include "comm/hash.h"

namespace dtrain::comm {

std::uint64_t fnv1a(const void* data, std::size_t size, std::uint64_t hash) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ULL;
  return hash;
}

std::uint64_t fnv1a(std::string_view text, std::uint64_t hash) {
  return fnv1a(text.data(), text.size(), hash);
}

}  // namespace dtrain::comm
