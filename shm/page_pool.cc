#include "page_pool.h"

#include <atomic>
#include <bit>

#include "crash_point.h"
#include "robust_mutex.h"

namespace redhub::shm {
namespace {

// Bins 0..31 hold runs of exactly 1..32 pages; bin 32 + k holds runs of
// [2^(k+5), 2^(k+6)) pages, the last bin everything longer.
int BinFor(uint32_t pages) {
  if (pages <= 32) return static_cast<int>(pages) - 1;
  int k = std::bit_width(pages) - 1 - 5;  // floor(log2(pages)) - 5, >= 0
  return std::min(kPoolBins - 1, 32 + k);
}

}  // namespace

PagePool::PagePool(const Core* core) : c_(core), h_(&core->header->pool) {}

void PagePool::Format() {
  InitRobustMutex(&h_->mu);
  h_->intent.op.store(kPoolOpNone, std::memory_order_relaxed);
  for (uint32_t& bin : h_->bins) bin = 0;
  h_->free_pages.store(c_->g.pages, std::memory_order_relaxed);
  InsertFree(0, static_cast<uint32_t>(c_->g.pages));
}

void PagePool::Lock() {
  if (LockRobustWaiting(&h_->mu, "page pool", 0) == LockResult::kOwnerDied) {
    try {
      Repair();
    } catch (const std::exception& e) {  // see Store::Impl::RepairStripe
      Fatal("repairing the page pool failed: %s", e.what());
    }
    MarkConsistent(&h_->mu);
  }
}

void PagePool::Unlock() { UnlockRobust(&h_->mu); }

void PagePool::InsertFree(uint32_t head, uint32_t pages) {
  PageMeta* m = c_->meta;
  PageMeta& hm = m[head];
  hm.head = head;
  hm.run_pages = pages;
  hm.kind = kPageFree;
  hm.prev = 0;
  int bin = BinFor(pages);
  hm.next = h_->bins[bin];
  if (hm.next != 0) m[hm.next - 1].prev = head + 1;
  h_->bins[bin] = head + 1;
  // The last page names the head, so that a run freed just after it can find
  // the run to merge with.
  PageMeta& last = m[head + pages - 1];
  last.head = head;
  last.kind = kPageFree;
}

void PagePool::RemoveFree(uint32_t head) {
  PageMeta* m = c_->meta;
  PageMeta& hm = m[head];
  if (hm.prev != 0) {
    m[hm.prev - 1].next = hm.next;
  } else {
    h_->bins[BinFor(hm.run_pages)] = hm.next;
  }
  if (hm.next != 0) m[hm.next - 1].prev = hm.prev;
  hm.prev = hm.next = 0;
}

void PagePool::AssignRun(uint32_t head, uint32_t pages, uint32_t owner) {
  PageMeta* m = c_->meta;
  for (uint32_t i = 0; i < pages; i++) {
    uint32_t p = head + i;
    m[p].head = head;
    m[p].kind = i == 0 ? kPageRunHead : kPageTail;
    c_->owner[p].store(owner, std::memory_order_relaxed);
    if (i == pages / 2) MaybeCrash(CrashPoint::kPoolAlloc);
  }
  m[head].run_pages = pages;
}

uint32_t PagePool::AllocRun(uint32_t pages, uint32_t stripe) {
  if (pages == 0 || pages > c_->g.pages) return kNoPage;
  PageMeta* m = c_->meta;
  uint32_t found = kNoPage;
  for (int bin = BinFor(pages); bin < kPoolBins && found == kNoPage; bin++) {
    // Every run in a higher bin is long enough; in the first one, look.
    for (uint32_t r = h_->bins[bin]; r != 0; r = m[r - 1].next) {
      if (m[r - 1].run_pages >= pages) {
        found = r - 1;
        break;
      }
    }
  }
  if (found == kNoPage) return kNoPage;
  uint32_t length = m[found].run_pages;
  RemoveFree(found);
  if (length > pages) InsertFree(found + pages, length - pages);

  PoolIntent& intent = h_->intent;
  intent.owner = stripe + 1;
  intent.start = found;
  intent.pages = pages;
  intent.op.store(kPoolOpAlloc, std::memory_order_release);
  AssignRun(found, pages, stripe + 1);
  h_->free_pages.store(h_->free_pages.load(std::memory_order_relaxed) - pages,
                       std::memory_order_relaxed);
  intent.op.store(kPoolOpNone, std::memory_order_release);
  return found;
}

void PagePool::FreeRun(uint32_t head) {
  PageMeta* m = c_->meta;
  uint32_t pages = m[head].run_pages;
  PoolIntent& intent = h_->intent;
  intent.owner = kNoOwner;
  intent.start = head;
  intent.pages = pages;
  intent.op.store(kPoolOpFree, std::memory_order_release);
  for (uint32_t i = 0; i < pages; i++) {
    c_->owner[head + i].store(kNoOwner, std::memory_order_relaxed);
    if (i == pages / 2) MaybeCrash(CrashPoint::kPoolFree);
  }
  h_->free_pages.store(h_->free_pages.load(std::memory_order_relaxed) + pages,
                       std::memory_order_relaxed);
  // Free runs are kept maximal: a free page next to this run is the last page
  // of the run before it, or the head of the run after it.
  uint32_t start = head, length = pages;
  if (head > 0 && c_->owner[head - 1].load(std::memory_order_relaxed) == kNoOwner) {
    uint32_t left = m[head - 1].head;
    start = left;
    length += m[left].run_pages;
    RemoveFree(left);
  }
  uint64_t after = uint64_t{head} + pages;
  if (after < c_->g.pages && c_->owner[after].load(std::memory_order_relaxed) == kNoOwner) {
    uint32_t right = static_cast<uint32_t>(after);
    length += m[right].run_pages;
    RemoveFree(right);
  }
  InsertFree(start, length);
  intent.op.store(kPoolOpNone, std::memory_order_release);
}

void PagePool::Repair() {
  PoolIntent& intent = h_->intent;
  uint32_t op = intent.op.load(std::memory_order_acquire);
  std::string what = "none";
  if (op == kPoolOpAlloc && intent.start < c_->g.pages &&
      uint64_t{intent.start} + intent.pages <= c_->g.pages) {
    AssignRun(intent.start, intent.pages, intent.owner);
    what = "finished giving pages " + std::to_string(intent.start) + "+" +
           std::to_string(intent.pages) + " to stripe " + std::to_string(intent.owner - 1);
  } else if (op == kPoolOpFree && intent.start < c_->g.pages &&
             uint64_t{intent.start} + intent.pages <= c_->g.pages) {
    for (uint32_t i = 0; i < intent.pages; i++) {
      c_->owner[intent.start + i].store(kNoOwner, std::memory_order_relaxed);
    }
    what = "finished freeing pages " + std::to_string(intent.start) + "+" +
           std::to_string(intent.pages);
  }
  intent.op.store(kPoolOpNone, std::memory_order_release);
  MaybeCrash(CrashPoint::kRepairPool);

  // Rebuild the free runs from page_owner.
  for (uint32_t& bin : h_->bins) bin = 0;
  uint64_t free = 0;
  const uint64_t n = c_->g.pages;
  for (uint64_t p = 0; p < n;) {
    if (c_->owner[p].load(std::memory_order_relaxed) != kNoOwner) {
      p++;
      continue;
    }
    uint64_t q = p;
    while (q < n && c_->owner[q].load(std::memory_order_relaxed) == kNoOwner) q++;
    InsertFree(static_cast<uint32_t>(p), static_cast<uint32_t>(q - p));
    free += q - p;
    p = q;
  }
  h_->free_pages.store(free, std::memory_order_relaxed);
  c_->header->pool_repairs.fetch_add(1, std::memory_order_relaxed);
  c_->Report("page pool repaired after its lock holder died: intent " + what + ", " +
             std::to_string(free) + " pages free");
}

void PagePool::Check(std::vector<std::string>* errors) {
  PageMeta* m = c_->meta;
  const uint64_t n = c_->g.pages;
  auto error = [&](const std::string& what) { errors->push_back("page pool: " + what); };
  if (h_->intent.op.load(std::memory_order_relaxed) != kPoolOpNone) error("intent left active");
  std::vector<uint8_t> listed(n, 0);
  uint64_t listed_pages = 0;
  for (int bin = 0; bin < kPoolBins; bin++) {
    uint32_t prev = 0;
    uint64_t steps = 0;
    for (uint32_t r = h_->bins[bin]; r != 0; prev = r, r = m[r - 1].next) {
      if (++steps > n || r - 1 >= n) {
        error("bin " + std::to_string(bin) + " list is cyclic or out of bounds");
        break;
      }
      uint32_t head = r - 1;
      const PageMeta& hm = m[head];
      if (hm.prev != prev) error("run " + std::to_string(head) + " has a wrong prev link");
      if (hm.kind != kPageFree || hm.head != head || hm.run_pages == 0 ||
          head + uint64_t{hm.run_pages} > n || BinFor(hm.run_pages) != bin) {
        error("run " + std::to_string(head) + " is malformed or in the wrong bin");
        break;
      }
      if (m[head + hm.run_pages - 1].head != head) {
        error("run " + std::to_string(head) + "'s last page does not name its head");
      }
      for (uint32_t i = 0; i < hm.run_pages; i++) {
        if (c_->owner[head + i].load(std::memory_order_relaxed) != kNoOwner) {
          error("free run " + std::to_string(head) + " contains owned page " +
                std::to_string(head + i));
        }
        if (listed[head + i]++) error("page " + std::to_string(head + i) + " listed twice");
      }
      listed_pages += hm.run_pages;
      if (head > 0 && c_->owner[head - 1].load(std::memory_order_relaxed) == kNoOwner) {
        error("free run " + std::to_string(head) + " not merged with the run before it");
      }
    }
  }
  uint64_t free = 0;
  for (uint64_t p = 0; p < n; p++) {
    if (c_->owner[p].load(std::memory_order_relaxed) == kNoOwner) {
      free++;
      if (!listed[p]) error("free page " + std::to_string(p) + " is in no free run (leak)");
    }
  }
  if (free != listed_pages || free != free_pages()) {
    error("free page count " + std::to_string(free_pages()) + ", page_owner says " +
          std::to_string(free) + ", bins hold " + std::to_string(listed_pages));
  }
}

}  // namespace redhub::shm
