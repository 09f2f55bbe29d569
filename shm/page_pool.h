// The global page pool: hands runs of contiguous pages to stripes (a slab, a
// large entry, a big bucket array) and takes them back, under one robust
// mutex that is taken rarely (a stripe needs a page per page-size of growth).
//
// Crash safety: page_owner is the truth. Before changing the owner of a run's
// pages the pool writes an intent record; a repair redoes the change and then
// rebuilds the free runs (bins, coalescing, count) from page_owner alone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core.h"

namespace redhub::shm {

class PagePool {
 public:
  explicit PagePool(const Core* core);

  // A freshly created segment: every page free.
  void Format();
  // Lock order: the pool is a leaf; take it after any stripes, never before.
  void Lock();
  void Unlock();

  // With the lock held. A run of `pages` owned by `stripe`, its head's kind
  // kPageRunHead until the stripe formats it; kNoPage if no run is that long.
  uint32_t AllocRun(uint32_t pages, uint32_t stripe);
  void FreeRun(uint32_t head);
  // With the lock held: checks the free runs against page_owner.
  void Check(std::vector<std::string>* errors);

  uint64_t free_pages() const { return h_->free_pages.load(std::memory_order_relaxed); }

 private:
  void Repair();
  void AssignRun(uint32_t head, uint32_t pages, uint32_t owner);
  void InsertFree(uint32_t head, uint32_t pages);
  void RemoveFree(uint32_t head);

  const Core* c_;
  PoolHeader* h_;
};

}  // namespace redhub::shm
