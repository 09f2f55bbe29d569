#include "stripe.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <unordered_set>

#include "crash_point.h"
#include "page_pool.h"
#include "store.h"

namespace redhub::shm {
namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;
constexpr auto kRelease = std::memory_order_release;

uint32_t CeilLog2(uint64_t x) { return x <= 1 ? 0 : std::bit_width(x - 1); }

void SetKind(PageMeta& m, PageKind kind) {
  // The kind is what a repair reads to know how to sweep the run: stored last.
  std::atomic_ref<uint8_t>(m.kind).store(kind, kRelease);
}

template <typename T>
void Add(std::atomic<T>& counter, int64_t delta) {
  counter.store(counter.load(kRelaxed) + static_cast<T>(delta), kRelaxed);
}

}  // namespace

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

// ---------------------------------------------------------------------------
// Memory

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

void Stripe::AddCounts(int64_t keys, int64_t expires) {
  Add(h_->keys, keys);
  Add(h_->expires, expires);
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

uint32_t Stripe::NewSlab(size_t cls) {
  uint32_t pages = SlabPages(cls, c_.page_shift);
  c_.pool->Lock();
  uint32_t head = c_.pool->AllocRun(pages, index_);
  c_.pool->Unlock();
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
    if (pages > c_.g.pages) return 0;
    c_.pool->Lock();
    uint32_t head = c_.pool->AllocRun(static_cast<uint32_t>(pages), index_);
    c_.pool->Unlock();
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

// ---------------------------------------------------------------------------
// Tables

static bool TableIsRun(uint64_t bytes, uint32_t page_size) {
  return bytes > kMaxSmallChunk || bytes >= page_size;
}

Table Stripe::GetTable(int i) const {
  Table t;
  t.desc = h_->tables[i].load(kRelaxed);
  if (t.desc == 0) return t;
  t.slots = c_.At<std::atomic<uint64_t>>(TableOffset(t.desc));
  t.size = uint64_t{1} << TableLog2(t.desc);
  t.mask = t.size - 1;
  return t;
}

uint64_t Stripe::AllocTable(uint32_t log2) {
  uint64_t bytes = uint64_t{8} << log2;
  if (!TableIsRun(bytes, c_.g.page_size)) {
    uint64_t offset = AllocChunk(bytes);
    if (offset != 0) memset(c_.base + offset, 0, bytes);
    return offset;
  }
  uint64_t pages = (bytes + c_.g.page_size - 1) >> c_.page_shift;
  if (pages > c_.g.pages) return 0;
  c_.pool->Lock();
  uint32_t head = c_.pool->AllocRun(static_cast<uint32_t>(pages), index_);
  c_.pool->Unlock();
  if (head == kNoPage) return 0;
  uint64_t offset = c_.PageOffset(head);
  memset(c_.base + offset, 0, bytes);
  SetKind(c_.meta[head], kPageTable);
  Charge(static_cast<int64_t>(pages << c_.page_shift));
  return offset;
}

static uint64_t TableCharge(uint64_t desc, uint32_t page_size) {
  uint64_t bytes = uint64_t{8} << TableLog2(desc);
  if (TableIsRun(bytes, page_size)) return (bytes + page_size - 1) / page_size * page_size;
  return kSizeClasses[ClassFor(bytes)];
}

void Stripe::FreeTable(uint64_t desc) {
  Charge(-static_cast<int64_t>(TableCharge(desc, c_.g.page_size)));
  FreeChunk(TableOffset(desc));
}

std::atomic<uint64_t>* Stripe::InsertSlot(uint64_t hash) {
  if (h_->tables[0].load(kRelaxed) == 0) {
    uint64_t offset = AllocTable(kMinTableLog2);
    if (offset == 0) return nullptr;
    h_->rehash_index.store(0, kRelaxed);
    h_->tables[0].store(MakeTableDesc(offset, kMinTableLog2), kRelease);
  }
  Table t = GetTable(rehashing() ? 1 : 0);
  return &t.slots[hash & t.mask];
}

bool Stripe::Lookup(std::string_view key, uint64_t hash, Slot* slot) const {
  for (int i = 0; i < 2; i++) {
    Table t = GetTable(i);
    if (t.desc == 0) continue;
    std::atomic<uint64_t>* link = &t.slots[hash & t.mask];
    for (uint64_t e = LinkOffset(link->load(kRelaxed)); e != 0;
         e = LinkOffset(link->load(kRelaxed))) {
      EntryHeader* entry = c_.Entry(e);
      if (entry->key_len == key.size() && memcmp(entry->key(), key.data(), key.size()) == 0) {
        slot->link = link;
        slot->entry = e;
        return true;
      }
      link = &entry->link;
    }
  }
  return false;
}

const std::atomic<uint64_t>* Stripe::BucketUnlocked(uint64_t desc, uint64_t hash) const {
  const uint64_t table = TableOffset(desc);
  const uint32_t log2 = TableLog2(desc);
  if (log2 > kMaxTableLog2 || !c_.InPool(table) ||
      (uint64_t{8} << log2) > c_.g.total_bytes - table) {
    return nullptr;
  }
  return &c_.At<std::atomic<uint64_t>>(table)[hash & ((uint64_t{1} << log2) - 1)];
}

Stripe::Probe Stripe::LookupUnlocked(std::string_view key, uint64_t hash, uint64_t* found) const {
  // A healthy chain is about one entry long (tables grow at load factor 1);
  // a walk this long means a cycle through reused chunks.
  constexpr int kMaxSteps = 64;
  const uint64_t end = c_.g.total_bytes;
  int steps = 0;
  for (int i = 0; i < 2; i++) {
    uint64_t desc = h_->tables[i].load(kRelaxed);
    if (desc == 0) continue;
    const auto* link = BucketUnlocked(desc, hash);
    if (link == nullptr) return Probe::kInvalid;
    for (uint64_t e = LinkOffset(link->load(kRelaxed)); e != 0;
         e = LinkOffset(link->load(kRelaxed))) {
      if (++steps > kMaxSteps || !c_.InPool(e) || end - e < kEntryHeaderBytes) {
        return Probe::kInvalid;
      }
      EntryHeader* entry = c_.Entry(e);
      // One load, never repeated by the compiler: the bytes may change.
      uint32_t key_len = __atomic_load_n(&entry->key_len, __ATOMIC_RELAXED);
      if (key_len == key.size() && end - e - kEntryHeaderBytes >= key_len &&
          memcmp(entry->key(), key.data(), key_len) == 0) {
        *found = e;
        return Probe::kFound;
      }
      link = &entry->link;
    }
  }
  return Probe::kAbsent;
}

void Stripe::Unlink(const Slot& slot) {
  EntryHeader* e = c_.Entry(slot.entry);
  Publish(slot.link, LinkOffset(e->link.load(kRelaxed)));
  AddCounts(-1, e->expire_ms.load(kRelaxed) != 0 ? -1 : 0);
  Charge(-static_cast<int64_t>(EntryCharge(slot.entry)));
}

bool Stripe::ApplyTxnOp(uint64_t entry_kind, int64_t expire_ms, bool repair,
                        std::vector<uint64_t>* unreachable) {
  uint64_t entry = entry_kind & ~uint64_t{7};
  uint64_t kind = entry_kind & 7;
  if (repair) {
    std::string why;
    if (kind < kTxnOpPut || kind > kTxnOpExpire || !ValidEntryChunk(entry, &why)) return false;
  }
  EntryHeader* e = c_.Entry(entry);
  std::string_view key(e->key(), e->key_len);
  uint64_t hash = c_.Hash(key);
  if (repair && c_.StripeOfHash(hash) != index_) return false;
  Slot slot;
  bool found = Lookup(key, hash, &slot);
  if (kind == kTxnOpPut) {
    if (found && slot.entry == entry) return true;  // published already
    int64_t expire = e->expire_ms.load(kRelaxed);
    if (found) {
      EntryHeader* old = c_.Entry(slot.entry);
      int64_t old_expire = old->expire_ms.load(kRelaxed);
      e->link.store(WithOffset(e->link.load(kRelaxed), LinkOffset(old->link.load(kRelaxed))),
                    kRelaxed);
      Publish(slot.link, entry);
      if (!repair) {
        AddCounts(0, (expire != 0) - (old_expire != 0));
        Charge(-static_cast<int64_t>(EntryCharge(slot.entry)));
        unreachable->push_back(slot.entry);
      }
      return true;
    }
    if (h_->tables[0].load(kRelaxed) == 0) return false;  // the Txn made sure of a table
    Table t = GetTable(rehashing() ? 1 : 0);
    std::atomic<uint64_t>* head = &t.slots[hash & t.mask];
    e->link.store(WithOffset(e->link.load(kRelaxed), LinkOffset(head->load(kRelaxed))), kRelaxed);
    Publish(head, entry);
    if (!repair) AddCounts(1, expire != 0);
    return true;
  }
  if (!found || slot.entry != entry) return true;  // gone already (done, evicted, expired)
  if (kind == kTxnOpErase) {
    if (repair) {
      Publish(slot.link, LinkOffset(e->link.load(kRelaxed)));
    } else {
      Unlink(slot);
      unreachable->push_back(entry);
    }
    return true;
  }
  int64_t old = e->expire_ms.load(kRelaxed);
  e->expire_ms.store(expire_ms, kRelaxed);
  if (!repair) AddCounts(0, (expire_ms != 0) - (old != 0));
  return true;
}

// Moving an entry between chains takes three stores: out of the old chain,
// its link to the new chain's head, the new head. A death between the first
// and the last would lose the entry, so the move is announced first; Repair
// (ResolveIntent) then finishes it, or sees that it never started.
void Stripe::MoveEntry(std::atomic<uint64_t>* from, uint64_t entry, uint64_t to_desc,
                       uint32_t to_bucket) {
  MoveIntent& intent = h_->intent;
  intent.entry = entry;
  intent.from_slot = c_.OffsetOf(from);
  intent.to_table = to_desc;
  intent.to_bucket = to_bucket;
  intent.active.store(1, kRelease);
  EntryHeader* e = c_.Entry(entry);
  Publish(from, LinkOffset(e->link.load(kRelaxed)));
  MaybeCrash(CrashPoint::kRehashMove);
  std::atomic<uint64_t>* to = &c_.At<std::atomic<uint64_t>>(TableOffset(to_desc))[to_bucket];
  e->link.store(WithOffset(e->link.load(kRelaxed), LinkOffset(to->load(kRelaxed))), kRelease);
  Publish(to, entry);
  intent.active.store(0, kRelease);
}

void Stripe::RehashStep(int buckets) {
  if (!rehashing()) return;
  Table from = GetTable(0), to = GetTable(1);
  uint64_t index = h_->rehash_index.load(kRelaxed);
  int empty_visits = buckets * 10;
  while (buckets > 0 && index < from.size) {
    std::atomic<uint64_t>* bucket = &from.slots[index];
    uint64_t e = LinkOffset(bucket->load(kRelaxed));
    if (e == 0) {
      index++;
      if (--empty_visits == 0) break;
      continue;
    }
    for (; e != 0; e = LinkOffset(bucket->load(kRelaxed))) {
      EntryHeader* entry = c_.Entry(e);
      uint64_t hash = c_.Hash(std::string_view(entry->key(), entry->key_len));
      MoveEntry(bucket, e, to.desc, static_cast<uint32_t>(hash & to.mask));
    }
    index++;
    buckets--;
  }
  h_->rehash_index.store(index, kRelaxed);
  if (index >= from.size) FinishRehash();
}

void Stripe::FinishRehash() {
  uint64_t old_desc = h_->tables[0].load(kRelaxed);
  // Both slots naming the same table is a state Repair knows to finish.
  h_->tables[0].store(h_->tables[1].load(kRelaxed), kRelease);
  MaybeCrash(CrashPoint::kRehashFinish);
  h_->tables[1].store(0, kRelease);
  h_->rehash_index.store(0, kRelaxed);
  FreeTable(old_desc);
}

void Stripe::StartRehash(uint32_t log2) {
  log2 = std::clamp(log2, kMinTableLog2, kMaxTableLog2);
  if (log2 == TableLog2(h_->tables[0].load(kRelaxed))) return;
  uint64_t offset = AllocTable(log2);
  if (offset == 0) return;  // no memory: keep the current table, chains get longer
  h_->rehash_index.store(0, kRelaxed);
  h_->tables[1].store(MakeTableDesc(offset, log2), kRelease);
}

void Stripe::MaybeResize() {
  uint64_t keys = h_->keys.load(kRelaxed);
  if (keys == 0) {
    // Drop the tables, but only if they are really empty: the counter is
    // exact, and this keeps a counter bug from ever costing data.
    for (int i = 0; i < 2; i++) {
      Table t = GetTable(i);
      for (uint64_t b = 0; b < t.size; b++) {
        if (t.slots[b].load(kRelaxed) != 0) return;
      }
    }
    uint64_t d0 = h_->tables[0].load(kRelaxed), d1 = h_->tables[1].load(kRelaxed);
    h_->tables[1].store(0, kRelease);
    h_->tables[0].store(0, kRelease);
    h_->rehash_index.store(0, kRelaxed);
    if (d1 != 0) FreeTable(d1);
    if (d0 != 0) FreeTable(d0);
    return;
  }
  if (rehashing()) return;
  Table t = GetTable(0);
  if (t.desc == 0) return;
  if (keys >= t.size) {
    StartRehash(CeilLog2(keys + 1));
  } else if (t.size > (uint64_t{1} << kMinTableLog2) && keys * 10 < t.size) {
    StartRehash(CeilLog2(keys));
  }
}

uint64_t Stripe::Clear() {
  uint64_t removed = h_->keys.load(kRelaxed);
  uint64_t descs[2] = {h_->tables[1].load(kRelaxed), h_->tables[0].load(kRelaxed)};
  // Detach first: from here on nothing is reachable, and a death midway
  // leaves only unreachable chunks, which a repair reclaims.
  h_->tables[1].store(0, kRelease);
  h_->tables[0].store(0, kRelease);
  h_->rehash_index.store(0, kRelaxed);
  for (uint64_t desc : descs) {
    if (desc == 0) continue;
    auto* slots = c_.At<std::atomic<uint64_t>>(TableOffset(desc));
    uint64_t size = uint64_t{1} << TableLog2(desc);
    for (uint64_t b = 0; b < size; b++) {
      uint64_t e = LinkOffset(slots[b].load(kRelaxed));
      while (e != 0) {
        uint64_t next = LinkOffset(c_.Entry(e)->link.load(kRelaxed));
        Charge(-static_cast<int64_t>(EntryCharge(e)));
        FreeChunk(e);
        e = next;
      }
    }
    FreeTable(desc);
  }
  h_->keys.store(0, kRelaxed);
  h_->expires.store(0, kRelaxed);
  return removed;
}

// ---------------------------------------------------------------------------
// Sampling

bool Stripe::Sample(Policy policy, int want, uint32_t lru_now, uint64_t& rng,
                    Candidate* best) const {
  bool volatile_only = policy == Policy::kVolatileLru || policy == Policy::kVolatileTtl;
  Table tables[2] = {GetTable(0), GetTable(1)};
  if (tables[0].desc == 0) return false;
  int first = tables[1].desc != 0 && (NextRandom(rng) & 1) ? 1 : 0;
  int seen = 0;
  for (int k = 0; k < 2 && seen < want; k++) {
    const Table& t = tables[(first + k) & 1];
    if (t.desc == 0) continue;
    uint64_t start = NextRandom(rng);
    // A short walk from a random bucket normally finds `want` candidates; if
    // it finds none although the counters say some exist (a sparse table, or
    // few keys with an expire time), walk on, up to the whole table.
    uint64_t visits = std::min<uint64_t>(t.size, 64 + 8 * want);
    uint64_t exist = (volatile_only ? h_->expires : h_->keys).load(kRelaxed);
    for (uint64_t i = 0; i < t.size && seen < want && (i < visits || (seen == 0 && exist > 0));
         i++) {
      std::atomic<uint64_t>* link = &t.slots[(start + i) & t.mask];
      for (uint64_t e = LinkOffset(link->load(kRelaxed)); e != 0;
           e = LinkOffset(link->load(kRelaxed))) {
        EntryHeader* entry = c_.Entry(e);
        int64_t expire = entry->expire_ms.load(kRelaxed);
        if (!volatile_only || expire != 0) {
          uint64_t score;
          switch (policy) {
            case Policy::kVolatileTtl:
              score = ~static_cast<uint64_t>(expire);  // soonest expiry first
              break;
            case Policy::kAllKeysRandom:
              score = NextRandom(rng) | 1;
              break;
            default:  // LRU: idle time on the 24-bit seconds clock, as Redis
              score = 1 + ((lru_now - LinkLru(entry->link.load(kRelaxed))) & kLruClockMax);
          }
          if (!best->found || score > best->score) {
            *best = Candidate{Slot{link, e}, score, true};
          }
          seen++;
        }
        link = &entry->link;
      }
    }
  }
  return best->found;
}

bool Stripe::RandomEntry(uint64_t& rng, Slot* slot) const {
  Table tables[2] = {GetTable(0), GetTable(1)};
  if (tables[0].desc == 0) return false;
  uint64_t total = tables[0].size + tables[1].size;
  for (int tries = 0; tries < 100; tries++) {
    uint64_t pick = NextRandom(rng) % total;
    const Table& t = pick < tables[0].size ? tables[0] : tables[1];
    std::atomic<uint64_t>* bucket = &t.slots[pick & t.mask];
    uint64_t length = 0;
    for (uint64_t e = LinkOffset(bucket->load(kRelaxed)); e != 0;
         e = LinkOffset(c_.Entry(e)->link.load(kRelaxed))) {
      length++;
    }
    if (length == 0) continue;
    uint64_t k = NextRandom(rng) % length;
    std::atomic<uint64_t>* link = bucket;
    for (; k > 0; k--) link = &c_.Entry(LinkOffset(link->load(kRelaxed)))->link;
    *slot = Slot{link, LinkOffset(link->load(kRelaxed))};
    return true;
  }
  for (const Table& t : tables) {  // sparse: take the first one
    for (uint64_t b = 0; b < t.size; b++) {
      uint64_t e = LinkOffset(t.slots[b].load(kRelaxed));
      if (e != 0) {
        *slot = Slot{&t.slots[b], e};
        return true;
      }
    }
  }
  return false;
}

// ---------------------------------------------------------------------------
// Validation and repair

struct Stripe::SweepResult {
  std::vector<uint64_t> live;  // offsets of chunks and runs in use (entries, tables)
  uint64_t keys = 0;
  uint64_t expires = 0;
  uint64_t used = 0;
  uint64_t errors = 0;
  std::vector<std::string> messages;
};

bool Stripe::ValidTableDesc(uint64_t desc, std::string* why) const {
  uint32_t log2 = TableLog2(desc);
  uint64_t offset = TableOffset(desc);
  if (log2 < kMinTableLog2 || log2 > kMaxTableLog2) {
    *why = "table size 2^" + std::to_string(log2) + " out of range";
    return false;
  }
  uint64_t bytes = uint64_t{8} << log2;
  if (!c_.InPool(offset) || offset + bytes > c_.g.total_bytes) {
    *why = "table offset " + std::to_string(offset) + " out of the pool";
    return false;
  }
  uint32_t page = c_.PageOf(offset);
  uint32_t head = c_.meta[page].head;
  if (c_.owner[page].load(kRelaxed) != index_ + 1 || head > page ||
      c_.owner[head].load(kRelaxed) != index_ + 1) {
    *why = "table in a page the stripe does not own";
    return false;
  }
  const PageMeta& m = c_.meta[head];
  if (TableIsRun(bytes, c_.g.page_size)) {
    if (head != page || m.kind != kPageTable ||
        m.run_pages != (bytes + c_.g.page_size - 1) / c_.g.page_size) {
      *why = "table run malformed";
      return false;
    }
  } else if (m.kind != kPageSlab || m.size_class != ClassFor(bytes) ||
             (offset - c_.PageOffset(head)) % kSizeClasses[m.size_class] != 0) {
    *why = "table chunk not in a slab of its size class";
    return false;
  }
  return true;
}

bool Stripe::ValidEntryChunk(uint64_t offset, std::string* why) const {
  if (!c_.InPool(offset)) {
    *why = "offset out of the pool or misaligned";
    return false;
  }
  uint32_t page = c_.PageOf(offset);
  uint32_t head = c_.meta[page].head;
  if (c_.owner[page].load(kRelaxed) != index_ + 1 || head > page ||
      c_.owner[head].load(kRelaxed) != index_ + 1) {
    *why = "in a page the stripe does not own";
    return false;
  }
  const PageMeta& m = c_.meta[head];
  const EntryHeader* e = c_.Entry(offset);
  uint64_t run_start = c_.PageOffset(head);
  uint64_t run_bytes = uint64_t{m.run_pages} << c_.page_shift;
  if (m.kind == kPageSlab) {
    if (m.size_class >= kNumClasses) {
      *why = "slab with a bad size class";
      return false;
    }
    uint32_t size = kSizeClasses[m.size_class];
    uint64_t rel = offset - run_start;
    if (rel % size != 0 || rel + size > run_bytes) {
      *why = "not at a chunk boundary of its slab";
      return false;
    }
    uint64_t bytes = uint64_t{kEntryHeaderBytes} + e->key_len + e->value_len;
    if (bytes > kMaxSmallChunk || ClassFor(bytes) != m.size_class) {
      *why = "key/value lengths do not fit its size class";
      return false;
    }
    return true;
  }
  if (m.kind == kPageLarge) {
    uint64_t bytes = uint64_t{kEntryHeaderBytes} + e->key_len + e->value_len;
    if (offset != run_start || bytes <= kMaxSmallChunk ||
        (bytes + c_.g.page_size - 1) >> c_.page_shift != m.run_pages) {
      *why = "key/value lengths do not fit its run";
      return false;
    }
    return true;
  }
  *why = "not in a run that holds entries";
  return false;
}

void Stripe::Walk(bool repair, SweepResult* r) {
  std::unordered_set<uint64_t> visited;
  std::unordered_set<uint64_t> moved;
  std::unordered_set<std::string_view> keys;
  auto error = [&](const std::string& what) {
    r->errors++;
    r->messages.push_back(Where() + what);
  };
  for (int ti = 0; ti < 2; ti++) {
    Table t = GetTable(ti);
    if (t.desc == 0) continue;
    r->live.push_back(TableOffset(t.desc));
    r->used += TableCharge(t.desc, c_.g.page_size);
    for (uint64_t b = 0; b < t.size; b++) {
      std::atomic<uint64_t>* link = &t.slots[b];
      for (;;) {
        uint64_t e = LinkOffset(link->load(kRelaxed));
        if (e == 0) break;
        EntryHeader* entry = c_.Entry(e);
        if (moved.count(e) != 0) {  // salvaged below into a bucket not yet walked
          link = &entry->link;
          continue;
        }
        std::string where = "table " + std::to_string(ti) + " bucket " + std::to_string(b) +
                            ": entry at " + std::to_string(e) + " ";
        std::string why;
        if (visited.count(e) != 0) {
          why = "reached twice (a cycle or a shared tail)";
        } else {
          ValidEntryChunk(e, &why);
        }
        if (!why.empty()) {
          // Nothing that was ever published can look like this: a bug or a
          // stray write. The chain cannot be followed past it.
          error(where + why + (repair ? "; chain cut here" : ""));
          if (repair) Publish(link, 0);
          break;
        }
        visited.insert(e);
        std::string_view key(entry->key(), entry->key_len);
        uint64_t hash = c_.Hash(key);
        bool other_stripe = c_.StripeOfHash(hash) != index_;
        bool misplaced = other_stripe || (hash & t.mask) != b;
        bool duplicate = !misplaced && !keys.insert(key).second;
        if (duplicate || other_stripe) {
          // Invisible to lookups (a shadowed copy, or a key of another
          // stripe): dropping it loses nothing that could be read.
          error(where +
                (duplicate ? "duplicates a key found earlier" : "belongs to another stripe") +
                (repair ? "; dropped" : ""));
          if (repair) {
            Publish(link, LinkOffset(entry->link.load(kRelaxed)));
            continue;
          }
          link = &entry->link;
          continue;
        }
        if (misplaced) {
          error(where + "is in the wrong bucket" + (repair ? "; moved" : ""));
          if (repair) {
            if (!keys.insert(key).second) {  // a copy is already counted
              Publish(link, LinkOffset(entry->link.load(kRelaxed)));
              continue;
            }
            Table target = GetTable(rehashing() ? 1 : 0);
            MoveEntry(link, e, target.desc, static_cast<uint32_t>(hash & target.mask));
            moved.insert(e);
            r->live.push_back(e);
            r->keys++;
            r->expires += entry->expire_ms.load(kRelaxed) != 0;
            r->used += EntryCharge(e);
            continue;  // `link` now names the entry that followed it
          }
        }
        r->live.push_back(e);
        r->keys++;
        r->expires += entry->expire_ms.load(kRelaxed) != 0;
        r->used += EntryCharge(e);
        link = &entry->link;
      }
    }
  }
  std::sort(r->live.begin(), r->live.end());
}

void Stripe::ResolveIntent(std::string* summary) {
  MoveIntent& intent = h_->intent;
  if (intent.active.load(std::memory_order_acquire) == 0) return;
  uint64_t e = intent.entry;
  uint64_t to_desc = intent.to_table;
  std::string why;
  bool ok = ValidEntryChunk(e, &why);
  if (ok && (to_desc == 0 || (to_desc != h_->tables[0].load(kRelaxed) &&
                              to_desc != h_->tables[1].load(kRelaxed)))) {
    ok = false;
    why = "its destination table is not the stripe's";
  }
  if (ok && (intent.to_bucket >= (uint64_t{1} << TableLog2(to_desc)) || intent.from_slot % 8 != 0 ||
             intent.from_slot >= c_.g.total_bytes)) {
    ok = false;
    why = "the record is out of bounds";
  }
  if (!ok) {
    c_.header->validation_errors.fetch_add(1, kRelaxed);
    *summary += "; move intent for entry " + std::to_string(e) + " ignored: " + why;
    intent.active.store(0, kRelease);
    return;
  }
  auto* from = c_.At<std::atomic<uint64_t>>(intent.from_slot);
  auto* to = &c_.At<std::atomic<uint64_t>>(TableOffset(to_desc))[intent.to_bucket];
  if (LinkOffset(from->load(kRelaxed)) == e) {
    *summary += "; entry move had not started";
  } else {
    bool there = false;
    std::atomic<uint64_t>* link = to;
    std::string ignored;
    for (int steps = 0; steps < (1 << 20); steps++) {
      uint64_t x = LinkOffset(link->load(kRelaxed));
      if (x == 0 || !ValidEntryChunk(x, &ignored)) break;
      if (x == e) {
        there = true;
        break;
      }
      link = &c_.Entry(x)->link;
    }
    if (there) {
      *summary += "; entry move had finished";
    } else {
      EntryHeader* entry = c_.Entry(e);
      entry->link.store(WithOffset(entry->link.load(kRelaxed), LinkOffset(to->load(kRelaxed))),
                        kRelease);
      Publish(to, e);
      *summary += "; entry move finished";
    }
  }
  intent.active.store(0, kRelease);
}

// As a home: every stripe still pending on a Txn of this home gets the
// decision written into its own record (committed iff this home's txn_commit
// names the Txn), so that the home may commit later Txns without a stripe
// repaired later mistaking one for its own. The CAS only ever turns a pending
// record into the one decision every process agrees on, so it needs no lock.
void Stripe::DecideTxnsOfHome(std::string* summary) {
  uint64_t committed = h_->txn_commit.load(std::memory_order_acquire);
  int decided = 0;
  for (uint32_t s = 0; s < c_.g.stripes; s++) {
    std::atomic<uint64_t>& state = c_.stripes[s].txn_state;
    uint64_t w = state.load(std::memory_order_acquire);
    if (w == 0 || TxnStateOf(w) != kTxnPending || TxnStateHome(w) != index_) continue;
    TxnState d = TxnStateSeq(w) == committed ? kTxnCommitted : kTxnAborted;
    if (state.compare_exchange_strong(w, WithTxnState(w, d), std::memory_order_acq_rel)) decided++;
  }
  if (decided != 0) *summary += "; decided " + std::to_string(decided) + " txn participants";
}

// This stripe's part of a multi-key Txn whose holder died: roll it forward if
// the Txn committed; otherwise its new entries are unreachable and the sweep
// that follows frees them.
void Stripe::ResolveTxn(std::string* summary) {
  std::atomic<uint64_t>& state = h_->txn_state;
  uint64_t w = state.load(std::memory_order_acquire);
  if (w == 0) return;
  if (TxnStateOf(w) == kTxnPending) {
    uint32_t home = TxnStateHome(w);
    TxnState d = kTxnAborted;
    if (home < c_.g.stripes &&
        c_.stripes[home].txn_commit.load(std::memory_order_acquire) == TxnStateSeq(w)) {
      d = kTxnCommitted;
    }
    // Fails only if the home's repair decided first: then take its decision.
    if (!state.compare_exchange_strong(w, WithTxnState(w, d), std::memory_order_acq_rel)) {
      w = state.load(std::memory_order_acquire);
    } else {
      w = WithTxnState(w, d);
    }
  }
  if (TxnStateOf(w) == kTxnCommitted) {
    uint64_t log = h_->txn_log;
    std::string why;
    uint32_t count = 0;
    uint64_t room = 0;
    const TxnLogOp* ops = nullptr;
    if (log & 1) {
      count = static_cast<uint32_t>(log >> 1);
      ops = h_->txn_ops;
      if (count > kTxnInlineOps) why = "inline redo log count out of range";
    } else if (!c_.InPool(log)) {
      why = "redo log offset out of the pool";
    } else {
      uint32_t page = c_.PageOf(log);
      uint32_t head = c_.meta[page].head;
      const PageMeta& m = c_.meta[head];
      uint64_t rel = log - c_.PageOffset(head);
      if (c_.owner[page].load(kRelaxed) != index_ + 1 || head > page ||
          c_.owner[head].load(kRelaxed) != index_ + 1) {
        why = "redo log in a page the stripe does not own";
      } else if (m.kind == kPageSlab && m.size_class < kNumClasses &&
                 rel % kSizeClasses[m.size_class] == 0) {
        room = kSizeClasses[m.size_class];
      } else if (m.kind == kPageLarge && rel == 0) {
        room = uint64_t{m.run_pages} << c_.page_shift;
      } else {
        why = "redo log not at a chunk boundary";
      }
      if (why.empty()) {
        const auto* lh = c_.At<TxnLogHeader>(log);
        if (lh->magic != kTxnLogMagic ||
            sizeof(TxnLogHeader) + uint64_t{lh->count} * sizeof(TxnLogOp) > room) {
          why = "redo log is malformed";
        } else {
          count = lh->count;
          ops = c_.At<TxnLogOp>(log + sizeof(TxnLogHeader));
        }
      }
    }
    if (!why.empty()) {
      c_.header->validation_errors.fetch_add(1, kRelaxed);
      *summary += "; committed txn not rolled forward: " + why;
    } else {
      uint32_t bad = 0;
      for (uint32_t i = 0; i < count; i++) {
        if (!ApplyTxnOp(ops[i].entry_kind, ops[i].expire_ms, /*repair=*/true, nullptr)) bad++;
        if (i == 0) MaybeCrash(CrashPoint::kRepairTxn);
      }
      if (bad != 0) {
        c_.header->validation_errors.fetch_add(bad, kRelaxed);
        *summary += "; " + std::to_string(bad) + " invalid txn ops skipped";
      }
      *summary += "; committed txn rolled forward (" + std::to_string(count) + " writes)";
    }
  } else {
    *summary += "; uncommitted txn discarded";
  }
  state.store(0, std::memory_order_release);
}

void Stripe::RebuildSlabs(const SweepResult& r, std::string* summary) {
  for (uint32_t& head : h_->nonfull) head = 0;
  std::vector<uint32_t> release;
  std::vector<uint8_t> in_use;
  uint64_t free_chunks = 0;
  const uint64_t pages = c_.g.pages;
  for (uint64_t p = 0; p < pages; p++) {
    if (c_.owner[p].load(kRelaxed) != index_ + 1) continue;
    PageMeta& m = c_.meta[p];
    if (m.head != p) continue;
    uint32_t head = static_cast<uint32_t>(p);
    uint64_t start = c_.PageOffset(head);
    if (m.run_pages == 0 || p + m.run_pages > pages) {
      // Only a stray write can do this (the pool's intent covers every run
      // change): leave the pages alone rather than free a made-up range.
      *summary += "; run at page " + std::to_string(p) + " has a bad length, left alone";
      c_.header->validation_errors.fetch_add(1, kRelaxed);
      continue;
    }
    if (m.kind == kPageLarge || m.kind == kPageTable) {
      if (!std::binary_search(r.live.begin(), r.live.end(), start)) release.push_back(head);
      continue;
    }
    if (m.kind != kPageSlab || m.size_class >= kNumClasses || m.run_pages == 0) {
      release.push_back(head);  // never formatted (a death right after the pool gave it)
      continue;
    }
    uint32_t size = kSizeClasses[m.size_class];
    uint32_t capacity = static_cast<uint32_t>((uint64_t{m.run_pages} << c_.page_shift) / size);
    uint64_t end = start + (uint64_t{m.run_pages} << c_.page_shift);
    in_use.assign(capacity, 0);
    uint32_t live = 0;
    for (auto it = std::lower_bound(r.live.begin(), r.live.end(), start);
         it != r.live.end() && *it < end; ++it) {
      in_use[(*it - start) / size] = 1;
      live++;
    }
    uint32_t next = 0;
    for (uint32_t i = capacity; i-- > 0;) {
      if (in_use[i]) continue;
      memcpy(c_.base + start + uint64_t{i} * size, &next, sizeof(next));
      next = i + 1;
    }
    m.free_slot = next;
    m.live = live;
    m.prev = m.next = 0;
    free_chunks += capacity - live;
    if (live == 0) {
      release.push_back(head);
    } else if (live < capacity) {
      PushNonfull(m.size_class, head);
    }
  }
  if (!release.empty()) {
    c_.pool->Lock();
    for (uint32_t head : release) c_.pool->FreeRun(head);
    c_.pool->Unlock();
  }
  *summary += "; " + std::to_string(release.size()) + " runs returned to the pool, " +
              std::to_string(free_chunks) + " free chunks relisted";
}

void Stripe::Repair(std::string* summary) {
  *summary = Where() + "lock holder died; repaired";
  // A death inside the pool's lock may have left pages half given to this
  // stripe: taking the pool's lock finishes that first.
  c_.pool->Lock();
  c_.pool->Unlock();

  uint64_t d0 = h_->tables[0].load(kRelaxed), d1 = h_->tables[1].load(kRelaxed);
  if (d0 == 0 && d1 != 0) {
    h_->tables[0].store(d1, kRelease);
    h_->tables[1].store(0, kRelease);
  } else if (d0 == d1 && d1 != 0) {
    h_->tables[1].store(0, kRelease);  // died finishing a rehash
    *summary += "; rehash finished";
  }
  for (int i = 0; i < 2; i++) {
    uint64_t desc = h_->tables[i].load(kRelaxed);
    std::string why;
    if (desc != 0 && !ValidTableDesc(desc, &why)) {
      c_.header->validation_errors.fetch_add(1, kRelaxed);
      *summary += "; table " + std::to_string(i) + " dropped: " + why;
      h_->tables[i].store(0, kRelease);
    }
  }
  if (h_->tables[0].load(kRelaxed) == 0 && h_->tables[1].load(kRelaxed) != 0) {
    h_->tables[0].store(h_->tables[1].load(kRelaxed), kRelease);
    h_->tables[1].store(0, kRelease);
  }
  if (!rehashing() || h_->rehash_index.load(kRelaxed) > GetTable(0).size) {
    h_->rehash_index.store(0, kRelaxed);
  }
  ResolveIntent(summary);
  DecideTxnsOfHome(summary);
  if (h_->txn_state.load(std::memory_order_acquire) != 0) {
    // Rolling forward looks keys up: validate the chains first (only a stray
    // write can have damaged them), then walk again below for the sweep.
    SweepResult pre;
    Walk(/*repair=*/true, &pre);
    for (const std::string& m : pre.messages) *summary += "; " + m;
    if (pre.errors != 0) c_.header->validation_errors.fetch_add(pre.errors, kRelaxed);
    ResolveTxn(summary);
  }
  MaybeCrash(CrashPoint::kRepairStripe);

  SweepResult r;
  Walk(/*repair=*/true, &r);
  for (const std::string& m : r.messages) *summary += "; " + m;
  if (r.errors != 0) c_.header->validation_errors.fetch_add(r.errors, kRelaxed);
  RebuildSlabs(r, summary);

  h_->keys.store(r.keys, kRelaxed);
  h_->expires.store(r.expires, kRelaxed);
  int64_t delta = static_cast<int64_t>(r.used) - static_cast<int64_t>(h_->used.load(kRelaxed));
  h_->used.store(r.used, kRelaxed);
  // The global counter may or may not have seen the dead holder's last
  // change: adjust it now (with what this stripe had not passed on), make
  // it exact at the next ResyncCounters.
  c_.header->used_bytes.fetch_add(delta + h_->unflushed.load(kRelaxed), kRelaxed);
  h_->unflushed.store(0, kRelaxed);
  c_.header->resync_needed.store(1, kRelaxed);
  *summary += "; " + std::to_string(r.keys) + " keys";
}

void Stripe::CheckSlabs(const SweepResult& r, std::vector<std::string>* errors) {
  auto error = [&](const std::string& what) { errors->push_back(Where() + what); };
  std::vector<std::vector<uint32_t>> expected(kNumClasses);
  std::vector<uint8_t> in_use, listed;
  const uint64_t pages = c_.g.pages;
  for (uint64_t p = 0; p < pages; p++) {
    if (c_.owner[p].load(kRelaxed) != index_ + 1) continue;
    const PageMeta& m = c_.meta[p];
    if (m.head != p) continue;
    uint32_t head = static_cast<uint32_t>(p);
    std::string run = "run at page " + std::to_string(head) + " ";
    uint64_t start = c_.PageOffset(head);
    if (m.run_pages == 0 || p + m.run_pages > pages) {
      error(run + "has a bad length " + std::to_string(m.run_pages));
      continue;
    }
    if (m.kind == kPageLarge || m.kind == kPageTable) {
      if (!std::binary_search(r.live.begin(), r.live.end(), start)) {
        error(run + "is referenced by nothing (leak)");
      }
      continue;
    }
    if (m.kind != kPageSlab || m.size_class >= kNumClasses) {
      error(run + "has kind " + std::to_string(m.kind) + " (never formatted: leak)");
      continue;
    }
    uint32_t size = kSizeClasses[m.size_class];
    uint32_t capacity = static_cast<uint32_t>((uint64_t{m.run_pages} << c_.page_shift) / size);
    uint64_t end = start + (uint64_t{m.run_pages} << c_.page_shift);
    in_use.assign(capacity, 0);
    uint32_t live = 0;
    for (auto it = std::lower_bound(r.live.begin(), r.live.end(), start);
         it != r.live.end() && *it < end; ++it) {
      in_use[(*it - start) / size] = 1;
      live++;
    }
    if (m.live != live) {
      error(run + "counts " + std::to_string(m.live) + " live chunks, chains reach " +
            std::to_string(live));
    }
    if (live == 0) error(run + "is an empty slab kept out of the pool (leak)");
    listed.assign(capacity, 0);
    uint32_t free = 0;
    for (uint32_t s = m.free_slot; s != 0;) {
      if (s - 1 >= capacity || listed[s - 1] || in_use[s - 1]) {
        error(run + "free list is corrupt at slot " + std::to_string(s - 1));
        break;
      }
      listed[s - 1] = 1;
      free++;
      memcpy(&s, c_.base + start + uint64_t{s - 1} * size, sizeof(s));
    }
    if (free + live != capacity) {
      error(run + "has " + std::to_string(capacity - live - free) +
            " chunks neither live nor free (leak)");
    }
    if (live < capacity && live > 0) expected[m.size_class].push_back(head);
  }
  for (int cls = 0; cls < kNumClasses; cls++) {
    std::vector<uint32_t> found;
    uint32_t prev = 0;
    for (uint32_t s = h_->nonfull[cls]; s != 0; prev = s, s = c_.meta[s - 1].next) {
      if (found.size() > pages || s - 1 >= pages) {
        error("non-full list of class " + std::to_string(cls) + " is cyclic or out of bounds");
        break;
      }
      const PageMeta& m = c_.meta[s - 1];
      if (m.prev != prev || m.kind != kPageSlab || m.size_class != cls ||
          c_.owner[s - 1].load(kRelaxed) != index_ + 1) {
        error("non-full list of class " + std::to_string(cls) + " has a bad entry " +
              std::to_string(s - 1));
        break;
      }
      found.push_back(s - 1);
    }
    std::sort(found.begin(), found.end());
    std::sort(expected[cls].begin(), expected[cls].end());
    if (found != expected[cls]) {
      error("non-full list of class " + std::to_string(cls) + " lists " +
            std::to_string(found.size()) + " slabs, " + std::to_string(expected[cls].size()) +
            " have free chunks");
    }
  }
}

void Stripe::Check(std::vector<std::string>* errors) {
  auto error = [&](const std::string& what) { errors->push_back(Where() + what); };
  uint64_t d0 = h_->tables[0].load(kRelaxed), d1 = h_->tables[1].load(kRelaxed);
  if ((d0 == 0 && d1 != 0) || (d0 != 0 && d0 == d1)) error("tables not normalized");
  for (uint64_t d : {d0, d1}) {
    std::string why;
    if (d != 0 && !ValidTableDesc(d, &why)) error(why);
  }
  if (h_->intent.active.load(kRelaxed) != 0) error("move intent left active");
  if (h_->txn_state.load(kRelaxed) != 0) error("multi-key txn record left active");
  SweepResult r;
  Walk(/*repair=*/false, &r);
  errors->insert(errors->end(), r.messages.begin(), r.messages.end());
  CheckSlabs(r, errors);
  if (r.keys != h_->keys.load(kRelaxed) || r.expires != h_->expires.load(kRelaxed) ||
      r.used != h_->used.load(kRelaxed)) {
    error("counters say " + std::to_string(h_->keys.load(kRelaxed)) + " keys, " +
          std::to_string(h_->expires.load(kRelaxed)) + " with expiry, " +
          std::to_string(h_->used.load(kRelaxed)) + " bytes; chains have " +
          std::to_string(r.keys) + ", " + std::to_string(r.expires) + ", " +
          std::to_string(r.used));
  }
}

}  // namespace redhub::shm
