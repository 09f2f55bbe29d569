// Helpers shared by the files that implement Stripe (slab.cc, table.cc,
// eviction.cc, txn_repair.cc, repair.cc, audit.cc) and by the store's own
// files: they were file-local when Stripe was one file. Internal to shm/.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "layout.h"
#include "stripe.h"

namespace redhub::shm {

inline constexpr auto kRelaxed = std::memory_order_relaxed;
inline constexpr auto kRelease = std::memory_order_release;

inline void SetKind(PageMeta& m, PageKind kind) {
  // The kind is what a repair reads to know how to sweep the run: stored last.
  std::atomic_ref<uint8_t>(m.kind).store(kind, kRelease);
}

// A counter only its stripe's lock holder writes: a plain read-modify-write
// is enough (readers without the lock only want an estimate).
template <typename T>
void Add(std::atomic<T>& counter, int64_t delta) {
  counter.store(counter.load(kRelaxed) + static_cast<T>(delta), kRelaxed);
}

// A bucket array of this many bytes gets a run of its own pages, not a chunk.
inline bool TableIsRun(uint64_t bytes, uint32_t page_size) {
  return bytes > kMaxSmallChunk || bytes >= page_size;
}

// What the table `desc` names is charged (its chunk's class, or its pages).
inline uint64_t TableCharge(uint64_t desc, uint32_t page_size) {
  uint64_t bytes = uint64_t{8} << TableLog2(desc);
  if (TableIsRun(bytes, page_size)) return (bytes + page_size - 1) / page_size * page_size;
  return kSizeClasses[ClassFor(bytes)];
}

// What a walk of the chains found (Stripe::Walk): the sweep that follows
// (RebuildSlabs in a repair, CheckSlabs in an audit) treats every chunk not
// in `live` as free.
struct Stripe::SweepResult {
  std::vector<uint64_t> live;  // offsets of chunks and runs in use (entries, tables), sorted
  uint64_t keys = 0;
  uint64_t expires = 0;
  uint64_t used = 0;
  uint64_t errors = 0;
  std::vector<std::string> messages;
};

// Marks in `in_use` (one byte per chunk of a slab of `size`-byte chunks
// spanning [start, end)) the chunks `live` names; returns how many.
inline uint32_t MarkLiveChunks(const std::vector<uint64_t>& live, uint64_t start, uint64_t end,
                               uint32_t size, uint32_t capacity, std::vector<uint8_t>* in_use) {
  in_use->assign(capacity, 0);
  uint32_t count = 0;
  for (auto it = std::lower_bound(live.begin(), live.end(), start); it != live.end() && *it < end;
       ++it) {
    (*in_use)[(*it - start) / size] = 1;
    count++;
  }
  return count;
}

}  // namespace redhub::shm
