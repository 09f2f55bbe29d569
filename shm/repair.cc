// Stripe::Repair, run by the next locker after a lock holder died: finish or
// undo the dead holder's half-done step (tables, move intent, a multi-key
// Txn via txn_repair.cc), validate the chains (audit.cc's Walk), then
// rebuild everything derived (free lists, live counts, non-full lists,
// counters) from what the chains reach. Every step is idempotent, so a
// death during a repair hands it to the next locker.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "crash_point.h"
#include "page_pool.h"
#include "stripe.h"
#include "stripe_internal.h"

namespace redhub::shm {

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
    uint32_t live = MarkLiveChunks(r.live, start, end, size, capacity, &in_use);
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

}  // namespace redhub::shm
