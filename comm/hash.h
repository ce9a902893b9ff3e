#pragma once
// 64-bit FNV-1a: a hash that is the same on every machine and compiler (unlike std::hash), for what ranks compare
// with each other — bucket plans, pipeline schedules, the running fingerprint of a communicator's collectives.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dtrain::comm {

inline constexpr std::uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;

// `hash` chains: fnv1a(b, fnv1a(a)) hashes a then b.
std::uint64_t fnv1a(const void* data, std::size_t size, std::uint64_t hash = kFnvOffsetBasis);
std::uint64_t fnv1a(std::string_view text, std::uint64_t hash = kFnvOffsetBasis);

}  // namespace dtrain::comm
