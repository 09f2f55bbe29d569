// Validation of a stripe, shared by Repair and Audit: the checks of a table
// descriptor and an entry's chunk (Valid*), the bounded walk of every chain
// (Walk, which in a repair also cuts or fixes what it cannot follow), and
// the read-only audit of slabs and counters (CheckSlabs, Check) that a live
// lock holder must never fail.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include "stripe.h"
#include "stripe_internal.h"

namespace redhub::shm {

uint32_t Stripe::OwnedRunOf(uint64_t offset, const char* what, std::string* why) const {
  const uint32_t page = c_.PageOf(offset);
  const uint32_t head = c_.meta[page].head;
  if (c_.owner[page].load(kRelaxed) != index_ + 1 || head > page ||
      c_.owner[head].load(kRelaxed) != index_ + 1) {
    *why = std::string(what) + "in a page the stripe does not own";
    return kNoPage;
  }
  return head;
}

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
  const uint32_t head = OwnedRunOf(offset, "table ", why);
  if (head == kNoPage) return false;
  const uint32_t page = c_.PageOf(offset);
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
  const uint32_t head = OwnedRunOf(offset, "", why);
  if (head == kNoPage) return false;
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
    uint32_t live = MarkLiveChunks(r.live, start, end, size, capacity, &in_use);
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
