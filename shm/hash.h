// The key hash: 64 bits, seeded per segment (so bucket placement cannot be
// predicted from outside), stable across processes and builds because it is
// ours, not std::hash. The construction is wyhash's (public domain): 64x64->128
// bit multiplies folded to 64 bits.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace redhub::shm {
namespace hash_internal {

inline constexpr uint64_t kP0 = 0xa0761d6478bd642fULL;
inline constexpr uint64_t kP1 = 0xe7037ed1a0b428dbULL;
inline constexpr uint64_t kP2 = 0x8ebc6af09c88c6e3ULL;
inline constexpr uint64_t kP3 = 0x589965cc75374cc3ULL;

inline uint64_t Mix(uint64_t a, uint64_t b) {
  __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}
inline uint64_t Read8(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
inline uint64_t Read4(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

}  // namespace hash_internal

inline uint64_t HashKey(std::string_view key, uint64_t seed) {
  using namespace hash_internal;
  const uint8_t* p = reinterpret_cast<const uint8_t*>(key.data());
  size_t len = key.size();
  seed ^= Mix(seed ^ kP0, kP1);
  uint64_t a, b;
  if (len <= 16) {
    if (len >= 4) {
      a = (Read4(p) << 32) | Read4(p + ((len >> 3) << 2));
      b = (Read4(p + len - 4) << 32) | Read4(p + len - 4 - ((len >> 3) << 2));
    } else if (len > 0) {
      a = (uint64_t{p[0]} << 16) | (uint64_t{p[len >> 1]} << 8) | p[len - 1];
      b = 0;
    } else {
      a = b = 0;
    }
  } else {
    size_t i = len;
    if (i > 48) {
      uint64_t s1 = seed, s2 = seed;
      do {
        seed = Mix(Read8(p) ^ kP1, Read8(p + 8) ^ seed);
        s1 = Mix(Read8(p + 16) ^ kP2, Read8(p + 24) ^ s1);
        s2 = Mix(Read8(p + 32) ^ kP3, Read8(p + 40) ^ s2);
        p += 48;
        i -= 48;
      } while (i > 48);
      seed ^= s1 ^ s2;
    }
    while (i > 16) {
      seed = Mix(Read8(p) ^ kP1, Read8(p + 8) ^ seed);
      i -= 16;
      p += 16;
    }
    a = Read8(p + i - 16);
    b = Read8(p + i - 8);
  }
  a ^= kP1;
  b ^= seed;
  __uint128_t r = static_cast<__uint128_t>(a) * b;
  a = static_cast<uint64_t>(r);
  b = static_cast<uint64_t>(r >> 64);
  return Mix(a ^ kP0 ^ len, b ^ kP1);
}

}  // namespace redhub::shm
