// The key-value store shared by every worker process: one POSIX shared-memory
// segment, split into stripes, each guarded by a robust process-shared mutex.
// A process killed at any instant, even while holding stripe locks, leaves no
// deadlock, no torn entry, no leaked space, and loses no acknowledged write:
// the next process to take the lock repairs the stripe first (README.md says
// how, and exactly what a crash can and cannot lose).
//
// Typical use (a worker serving GET and SET):
//
//   std::string error;
//   auto store = shm::Store::Attach("/redhub-6379", &error);  // master: Create
//   {
//     shm::Store::Txn txn = store->Lock(key);
//     if (auto entry = txn.Find(key)) reply.Bulk(entry->value);  // read in place
//   }
//   {
//     shm::Store::Txn txn = store->Lock(key);
//     if (txn.Put(key, value, /*expire_ms=*/0) == shm::Status::kOom) reply.Error(...);
//   }
//
// Errors on the data path are Status values; only Create/Attach report
// strings. Nothing here throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "crash_point.h"
#include "policy.h"

namespace redhub::shm {

enum class Status {
  kOk,
  kOom,       // maxmemory reached and nothing may or can be evicted, or the segment is full
  kTooLarge,  // the entry can never fit (larger than the segment, or a length over 4 GB)
};

// Passed as expire_ms to Put: keep the replaced entry's expire time (SET KEEPTTL).
inline constexpr int64_t kKeepTtl = -1;

enum class IfExists { kFail, kReplace, kReuse };

struct StoreOptions {
  std::string name;         // POSIX shm name, e.g. "/redhub-6379"
  uint64_t data_bytes = 0;  // bytes of the page pool that holds entries and tables;
                            // 0 = maxmemory + 1/8 + 16 pages per stripe
  uint64_t maxmemory = 0;   // limit on used bytes (entries and tables); 0 = none
  Policy policy = Policy::kNoEviction;
  uint32_t stripes = 1024;  // 1..2000 (see README: the kernel's robust-list limit)
  uint32_t page_size = 4096;
  IfExists if_exists = IfExists::kFail;
  // What the creator's memory limit still allows, asked once an old segment
  // being replaced is gone (see Segment::Create); unset or nullopt: no limit
  // known.
  std::function<std::optional<uint64_t>()> memory_available;
};

struct Stats {
  uint64_t keys = 0;  // including expired keys not yet removed
  uint64_t keys_with_expiry = 0;
  uint64_t used_bytes = 0;  // chunks and runs in use: entries (rounded to their
                            // size class) and bucket arrays
  uint64_t maxmemory = 0;
  Policy policy = Policy::kNoEviction;
  uint64_t repairs = 0;  // stripes repaired after their lock holder died
  uint64_t pool_repairs = 0;
  uint64_t expired = 0;
  uint64_t evicted = 0;
  uint64_t validation_errors = 0;  // corrupt chain entries found by a repair (a bug, never a crash)
  uint32_t stripes = 0;
  uint32_t page_size = 0;
  uint64_t pages_total = 0;
  uint64_t pages_free = 0;
  uint64_t data_bytes = 0;
  uint64_t segment_bytes = 0;
  int64_t created_ms = 0;
};

// What Find returns. `value` points into shared memory: it stays valid until
// the Txn ends or this key is changed through the Txn (Put, Erase, or a Find
// that finds it expired). Evictions by later Puts in the same Txn do not
// invalidate it: their chunks are freed when the Txn ends.
struct EntryView {
  std::string_view value;
  int64_t expire_ms = 0;      // absolute unix ms, 0 = none
  uint32_t idle_seconds = 0;  // since the last access, before this one (OBJECT IDLETIME)
};

class Store {
 public:
  class Txn;
  using ScanFn = std::function<void(std::string_view key, const EntryView& entry)>;

  // Master: creates the segment, reserves all of its memory (posix_fallocate,
  // so a small /dev/shm fails here, not with SIGBUS later) and formats it.
  static std::unique_ptr<Store> Create(const StoreOptions& options, std::string* error);
  // Master: reopens a segment kept from a previous run, after checking its
  // layout; dead lock holders are repaired as usual when first locked.
  static std::unique_ptr<Store> OpenExisting(const std::string& name, std::string* error);
  // Worker: maps an existing segment, refusing one of another layout.
  static std::unique_ptr<Store> Attach(const std::string& name, std::string* error);
  static bool Remove(const std::string& name);

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Locks the stripe of `key`.
  Txn Lock(std::string_view key);

  // GET without taking a lock (a seqlock read, StripeHeader::version): calls
  // emit(const EntryView&) at most once, with a view into shared memory that
  // another process may be changing; emit must only copy from it (append a
  // reply, say). Returns kFound or kAbsent if the read was consistent: the
  // key had that value (or none) at one instant during the call. kRetry: the
  // stripe changed, or is locked, or the key is found expired (deleting it
  // needs the lock); whatever emit produced must be discarded and the read
  // done under Lock. Touches the LRU clock like Find. Never blocks, never
  // writes except that clock.
  // A hint for a key about to be read, so that a pipeline's lookups overlap
  // their cache misses: stage 0 fetches the key's bucket, stage 1 (called
  // later, when the bucket has arrived) the entry it names. Reads without
  // a lock and changes nothing; a stale or torn word only wastes the hint.
  void Prefetch(std::string_view key, int stage) const;

  enum class ReadResult { kFound, kAbsent, kRetry };
  template <typename Emit>
  ReadResult ReadUnlocked(std::string_view key, Emit&& emit) {
    return ReadUnlockedImpl(
        key,
        [](void* ctx, const EntryView& view) {
          (*static_cast<std::remove_reference_t<Emit>*>(ctx))(view);
        },
        &emit);
  }
  // Locks the stripes of all `keys`. Lock order rule: stripes are always taken
  // in ascending index order, and the page pool's lock only after stripes;
  // code that holds a stripe may take another only with a try-lock.
  // kAuto: writes are staged (all or nothing) when there are two keys or
  // more, applied at once with one; kStaged: always staged, so that a
  // transaction of several commands on one key is all or nothing too (EXEC,
  // scripts).
  enum class Writes { kAuto, kStaged };
  Txn LockKeys(std::span<const std::string_view> keys, Writes writes = Writes::kAuto);
  // Every stripe, in ascending order, with staged writes: a view of the
  // whole store that no other process can change or see half changed (EXEC
  // of KEYS, SCAN, DBSIZE, FLUSHALL, RANDOMKEY; a script with undeclared
  // keys). Every other process's lock of any stripe, and every unlocked read,
  // waits until it ends; it waits itself for every batch that keeps a stripe.
  Txn LockAll();

  // A scope: while one is set, this process's Lock and LockKeys return a Txn
  // that borrows `txn` (which must hold the stripes of every key they name:
  // a key outside them aborts the process, a programming error), and
  // ReadUnlocked always answers kRetry, so that the commands of an EXEC or a
  // script run unchanged through the one Txn the whole transaction holds and
  // see its staged writes. If `txn` came from LockAll, Scan, ScanStripe,
  // Flush, RandomKey and KeyCount work through it too (they see, and Flush
  // stages, the Txn's writes); from LockKeys they abort. Borrowed Txns end
  // without committing (the scope's Txn commits when it ends), and a
  // borrowed Abort takes back only what was staged through it. One scope at
  // a time; the Txn must outlive it. Process-local.
  class Scope {
   public:
    Scope(Store& store, Txn& txn);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Store& store_;
  };
  bool in_scope() const { return scope_ != nullptr; }
  // The scope's Txn came from LockAll (defined after Txn, below).
  bool scope_holds_all() const;

  // A batch: between BeginBatch and EndBatch, a Txn from Lock leaves its
  // stripe locked when it ends, and the next Lock of the same stripe takes
  // it over instead of unlocking and locking again (a pipeline of writes to
  // one hot key: one lock for the batch, and no lock line bouncing between
  // workers per write). Everything a Txn wrote is complete and published
  // when it ends, as before; only the lock is held on. Any other lock (Lock
  // of another stripe, LockKeys, Scan, Flush...) or an unlocked read of
  // another stripe lets go of the kept stripe first, so the lock order holds; taking one while a
  // Txn is alive aborts the process, as it would otherwise risk a deadlock. EndBatch lets go.
  // Meanwhile other processes see the stripe locked: their unlocked reads
  // of it take the lock and wait. A worker brackets each connection's
  // buffered requests with these. Process-local.
  void BeginBatch() { batch_ = true; }
  void EndBatch();
  bool in_batch() const { return batch_; }

  // The time Txns taken from now on judge expiry by, instead of reading the
  // clock for each (0: read the clock). A worker sets it to the time it read
  // a batch of requests, which is after each of them was sent, so no
  // request can see a key that had expired before it was sent; and a
  // pipelined batch costs one clock read instead of one per command.
  // Process-local, not shared.
  void set_now_ms(int64_t now_ms) { now_ms_ = now_ms; }

  // SCAN. The cursor is (stripe << 32 | reverse-binary bucket cursor); a full
  // iteration returns every key present throughout, at least once, even while
  // stripes rehash. `count` is a hint. Returns 0 when done. `fn` runs with a
  // stripe lock held: it must not use this Store.
  uint64_t Scan(uint64_t cursor, size_t count, const ScanFn& fn);
  // Every key of one stripe (0 <= stripe < stripe_count()), under its lock,
  // as one Scan step: KEYS walks stripe by stripe and copies the keys out,
  // so that matching them holds no lock. `fn` must not use this Store.
  void ScanStripe(uint32_t stripe, const ScanFn& fn);
  uint32_t stripe_count() const;
  // FLUSHALL: empties stripe by stripe (not atomic across stripes; in a
  // LockAll scope, staged: atomic).
  void Flush();
  std::optional<std::string> RandomKey();
  // DBSIZE: keys present, expired ones not yet removed included (as Redis);
  // in a LockAll scope, as the scope's Txn sees them.
  uint64_t KeyCount();
  // Active expiry and background upkeep (incremental rehash, counter resync
  // after a repair): call ~10 times a second. Returns keys removed.
  size_t ExpireCycle(int64_t now_ms, std::chrono::microseconds budget);

  Stats stats() const;
  // Used memory is over maxmemory under noeviction: Redis's state in which a
  // deny-oom command is refused before it runs (the dispatcher). Puts never
  // take the use past the limit, so only a lowered maxmemory gets here.
  // Three relaxed loads of the header, no lock: cheap for every write.
  bool OverMaxmemory() const;
  static int64_t NowMs();  // the clock expire times are measured on (unix ms)
  // kNoLocks: take no stripe lock, not even by try-lock (the master, which
  // must never repair a stripe or wait): a lowering's resync is left to the
  // workers' ExpireCycle.
  enum class LockUse { kMayLock, kNoLocks };
  void SetMaxmemory(uint64_t bytes, LockUse use = LockUse::kMayLock);
  void SetPolicy(Policy policy);
  uint32_t StripeOf(std::string_view key) const;
  const std::string& name() const { return name_; }

  // Takes every stripe's lock in turn and checks every invariant (chains,
  // slabs, free lists, page pool, counters); returns one line per violation.
  // For tests and `redhubd --check`; costs a pass over the whole segment.
  std::vector<std::string> Audit();
  // Recomputes the global used-bytes counter from the stripes, holding all
  // stripe locks at once; ExpireCycle does it after a repair. Never blocks:
  // stripes are try-locked, one held by another process is retried until
  // `wait` has passed, then it gives up, leaves resync_needed set for the
  // next ExpireCycle and returns false.
  bool ResyncCounters(std::chrono::milliseconds wait);
  // Repairs now every stripe whose lock holder died (an odd version whose
  // lock try-locks), instead of at the next command that locks it; skips
  // stripes live processes hold. ExpireCycle calls it. Returns the stripes
  // repaired.
  size_t RepairAbandoned();
  // Where repairs report what they did (process-local; default: nowhere).
  void SetEventSink(std::function<void(std::string_view)> sink);

  // A held lock on one or several stripes; unlocks when destroyed. Operations
  // on a key whose stripe is not held abort the process (a programming error).
  //
  // Atomicity. A Txn from Store::Lock, or from LockKeys with a single key,
  // applies each write at once; a death leaves every write done or not done,
  // never half (README: "What can and cannot be lost").
  // A Txn from LockKeys with two or more keys (MSET, MSETNX, RENAME, DEL of
  // several keys) is atomic as a whole: its Put, PutWith, Erase and SetExpire
  // calls are staged (new entries written completely but unreachable) and
  // made visible together when the Txn ends (destructor, Unlock, or a move
  // assignment onto it). If the holder dies at any instant, the stripes' next
  // lockers show all of its writes or none; once the destructor (or Unlock)
  // has returned, all of them are visible and survive any later death.
  // Abort (below) ends it with none of them instead.
  // Inside such a Txn:
  //  - reads see its own writes: Find/Peek after a Put return the new value
  //    (a view of the staged entry) and expire time, after an Erase nullopt;
  //  - a view returned by Find stays valid until the Txn ends or that key is
  //    written again through the Txn (an Erase of a key leaves the view of
  //    its old value valid: RENAME's Find(src), Put(dst, view), Erase(src)
  //    is safe);
  //  - past four writes on one stripe, its redo log needs a chunk: if the
  //    page pool is completely full, Put returns kOom, and an Erase or
  //    SetExpire is applied at once, outside the all-or-nothing set (the
  //    only exception; README.md);
  //  - LRU touches and the deletion of keys found expired happen at once
  //    (neither changes what a reader can see).
  // Other processes cannot observe a Txn's writes before it ends: they would
  // need its locks.
  class Txn {
   public:
    Txn() = default;
    Txn(Txn&& other) noexcept;
    Txn& operator=(Txn&& other) noexcept;
    ~Txn();

    // Absent or expired (an expired entry is deleted here): nullopt. Updates
    // the entry's LRU clock.
    std::optional<EntryView> Find(std::string_view key);
    // As Find, without touching the LRU clock.
    std::optional<EntryView> Peek(std::string_view key);
    // Inserts or replaces. expire_ms: absolute unix ms, 0 = none, kKeepTtl.
    Status Put(std::string_view key, std::string_view value, int64_t expire_ms = 0);
    // As Put, but the value is written in place by fill(char* dst) (value_len
    // bytes), e.g. APPEND copying the old value's view then the suffix: the
    // old value stays readable until fill returns.
    template <typename Fill>
    Status PutWith(std::string_view key, size_t value_len, int64_t expire_ms, Fill&& fill) {
      return PutImpl(
          key, value_len, expire_ms,
          [](void* ctx, char* dst) { (*static_cast<std::remove_reference_t<Fill>*>(ctx))(dst); },
          &fill);
    }
    // False if absent or expired.
    bool Erase(std::string_view key);
    // Sets (or with 0 clears) the expire time; false if absent or expired.
    bool SetExpire(std::string_view key, int64_t expire_ms);
    bool Touch(std::string_view key);
    // The time this Txn judges expiry by, fixed when it was taken.
    int64_t now_ms() const { return now_ms_; }
    // Makes the Txn's writes visible (all at once for a multi-key Txn, see
    // above) and releases the locks now.
    void Unlock();
    // Ends the Txn without its writes, and releases the locks (MSET refused
    // halfway by kOom). For a multi-key Txn: every staged Put, Erase and
    // SetExpire is dropped (the staged entries and the redo log's chunk are
    // freed); every key is exactly as before the Txn. Not undone: what was
    // never part of the all-or-nothing set (LRU touches, expired keys
    // deleted, keys evicted to make room, and an Erase or SetExpire the
    // completely full pool made apply at once, see above). A death during
    // Abort is a death before the commit: none of the writes appear.
    // A Txn that does not stage (Store::Lock, or LockKeys with one key)
    // writes in place and cannot take a write back: Abort is Unlock if
    // nothing was written through it (a Put that did not return kOk, or an
    // Erase or SetExpire that returned false, wrote nothing), and aborts the
    // process (a programming error) after a write. No-op on an ended Txn.
    void Abort();

    // Every key this Txn holds the stripes of, as it sees them (its own
    // staged writes included, expired keys left out). A Txn from LockAll:
    // the whole store. `fn` must not use the store.
    void ForEachKey(const ScanFn& fn);
    // ForEachKey's count, without the walk: keys of the held stripes plus
    // what the staged writes add or remove (expired keys not yet removed
    // included, as Store::stats).
    uint64_t KeyCount();
    // Stages the erasure of every key of the held stripes (FLUSHALL in a
    // LockAll scope). Staged, so a death before the end shows none of it.
    void EraseAll();
    bool holds_all() const { return all_; }
    // SCAN and RANDOMKEY over the same view (a Txn from LockAll).
    uint64_t ScanHeld(uint64_t cursor, size_t count, const ScanFn& fn);
    std::optional<std::string> RandomKeyHeld();

   private:
    friend class Store;
    struct Savepoint;  // a borrowed Txn's mark in its scope's staging
    struct Staging;    // a multi-key Txn's staged writes (txn_staging.h)
    struct PendingOp;
    static std::unique_ptr<Staging>& SpareStaging();  // this thread's, recycled
    Txn(Store* store, int64_t now_ms);
    PendingOp* FindPending(uint64_t hash, std::string_view key);
    bool ReserveLogSlot(uint32_t stripe);
    void ReleaseLogSlot(uint32_t stripe);
    void Commit();
    void Discard();
    Status StagePut(std::string_view key, uint64_t hash, size_t value_len, int64_t expire_ms,
                    void (*fill)(void*, char*), void* ctx);
    bool StageErase(std::string_view key, uint64_t hash);
    bool StageSetExpire(std::string_view key, uint64_t hash, int64_t expire_ms);
    bool Holds(uint32_t stripe) const;
    Status PutImpl(std::string_view key, size_t value_len, int64_t expire_ms,
                   void (*fill)(void*, char*), void* ctx);
    std::optional<EntryView> FindImpl(std::string_view key, bool touch);

    const uint32_t* stripes() const { return count_ <= kInline ? inline_ : many_.data(); }

    static constexpr uint32_t kInline = 4;
    Store* store_ = nullptr;
    int64_t now_ms_ = 0;
    uint32_t lru_ = 0;
    uint32_t count_ = 0;  // stripes held, ascending in inline_ or many_
    uint32_t inline_[kInline] = {};
    std::vector<uint32_t> many_;
    std::vector<uint64_t> deferred_;  // evicted chunks, freed at unlock
    bool atomic_ = false;             // LockKeys with 2+ keys: writes are staged
    bool wrote_ = false;              // not atomic_: a write was applied in place
    bool kept_ = false;               // its stripe stays locked for the batch (BeginBatch)
    bool all_ = false;                // LockAll: every stripe is held
    std::unique_ptr<Staging> staging_;
    // A Txn borrowed inside a Scope: every operation goes to `outer_`, and
    // ending it commits nothing.
    Txn* outer_ = nullptr;
    // The scope's Txn: what its borrowed Txn of the moment staged, so that
    // a borrowed Abort can take it back (kept for reuse; active while a
    // borrowed Txn is alive).
    std::unique_ptr<Savepoint> savepoint_;
    void BeginSavepoint();
    void EndSavepoint(bool keep);
    // with_expired: expired keys too (EraseAll).
    void ScanHeldStripe(uint32_t stripe, const ScanFn& fn, bool with_expired = false);
    bool InSavepoint(const PendingOp* p) const;
    bool Journal(PendingOp* p);
    void FreeStaged(uint32_t stripe, uint64_t entry, bool saved);
  };

 private:
  struct Impl;
  Store(std::string name, std::unique_ptr<Impl> impl);
  static std::unique_ptr<Store> Open(const std::string& name, bool resync, std::string* error);
  ReadResult ReadUnlockedImpl(std::string_view key, void (*emit)(void*, const EntryView&),
                              void* ctx);

  Txn Borrow();
  Txn& WholeScope();

  std::string name_;
  std::unique_ptr<Impl> impl_;
  int64_t now_ms_ = 0;
  bool batch_ = false;    // between BeginBatch and EndBatch
  Txn* scope_ = nullptr;  // Scope
};

inline bool Store::scope_holds_all() const { return scope_ != nullptr && scope_->holds_all(); }

}  // namespace redhub::shm
