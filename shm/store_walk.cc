// Whole-store operations, each a walk over the stripes one at a time: SCAN
// and KEYS (Scan, ScanStripe), FLUSHALL, RANDOMKEY, the expire cycle, and
// the store-wide upkeep the cycle does (RepairAbandoned, ResyncCounters),
// plus stats() and Audit. None may run while the thread holds a Txn.
#include <sched.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "progress.h"
#include "store_impl.h"

namespace redhub::shm {

// A stripe that may be skipped by a whole-store walk: no key, and no dead
// holder (an odd version with the lock free, or taken: a holder that died
// there may have left a write to roll forward or charges to give back, which
// only a locker's repair settles; a live holder only delays the walk).
static bool SkippableStripe(const StripeHeader& sh) {
  return sh.keys.load(std::memory_order_acquire) == 0 && (sh.version.load(kRelaxed) & 1) == 0;
}

// One ScanStep of a held stripe: fn for every key of the bucket(s) it
// visits that has not expired. Returns the next bucket cursor.
static uint32_t EmitScanStep(Core& core, Stripe& stripe, uint32_t v, int64_t now,
                             const Store::ScanFn& fn, size_t* emitted) {
  return stripe.ScanStep(v, [&](std::atomic<uint64_t>* link) {
    for (uint64_t e = LinkOffset(link->load(kRelaxed)); e != 0;) {
      EntryHeader* entry = core.Entry(e);
      int64_t expire = entry->expire_ms.load(kRelaxed);
      if (!Expired(expire, now)) {
        fn(std::string_view(entry->key(), entry->key_len),
           EntryView{std::string_view(entry->value(), entry->value_len), expire, 0});
        (*emitted)++;
      }
      e = LinkOffset(entry->link.load(kRelaxed));
    }
  });
}

// In a scope, the walks go through the scope's Txn, which must hold every
// stripe (LockAll): they would otherwise lock stripes while it holds some.
Store::Txn& Store::WholeScope() {
  if (!scope_->all_) Fatal("a whole-store operation in a scope that holds only some stripes");
  return *scope_;
}

uint64_t Store::Scan(uint64_t cursor, size_t count, const ScanFn& fn) {
  if (scope_ != nullptr) return WholeScope().ScanHeld(cursor, count, fn);
  Impl& im = *impl_;
  const uint32_t stripes = im.core.g.stripes;
  uint64_t s = cursor >> 32;
  uint32_t v = static_cast<uint32_t>(cursor);
  if (count == 0) count = 10;
  size_t emitted = 0;
  int64_t now = NowMs();
  while (s < stripes) {
    if (v == 0 && SkippableStripe(im.core.stripes[s])) {
      s++;
      continue;
    }
    ReportProgress();
    Impl::Guard guard(im, static_cast<uint32_t>(s));
    Stripe stripe(im.core, static_cast<uint32_t>(s));
    do {
      v = EmitScanStep(im.core, stripe, v, now, fn, &emitted);
    } while (v != 0 && emitted < count);
    if (v != 0) return s << 32 | v;
    s++;
    if (emitted >= count) return s < stripes ? s << 32 : 0;
  }
  return 0;
}

void Store::ScanStripe(uint32_t s, const ScanFn& fn) {
  if (scope_ != nullptr) {
    if (s < stripe_count()) WholeScope().ScanHeldStripe(s, fn);
    return;
  }
  Impl& im = *impl_;
  if (s >= im.core.g.stripes || SkippableStripe(im.core.stripes[s])) return;
  ReportProgress();
  Impl::Guard guard(im, s);
  Stripe stripe(im.core, s);
  const int64_t now = NowMs();
  size_t emitted = 0;
  uint32_t v = 0;
  do {
    v = EmitScanStep(im.core, stripe, v, now, fn, &emitted);
  } while (v != 0);
}

uint32_t Store::stripe_count() const { return impl_->core.g.stripes; }

void Store::Flush() {
  if (scope_ != nullptr) return WholeScope().EraseAll();
  Impl& im = *impl_;
  for (uint32_t s = 0; s < im.core.g.stripes; s++) {
    if (SkippableStripe(im.core.stripes[s]) && im.core.stripes[s].tables[0].load(kRelaxed) == 0) {
      continue;
    }
    ReportProgress();
    Impl::Guard guard(im, s);
    Stripe(im.core, s).Clear();
  }
}

uint64_t Store::KeyCount() {
  if (scope_ != nullptr) return WholeScope().KeyCount();
  const Core& c = impl_->core;
  uint64_t n = 0;
  for (uint32_t s = 0; s < c.g.stripes; s++) n += c.stripes[s].keys.load(kRelaxed);
  return n;
}

std::optional<std::string> Store::RandomKey() {
  if (scope_ != nullptr) return WholeScope().RandomKeyHeld();
  Impl& im = *impl_;
  uint64_t& rng = Rng();
  const uint32_t stripes = im.core.g.stripes;
  auto try_stripe = [&](uint32_t s) -> std::optional<std::string> {
    if (SkippableStripe(im.core.stripes[s])) return std::nullopt;
    Impl::Guard guard(im, s);
    Stripe stripe(im.core, s);
    int64_t now = NowMs();
    std::optional<std::string> key;
    Slot slot;
    for (int i = 0; i < 16 && !key && stripe.RandomEntry(rng, &slot); i++) {
      EntryHeader* e = im.core.Entry(slot.entry);
      if (Expired(e->expire_ms.load(kRelaxed), now)) {
        im.DeleteExpired(stripe, slot);
      } else {
        key.emplace(e->key(), e->key_len);
      }
    }
    return key;
  };
  for (int i = 0; i < 64; i++) {
    if (auto key = try_stripe(static_cast<uint32_t>(NextRandom(rng) % stripes))) return key;
  }
  uint32_t start = static_cast<uint32_t>(NextRandom(rng) % stripes);
  for (uint32_t i = 0; i < stripes; i++) {
    if (auto key = try_stripe((start + i) % stripes)) return key;
  }
  return std::nullopt;
}

// Like Redis's activeExpireCycle, but over stripes: a shared cursor walks the
// whole keyspace (stripe, reverse-binary bucket cursor), skipping stripes with
// no key that has an expire time, and try-locks so that it never waits.
size_t Store::ExpireCycle(int64_t now_ms, std::chrono::microseconds budget) {
  Impl& im = *impl_;
  auto deadline = std::chrono::steady_clock::now() + budget;
  SegmentHeader* h = im.core.header;
  // A stripe whose holder died is repaired here, not when a command next
  // locks it: until then its keys are invisible to DBSIZE and KEYS, and
  // whatever the dead holder had charged counts against maxmemory.
  RepairAbandoned();
  if (h->resync_needed.load(kRelaxed) != 0) ResyncCounters(std::chrono::milliseconds(5));
  const uint32_t stripes = im.core.g.stripes;
  uint64_t cursor = h->expire_cursor.load(kRelaxed);
  uint32_t s = static_cast<uint32_t>(cursor >> 32);
  uint32_t v = static_cast<uint32_t>(cursor);
  if (s >= stripes) s = v = 0;
  size_t removed = 0;
  for (uint32_t visited = 0; visited <= stripes; visited++) {
    StripeHeader& sh = im.core.stripes[s];
    bool work = sh.expires.load(kRelaxed) != 0 || sh.tables[1].load(kRelaxed) != 0;
    if (work && im.TryLockStripe(s)) {
      Stripe stripe(im.core, s);
      stripe.RehashStep(1000);  // like Redis's cron rehash: writes alone may be too few
      int steps = 0;
      while (sh.expires.load(kRelaxed) != 0) {
        v = stripe.ScanStep(v, [&](std::atomic<uint64_t>* link) {
          for (uint64_t e = LinkOffset(link->load(kRelaxed)); e != 0;
               e = LinkOffset(link->load(kRelaxed))) {
            EntryHeader* entry = im.core.Entry(e);
            if (Expired(entry->expire_ms.load(kRelaxed), now_ms)) {
              stripe.Unlink(Slot{link, e});
              stripe.FreeChunk(e);
              removed++;
              continue;
            }
            link = &entry->link;
          }
        });
        if (v == 0) break;
        if (++steps % 64 == 0 && std::chrono::steady_clock::now() >= deadline) break;
      }
      if (sh.expires.load(kRelaxed) == 0) v = 0;
      stripe.MaybeResize();
      im.UnlockStripe(s);
      if (v != 0) break;  // out of time in the middle of this stripe
    } else {
      v = 0;
    }
    if (++s == stripes) s = 0;
    if (visited % 16 == 15 && std::chrono::steady_clock::now() >= deadline) break;
  }
  h->expire_cursor.store(uint64_t{s} << 32 | v, kRelaxed);
  h->expired.fetch_add(removed, kRelaxed);
  return removed;
}

Stats Store::stats() const {
  const Core& c = impl_->core;
  const SegmentHeader* h = c.header;
  Stats st;
  for (uint32_t s = 0; s < c.g.stripes; s++) {
    st.keys += c.stripes[s].keys.load(kRelaxed);
    st.keys_with_expiry += c.stripes[s].expires.load(kRelaxed);
    st.used_bytes += c.stripes[s].used.load(kRelaxed);
  }
  st.maxmemory = h->maxmemory.load(kRelaxed);
  st.policy = static_cast<Policy>(h->policy.load(kRelaxed));
  st.repairs = h->repairs.load(kRelaxed);
  st.pool_repairs = h->pool_repairs.load(kRelaxed);
  st.expired = h->expired.load(kRelaxed);
  st.evicted = h->evicted.load(kRelaxed);
  st.validation_errors = h->validation_errors.load(kRelaxed);
  st.stripes = c.g.stripes;
  st.page_size = c.g.page_size;
  st.pages_total = c.g.pages;
  st.pages_free = impl_->pool.free_pages();
  st.data_bytes = c.g.pages * c.g.page_size;
  st.segment_bytes = c.g.total_bytes;
  st.created_ms = h->created_ms;
  return st;
}

bool Store::ResyncCounters(std::chrono::milliseconds wait) {
  Impl& im = *impl_;
  const uint32_t stripes = im.core.g.stripes;
  im.ReleaseKept();
  // All stripes at once, in ascending order, so that no Charge is half
  // done; but only ever try-locked. A blocking lock here let one hung
  // holder stop the master's loop (SIGHUP lowering maxmemory) or, in a
  // worker, spread the hang through the stripes this pass already held.
  // A stripe taken by a live process is retried until `wait` has passed,
  // then everything is let go and resync_needed stays set for a later try.
  const auto deadline = std::chrono::steady_clock::now() + wait;
  uint32_t held = 0;
  for (; held < stripes; held++) {
    while (!im.TryLockStripe(held)) {
      if (std::chrono::steady_clock::now() >= deadline) {
        for (uint32_t s = held; s-- > 0;) im.UnlockStripe(s);
        im.core.header->resync_needed.store(1, kRelaxed);
        return false;
      }
      ReportProgress();
      sched_yield();
    }
  }
  im.core.header->resync_needed.store(0, kRelaxed);
  int64_t used = 0;
  for (uint32_t s = 0; s < stripes; s++) {
    used += im.core.stripes[s].used.load(kRelaxed);
    im.core.stripes[s].unflushed.store(0, kRelaxed);
  }
  im.core.header->used_bytes.store(used, kRelaxed);
  for (uint32_t s = stripes; s-- > 0;) im.UnlockStripe(s);
  return true;
}

size_t Store::RepairAbandoned() {
  Impl& im = *impl_;
  size_t repaired = 0;
  for (uint32_t s = 0; s < im.core.g.stripes; s++) {
    // Even: nobody holds it. Odd: held by a live process (busy: skipped) or
    // by a dead one, whose next locker, this one, repairs it.
    if ((im.core.stripes[s].version.load(kRelaxed) & 1) == 0) continue;
    const uint64_t repairs = im.core.header->repairs.load(kRelaxed);
    if (!im.TryLockStripe(s)) continue;
    ReportProgress();  // a repair walks the stripe's pages: a big MSET's death, 1024 of them
    if (im.core.header->repairs.load(kRelaxed) != repairs) repaired++;
    im.UnlockStripe(s);
  }
  return repaired;
}

std::vector<std::string> Store::Audit() {
  Impl& im = *impl_;
  std::vector<std::string> errors;
  const uint32_t stripes = im.core.g.stripes;
  for (uint32_t s = 0; s < stripes; s++) {
    Impl::Guard guard(im, s);
    Stripe(im.core, s).Check(&errors);
  }
  im.pool.Lock();
  im.pool.Check(&errors);
  for (uint64_t p = 0; p < im.core.g.pages; p++) {
    uint32_t owner = im.core.owner[p].load(kRelaxed);
    if (owner > stripes) {
      errors.push_back("page " + std::to_string(p) + " has owner " + std::to_string(owner) +
                       ", not a stripe");
    }
  }
  im.pool.Unlock();
  if (!ResyncCounters(std::chrono::milliseconds(5000))) {
    errors.push_back("counters not resynced: a stripe stayed locked for 5 s");
  }
  return errors;
}

}  // namespace redhub::shm
