// A stripe's hash tables: the bucket arrays (GetTable, AllocTable), finding
// and linking entries (Lookup, LookupUnlocked, InsertSlot, Unlink), and the
// incremental rehash (MoveEntry, RehashStep, MaybeResize), plus Clear and
// RandomEntry, which walk the tables. Every change to a chain is one aligned
// store; the one move that takes three (MoveEntry) writes an intent first,
// which repair.cc finishes.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>

#include "crash_point.h"
#include "page_pool.h"
#include "stripe.h"
#include "stripe_internal.h"

namespace redhub::shm {

namespace {

uint32_t CeilLog2(uint64_t x) { return x <= 1 ? 0 : std::bit_width(x - 1); }

}  // namespace

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
  uint32_t head = TakeRun(pages);
  if (head == kNoPage) return 0;
  uint64_t offset = c_.PageOffset(head);
  memset(c_.base + offset, 0, bytes);
  SetKind(c_.meta[head], kPageTable);
  Charge(static_cast<int64_t>(pages << c_.page_shift));
  return offset;
}

void Stripe::FreeTable(uint64_t desc) {
  ReturnChunk(TableOffset(desc), TableCharge(desc, c_.g.page_size));
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

void Stripe::AddCounts(int64_t keys, int64_t expires) {
  Add(h_->keys, keys);
  Add(h_->expires, expires);
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
        ReturnChunk(e, EntryCharge(e));
        e = next;
      }
    }
    FreeTable(desc);
  }
  h_->keys.store(0, kRelaxed);
  h_->expires.store(0, kRelaxed);
  return removed;
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

}  // namespace redhub::shm
