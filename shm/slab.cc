// A stripe's memory: the size classes, the slabs it carves chunks from
// (AllocChunk, FreeChunk, the non-full lists), and the byte charges that feed
// maxmemory (Charge, UnflushedLimit). Everything the slabs keep (free lists,
// live counts, non-full lists) is derived: a repair rebuilds it from the
// chains and page_owner (repair.cc), so none of it needs to be
// crash-consistent; only the kind of a run's head is stored last (SetKind).
#include <algorithm>
#include <cstring>

#include "crash_point.h"
#include "page_pool.h"
#include "stripe.h"
#include "stripe_internal.h"

namespace redhub::shm {

size_t ClassFor(uint64_t bytes) {
  return std::lower_bound(std::begin(kSizeClasses), std::end(kSizeClasses), bytes) -
         std::begin(kSizeClasses);
}

// Slabs hold at least four chunks, so that the biggest class wastes at most
// one chunk's worth of a partly used slab per stripe.
static uint32_t SlabPages(size_t cls, uint32_t page_shift) {
  uint64_t want = uint64_t{kSizeClasses[cls]} * 4;
  uint64_t page = uint64_t{1} << page_shift;
  return static_cast<uint32_t>(std::max<uint64_t>(1, (want + page - 1) / page));
}

uint64_t Stripe::ChargeFor(uint64_t bytes) const {
  if (bytes > kMaxSmallChunk) {
    uint64_t page = c_.g.page_size;
    return (bytes + page - 1) / page * page;
  }
  return kSizeClasses[ClassFor(bytes)];
}

uint64_t Stripe::EntryCharge(uint64_t entry) const {
  const EntryHeader* e = c_.Entry(entry);
  return ChargeFor(uint64_t{kEntryHeaderBytes} + e->key_len + e->value_len);
}

// The store-wide used_bytes is one cache line that every worker's writes
// would otherwise bounce between cores (2 processes doing SETs on random keys
// lost ~15% of their throughput to it). So each stripe adds its changes up
// and passes them on once they reach UnflushedLimit, 1/64 of maxmemory shared
// among the stripes (at most 64 KB each). The maxmemory check allows for what
// other stripes may not have passed on yet (Store::Impl::MakeRoom), so the
// limit is never exceeded; the price is up to 1/64 of maxmemory left unused.
// Store::stats() sums the stripes' exact `used`.
int64_t Stripe::UnflushedLimit(const Core& core) {
  constexpr int64_t kMaxUnflushed = 64 << 10;
  const uint64_t max = core.header->maxmemory.load(kRelaxed);
  if (max != core.unflushed_limit_for) {
    core.unflushed_limit =
        max == 0
            ? kMaxUnflushed
            : std::min<int64_t>(kMaxUnflushed, static_cast<int64_t>(max / core.g.stripes / 64));
    core.unflushed_limit_for = max;
  }
  return core.unflushed_limit;
}

void Stripe::Charge(int64_t bytes) {
  Add(h_->used, bytes);
  int64_t pending = h_->unflushed.load(kRelaxed) + bytes;
  const int64_t limit = UnflushedLimit(c_);
  // Frees are passed on at once (a stripe never holds back a credit), so
  // the other stripes' share can only make MakeRoom too careful, by at most
  // the allowance, and never lets it exceed the limit.
  if (pending >= limit || pending < 0) {
    c_.header->used_bytes.fetch_add(pending, kRelaxed);
    pending = 0;
  }
  h_->unflushed.store(pending, kRelaxed);
}

void Stripe::ReleaseRun(uint32_t head) {
  c_.pool->Lock();
  c_.pool->FreeRun(head);
  c_.pool->Unlock();
}

void Stripe::PushNonfull(size_t cls, uint32_t head) {
  PageMeta& m = c_.meta[head];
  m.prev = 0;
  m.next = h_->nonfull[cls];
  if (m.next != 0) c_.meta[m.next - 1].prev = head + 1;
  h_->nonfull[cls] = head + 1;
}

void Stripe::RemoveNonfull(size_t cls, uint32_t head) {
  PageMeta& m = c_.meta[head];
  if (m.prev != 0) {
    c_.meta[m.prev - 1].next = m.next;
  } else {
    h_->nonfull[cls] = m.next;
  }
  if (m.next != 0) c_.meta[m.next - 1].prev = m.prev;
  m.prev = m.next = 0;
}

uint32_t Stripe::TakeRun(uint64_t pages) {
  if (pages > c_.g.pages) return kNoPage;
  c_.pool->Lock();
  uint32_t head = c_.pool->AllocRun(static_cast<uint32_t>(pages), index_);
  c_.pool->Unlock();
  return head;
}

uint32_t Stripe::NewSlab(size_t cls) {
  uint32_t pages = SlabPages(cls, c_.page_shift);
  uint32_t head = TakeRun(pages);
  if (head == kNoPage) return 0;
  PageMeta& m = c_.meta[head];
  uint32_t size = kSizeClasses[cls];
  uint32_t capacity = static_cast<uint32_t>((uint64_t{pages} << c_.page_shift) / size);
  char* p = c_.base + c_.PageOffset(head);
  for (uint32_t i = 0; i < capacity; i++) {
    uint32_t next = i + 1 < capacity ? i + 2 : 0;
    memcpy(p + uint64_t{i} * size, &next, sizeof(next));
  }
  m.size_class = static_cast<uint8_t>(cls);
  m.live = 0;
  m.free_slot = 1;
  m.prev = m.next = 0;
  SetKind(m, kPageSlab);
  PushNonfull(cls, head);
  return head + 1;
}

uint64_t Stripe::AllocChunk(uint64_t bytes) {
  if (bytes > kMaxSmallChunk) {
    uint64_t pages = (bytes + c_.g.page_size - 1) >> c_.page_shift;
    uint32_t head = TakeRun(pages);
    if (head == kNoPage) return 0;
    SetKind(c_.meta[head], kPageLarge);
    Charge(static_cast<int64_t>(pages << c_.page_shift));
    return c_.PageOffset(head);
  }
  size_t cls = ClassFor(bytes);
  uint32_t slab = h_->nonfull[cls];
  if (slab == 0 && (slab = NewSlab(cls)) == 0) return 0;
  PageMeta& m = c_.meta[slab - 1];
  uint32_t size = kSizeClasses[cls];
  uint64_t offset = c_.PageOffset(slab - 1) + uint64_t{m.free_slot - 1} * size;
  uint32_t next;
  memcpy(&next, c_.base + offset, sizeof(next));
  m.free_slot = next;
  MaybeCrash(CrashPoint::kSlabAlloc);
  m.live++;
  if (next == 0) RemoveNonfull(cls, slab - 1);
  Charge(size);
  return offset;
}

void Stripe::ReturnChunk(uint64_t offset, uint64_t charge) {
  Charge(-static_cast<int64_t>(charge));
  FreeChunk(offset);
}

void Stripe::FreeChunk(uint64_t offset) {
  uint32_t head = c_.meta[c_.PageOf(offset)].head;
  PageMeta& m = c_.meta[head];
  if (m.kind != kPageSlab) {  // a large entry's or a table's own run
    ReleaseRun(head);
    return;
  }
  size_t cls = m.size_class;
  uint32_t size = kSizeClasses[cls];
  uint32_t slot = static_cast<uint32_t>((offset - c_.PageOffset(head)) / size);
  bool was_full = m.free_slot == 0;
  memcpy(c_.base + offset, &m.free_slot, sizeof(m.free_slot));
  m.free_slot = slot + 1;
  MaybeCrash(CrashPoint::kSlabFree);
  m.live--;
  if (m.live == 0) {
    if (!was_full) RemoveNonfull(cls, head);
    ReleaseRun(head);
  } else if (was_full) {
    PushNonfull(cls, head);
  }
}

}  // namespace redhub::shm
