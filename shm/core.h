// This process's view of a mapped segment: the addresses of its parts and the
// arithmetic between offsets, pages and stripes. Internal to shm/.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "hash.h"
#include "layout.h"
#include "segment.h"

namespace redhub::shm {

class PagePool;

struct Core {
  char* base = nullptr;
  Geometry g;
  uint32_t page_shift = 0;
  SegmentHeader* header = nullptr;
  StripeHeader* stripes = nullptr;
  std::atomic<uint32_t>* owner = nullptr;  // page_owner[pages]
  PageMeta* meta = nullptr;                // page_meta[pages]
  uint64_t seed = 0;
  PagePool* pool = nullptr;
  std::function<void(std::string_view)> sink;  // repair reports
  // Stripe::UnflushedLimit for the maxmemory it was computed for: a write
  // charges twice, and two divisions each time showed in profiles.
  mutable uint64_t unflushed_limit_for = ~uint64_t{0};
  mutable int64_t unflushed_limit = 0;

  explicit Core(const Segment& segment);

  template <typename T>
  T* At(uint64_t offset) const {
    return reinterpret_cast<T*>(base + offset);
  }
  EntryHeader* Entry(uint64_t offset) const { return At<EntryHeader>(offset); }
  uint64_t OffsetOf(const void* p) const { return static_cast<const char*>(p) - base; }
  uint64_t PageOffset(uint32_t page) const {
    return g.pool_offset + (uint64_t{page} << page_shift);
  }
  uint32_t PageOf(uint64_t offset) const {
    return static_cast<uint32_t>((offset - g.pool_offset) >> page_shift);
  }
  bool InPool(uint64_t offset) const {
    return offset >= g.pool_offset && offset < g.total_bytes && offset % 8 == 0;
  }
  uint64_t Hash(std::string_view key) const { return HashKey(key, seed); }
  uint32_t StripeOfHash(uint64_t hash) const {
    return static_cast<uint32_t>(((hash >> 32) * g.stripes) >> 32);
  }
  void Report(const std::string& message) const {
    if (sink) sink(message);
  }
};

inline Core::Core(const Segment& segment)
    : base(segment.base()), g(segment.geometry()), header(segment.header()) {
  while ((uint32_t{1} << page_shift) < g.page_size) page_shift++;
  stripes = At<StripeHeader>(g.stripes_offset);
  owner = At<std::atomic<uint32_t>>(g.owner_offset);
  meta = At<PageMeta>(g.meta_offset);
  seed = header->hash_seed;
}

}  // namespace redhub::shm
