// Eviction policies and their names, in one table: the flag and config
// parser, CONFIG GET, INFO and the store's own messages all read it.
#pragma once

#include <cstdint>
#include <string_view>

namespace redhub::shm {

// What the store does when a write would pass maxmemory (Redis's
// maxmemory-policy; the ones that need no per-key frequency counters).
enum class Policy : uint32_t {
  kNoEviction,
  kAllKeysLru,
  kAllKeysRandom,
  kVolatileLru,
  kVolatileTtl
};

struct PolicyName {
  Policy policy;
  std::string_view name;  // as Redis spells it
};

inline constexpr PolicyName kPolicyNames[] = {
    {Policy::kNoEviction, "noeviction"},        {Policy::kAllKeysLru, "allkeys-lru"},
    {Policy::kAllKeysRandom, "allkeys-random"}, {Policy::kVolatileLru, "volatile-lru"},
    {Policy::kVolatileTtl, "volatile-ttl"},
};

constexpr std::string_view NameOf(Policy p) {
  for (const PolicyName& n : kPolicyNames)
    if (n.policy == p) return n.name;
  return "noeviction";
}

// False if name is not one of kPolicyNames (exact, lower case, as Redis).
constexpr bool ParsePolicy(std::string_view name, Policy* out) {
  for (const PolicyName& n : kPolicyNames) {
    if (n.name == name) {
      *out = n.policy;
      return true;
    }
  }
  return false;
}

}  // namespace redhub::shm
