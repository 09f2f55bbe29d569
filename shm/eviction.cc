// Making room under maxmemory: MakeRoom decides how much must go for a
// write, EvictOne picks and removes one victim from ~5 samples of the
// writer's stripe and ~5 of another (Stripe::Sample scores them by policy).
// An eviction is one unlink (crash point `evict`), like an Erase.
#include <algorithm>
#include <cstdint>

#include "crash_point.h"
#include "store_impl.h"

namespace redhub::shm {

Status Store::Impl::MakeRoom(Txn& txn, Stripe& own, uint64_t charge) {
  const SegmentHeader* h = core.header;
  uint64_t max = h->maxmemory.load(kRelaxed);
  if (max == 0) return Status::kOk;
  auto policy = static_cast<Policy>(h->policy.load(kRelaxed));
  // used_bytes lags the stripes by what they have not passed on (Charge):
  // this stripe's is known exactly (held), every other's is below the limit.
  const int64_t others = (static_cast<int64_t>(core.g.stripes) - 1) *
                         std::max<int64_t>(0, Stripe::UnflushedLimit(core) - 1);
  auto used = [&] {
    return static_cast<int64_t>(h->used_bytes.load(kRelaxed)) +
           own.header()->unflushed.load(kRelaxed) + others;
  };
  // Evict what the estimate says is missing, counted in the victims' own
  // sizes: used() moves only when a stripe passes its share on, so checking
  // it again after each eviction would evict far more than needed (every
  // key with a TTL, under volatile-*). The estimate is never below the real
  // use, so freeing that much is enough.
  const int64_t missing = used() + static_cast<int64_t>(charge) - static_cast<int64_t>(max);
  int64_t freed = 0;
  while (freed < missing) {
    uint64_t bytes = 0;
    if (policy == Policy::kNoEviction || !EvictOne(txn, own, policy, &bytes)) return Status::kOom;
    freed += static_cast<int64_t>(bytes);
  }
  return Status::kOk;
}

// Approximate, like Redis: the best of ~5 samples from the writer's stripe
// and ~5 from one other stripe (try-locked, so the lock order does not
// matter). An entry of a stripe the Txn holds is unlinked now but freed when
// the Txn ends, so views the caller already has stay valid.
bool Store::Impl::EvictOne(Txn& txn, Stripe& own, Policy policy, uint64_t* freed) {
  constexpr int kSamples = 5;
  uint64_t& rng = Rng();
  Candidate best;
  own.Sample(policy, kSamples, txn.lru_, rng, &best);
  uint32_t best_stripe = own.index();
  uint32_t other = kNoPage;
  const uint32_t stripes = core.g.stripes;
  bool volatile_only = policy == Policy::kVolatileLru || policy == Policy::kVolatileTtl;
  auto has_candidates = [&](uint32_t s) {
    return (volatile_only ? core.stripes[s].expires : core.stripes[s].keys).load(kRelaxed) != 0;
  };
  // One random other stripe when the writer's has candidates; else random
  // ones, then every stripe in turn, until one has.
  const uint32_t start = static_cast<uint32_t>(NextRandom(rng) % stripes);
  const uint32_t tries = best.found ? 1 : 16 + stripes;
  for (uint32_t i = 0; i < tries && stripes > 1; i++) {
    uint32_t s = i < 16 || best.found ? static_cast<uint32_t>(NextRandom(rng) % stripes)
                                      : (start + i) % stripes;
    if (txn.Holds(s) || !has_candidates(s) || !TryLockStripe(s)) continue;
    Candidate c;
    if (Stripe(core, s).Sample(policy, kSamples, txn.lru_, rng, &c) &&
        (!best.found || c.score > best.score)) {
      best = c;
      best_stripe = s;
      other = s;
      break;
    }
    UnlockStripe(s);
  }
  if (!best.found) return false;
  Stripe victim(core, best_stripe);
  *freed = victim.EntryCharge(best.slot.entry);
  victim.Unlink(best.slot);
  MaybeCrash(CrashPoint::kEvict);
  core.header->evicted.fetch_add(1, kRelaxed);
  if (txn.Holds(best_stripe)) {
    txn.deferred_.push_back(best.slot.entry);
  } else {
    victim.FreeChunk(best.slot.entry);
    victim.MaybeResize();
  }
  if (other != kNoPage) UnlockStripe(other);
  return true;
}

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

}  // namespace redhub::shm
