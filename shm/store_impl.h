// Store::Impl, the process-local half of a Store (its mapping, the stripe
// locks it holds, the batch's kept stripe, queued repair reports), and the
// small helpers every file of the store shares. Internal to shm/: the files
// that implement Store and Store::Txn include it, nothing else does.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core.h"
#include "page_pool.h"
#include "robust_mutex.h"
#include "segment.h"
#include "store.h"
#include "stripe.h"
#include "stripe_internal.h"

namespace redhub::shm {

inline uint32_t LruClock(int64_t now_ms) {
  return static_cast<uint32_t>(now_ms / 1000) & kLruClockMax;
}

// Per-thread sampling randomness, reseeded in a forked child so that workers
// do not all pick the same victims.
inline uint64_t& Rng() {
  thread_local uint64_t state = 0;
  thread_local pid_t owner = 0;
  if (owner != getpid()) {
    owner = getpid();
    state = (static_cast<uint64_t>(owner) << 32) ^ static_cast<uint64_t>(Store::NowMs()) ^
            reinterpret_cast<uintptr_t>(&state);
    state |= 1;
  }
  return state;
}

inline bool Expired(int64_t expire_ms, int64_t now_ms) {
  return expire_ms != 0 && expire_ms <= now_ms;
}

// Stripes this thread holds, of any Store: repair reports wait until it is 0
// (Store::Impl::UnlockStripe).
inline thread_local uint32_t t_stripes_held = 0;

struct Store::Impl {
  explicit Impl(std::unique_ptr<Segment> s) : segment(std::move(s)), core(*segment), pool(&core) {
    core.pool = &pool;
  }

  // Lock order: ascending stripe index; see Store::LockKeys.
  void LockStripe(uint32_t s) {
    // Nothing may be held while blocking on a stripe (lock order), so a
    // stripe kept from the last Txn of a batch is let go first.
    ReleaseKept();
    // No spinning before sleeping on a busy stripe: with two processes
    // writing one hot key, a spin-then-trylock loop halved their throughput
    // (the stripe's lines bounced between the cores on every write), where
    // sleeping lets one process run several writes on a warm cache.
    pthread_mutex_t* mu = &core.stripes[s].mu;
    LockResult r = TryLockRobust(mu, "stripe", s);
    if (r == LockResult::kBusy) {
      std::atomic<uint32_t>& waiters = core.stripes[s].waiters;
      waiters.fetch_add(1, kRelaxed);
      r = LockRobustWaiting(mu, "stripe", s);
      // Never below zero: EndBatch may have reset a count left too high by
      // a waiter that was killed.
      uint32_t n = waiters.load(kRelaxed);
      while (n != 0 && !waiters.compare_exchange_weak(n, n - 1, kRelaxed)) {
      }
    }
    BeginWrite(s);
    t_stripes_held++;
    if (r == LockResult::kOwnerDied) RepairStripe(s);
  }
  // Never blocks, so it may be used while holding other stripes in any order.
  bool TryLockStripe(uint32_t s) {
    LockResult r = TryLockRobust(&core.stripes[s].mu, "stripe", s);
    if (r == LockResult::kBusy) return false;
    BeginWrite(s);
    t_stripes_held++;
    if (r == LockResult::kOwnerDied) RepairStripe(s);
    return true;
  }
  // The stripe a batch keeps locked between Txns (Store::BeginBatch).
  static constexpr uint32_t kNoStripe = 0xFFFFFFFF;
  uint32_t kept = kNoStripe;
  bool kept_in_use = false;  // a live Txn is using it

  // Returns the version the stripe was left at (0: nothing was kept).
  uint64_t ReleaseKept() {
    if (kept == kNoStripe) return 0;
    if (kept_in_use) {
      Fatal("stripe %u: a lock taken while a Txn of this process holds one (lock order)", kept);
    }
    uint32_t s = kept;
    kept = kNoStripe;
    return UnlockStripe(s);
  }

  // Returns the version it left (even).
  uint64_t UnlockStripe(uint32_t s) {
    std::atomic<uint64_t>& v = core.stripes[s].version;
    const uint64_t unlocked = v.load(kRelaxed) + 1;
    v.store(unlocked, std::memory_order_release);  // even: no writer
    UnlockRobust(&core.stripes[s].mu);
    // Repairs are reported once this thread holds no stripe (SetEventSink).
    if (--t_stripes_held == 0 && reports_pending.load(kRelaxed)) DeliverReports();
    return unlocked;
  }
  // The seqlock's write side (StripeHeader::version), under the lock: a new
  // odd value, also when a dead holder left it odd. The fence keeps the
  // stripe's writes after it for a reader on another core.
  void BeginWrite(uint32_t s) {
    std::atomic<uint64_t>& v = core.stripes[s].version;
    v.store((v.load(kRelaxed) + 1) | 1, kRelaxed);
    std::atomic_thread_fence(std::memory_order_release);
  }

  // After the holder of stripe `s` died (this process holds it now).
  void RepairStripe(uint32_t s);

  // `resize` false in a multi-key Txn: a stripe with staged Puts must keep
  // its table until they are published (publishing never allocates).
  void DeleteExpired(Stripe& stripe, const Slot& slot, bool resize = true) {
    stripe.Unlink(slot);
    stripe.FreeChunk(slot.entry);
    core.header->expired.fetch_add(1, kRelaxed);
    if (resize) stripe.MaybeResize();
  }

  // Holds one stripe for a whole-store operation. RAII so that a callback
  // that throws (a ScanFn, an allocation) can never leave a stripe locked by
  // a live process: that, unlike a death, nothing would ever repair.
  class Guard {
   public:
    Guard(Impl& impl, uint32_t s) : impl_(impl), s_(s) { impl_.LockStripe(s); }
    ~Guard() { impl_.UnlockStripe(s_); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    Impl& impl_;
    uint32_t s_;
  };

  // eviction.cc: frees what the maxmemory estimate says a write of
  // `charge` bytes into `own` lacks, by the policy; kOom if it cannot.
  Status MakeRoom(Txn& txn, Stripe& own, uint64_t charge);
  // Evicts one key; *freed: the bytes its entry was charged.
  bool EvictOne(Txn& txn, Stripe& own, Policy policy, uint64_t* freed);

  // txn_ops.cc: the first half of every Put (single-key and staged): a
  // fresh chunk of `bytes` in `stripe` holding a complete entry (lengths,
  // key, then the value written by fill), linked nowhere. 0 if there is no
  // chunk. If fill throws, the chunk and its charge are given back and the
  // exception goes on. The caller sets expire_ms and link, which depend on
  // the entry the new one replaces, and publishes it (or stages it).
  uint64_t WriteUnpublished(Stripe& stripe, std::string_view key, size_t value_len, uint64_t bytes,
                            void (*fill)(void*, char*), void* ctx);

  // Repair reports (store.cc). Core::sink queues them here: it is called
  // inside a stripe's or the pool's lock, where writing a log line (which
  // may block on a full pipe) would stall every process that needs that
  // lock. They reach `event_sink` from UnlockStripe, once this thread
  // holds no stripe.
  void QueueReport(std::string_view line);
  void DeliverReports();
  std::function<void(std::string_view)> event_sink;
  std::mutex reports_mu;  // the store may be used from several threads
  std::vector<std::string> reports;
  std::atomic<bool> reports_pending{false};

  std::unique_ptr<Segment> segment;
  Core core;
  PagePool pool;
};

}  // namespace redhub::shm
