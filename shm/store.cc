#include "store.h"

#include <sched.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <unordered_map>

#include "core.h"
#include "page_pool.h"
#include "progress.h"
#include "robust_mutex.h"
#include "segment.h"
#include "stripe.h"

namespace redhub::shm {
namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

uint32_t LruClock(int64_t now_ms) { return static_cast<uint32_t>(now_ms / 1000) & kLruClockMax; }

// Per-thread sampling randomness, reseeded in a forked child so that workers
// do not all pick the same victims.
uint64_t& Rng() {
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

bool Expired(int64_t expire_ms, int64_t now_ms) { return expire_ms != 0 && expire_ms <= now_ms; }

}  // namespace

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
    if (r == LockResult::kOwnerDied) RepairStripe(s);
  }
  // Never blocks, so it may be used while holding other stripes in any order.
  bool TryLockStripe(uint32_t s) {
    LockResult r = TryLockRobust(&core.stripes[s].mu, "stripe", s);
    if (r == LockResult::kBusy) return false;
    BeginWrite(s);
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

  void RepairStripe(uint32_t s) {
    std::string summary;
    try {
      Stripe(core, s).Repair(&summary);
    } catch (const std::exception& e) {
      // Dying keeps the lock marked owner-dead: the next locker repairs.
      // Carrying on would leave it held by a live process, for good.
      Fatal("repairing stripe %u failed: %s", s, e.what());
    }
    core.header->repairs.fetch_add(1, kRelaxed);
    MarkConsistent(&core.stripes[s].mu);
    core.Report(summary);
  }

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

  Status MakeRoom(Txn& txn, Stripe& own, uint64_t charge);
  // Evicts one key; *freed: the bytes its entry was charged.
  bool EvictOne(Txn& txn, Stripe& own, Policy policy, uint64_t* freed);

  std::unique_ptr<Segment> segment;
  Core core;
  PagePool pool;
};

// ---------------------------------------------------------------------------
// Creation and attachment

Store::Store(std::string name, std::unique_ptr<Impl> impl)
    : name_(std::move(name)), impl_(std::move(impl)) {}

Store::~Store() = default;

std::unique_ptr<Store> Store::Create(const StoreOptions& o, std::string* error) {
  if (o.name.empty()) {
    *error = "the store needs a shared memory name";
    return nullptr;
  }
  uint64_t data = o.data_bytes;
  if (data == 0) {
    if (o.maxmemory == 0) {
      *error = "set the store's size (data_bytes) or maxmemory";
      return nullptr;
    }
    data = o.maxmemory + o.maxmemory / 8 + uint64_t{o.stripes} * 16 * o.page_size;
  }
  if (o.page_size == 0) {
    *error = "page_size must not be 0";
    return nullptr;
  }
  Geometry g;
  if (!ComputeGeometry(o.stripes, o.page_size, (data + o.page_size - 1) / o.page_size, &g, error)) {
    return nullptr;
  }
  if (o.maxmemory > g.pages * g.page_size) {
    *error = "maxmemory (" + std::to_string(o.maxmemory) +
             ") is larger than the store's data area (" + std::to_string(g.pages * g.page_size) +
             " bytes)";
    return nullptr;
  }
  bool existed = false;
  auto segment = Segment::Create(o.name, g, o.if_exists == IfExists::kReplace, o.memory_available,
                                 &existed, error);
  if (!segment && existed && o.if_exists == IfExists::kReuse) {
    auto store = OpenExisting(o.name, error);
    if (store) {
      store->SetMaxmemory(o.maxmemory);
      store->SetPolicy(o.policy);
    }
    return store;
  }
  if (!segment) return nullptr;

  SegmentHeader* h = segment->header();
  h->layout_version = kLayoutVersion;
  h->header_bytes = sizeof(SegmentHeader);
  h->stripe_header_bytes = sizeof(StripeHeader);
  h->page_meta_bytes = sizeof(PageMeta);
  h->stripes = g.stripes;
  h->page_size = g.page_size;
  h->pages = g.pages;
  h->total_bytes = g.total_bytes;
  h->stripes_offset = g.stripes_offset;
  h->owner_offset = g.owner_offset;
  h->meta_offset = g.meta_offset;
  h->pool_offset = g.pool_offset;
  std::random_device entropy;
  h->hash_seed = (uint64_t{entropy()} << 32) ^ entropy() ^ static_cast<uint64_t>(NowMs());
  h->created_ms = NowMs();
  h->maxmemory.store(o.maxmemory, kRelaxed);
  h->policy.store(static_cast<uint32_t>(o.policy), kRelaxed);

  auto impl = std::make_unique<Impl>(std::move(segment));
  for (uint32_t s = 0; s < g.stripes; s++) InitRobustMutex(&impl->core.stripes[s].mu);
  impl->pool.Format();
  impl->core.seed = h->hash_seed;
  // Last: a segment whose creator died before this line is refused by Attach
  // ("never initialised") instead of being waited on forever.
  h->magic.store(kMagic, std::memory_order_release);
  return std::unique_ptr<Store>(new Store(o.name, std::move(impl)));
}

std::unique_ptr<Store> Store::Open(const std::string& name, bool resync, std::string* error) {
  auto segment = Segment::Open(name, error);
  if (!segment) return nullptr;
  auto store = std::unique_ptr<Store>(new Store(name, std::make_unique<Impl>(std::move(segment))));
  if (resync) store->ResyncCounters(std::chrono::milliseconds(1000));
  return store;
}

std::unique_ptr<Store> Store::OpenExisting(const std::string& name, std::string* error) {
  return Open(name, /*resync=*/true, error);
}

std::unique_ptr<Store> Store::Attach(const std::string& name, std::string* error) {
  return Open(name, /*resync=*/false, error);
}

bool Store::Remove(const std::string& name) {
  std::string path = name[0] == '/' ? name : "/" + name;
  return shm_unlink(path.c_str()) == 0;
}

int64_t Store::NowMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

void Store::SetMaxmemory(uint64_t bytes, LockUse use) {
  uint64_t before = impl_->core.header->maxmemory.exchange(bytes, kRelaxed);
  // Stripes may hold back up to the old limit's share (Stripe::Charge);
  // MakeRoom allows only for the new one. A lower limit passes everything
  // on first, so that it is never exceeded: here, or (kNoLocks, the master)
  // by the workers' next ExpireCycle, within about 100 ms.
  if (bytes == 0 || (before != 0 && bytes >= before)) return;
  if (use == LockUse::kNoLocks || !ResyncCounters(std::chrono::milliseconds(20))) {
    impl_->core.header->resync_needed.store(1, kRelaxed);
  }
}

void Store::SetPolicy(Policy policy) {
  impl_->core.header->policy.store(static_cast<uint32_t>(policy), kRelaxed);
}

uint32_t Store::StripeOf(std::string_view key) const {
  return impl_->core.StripeOfHash(impl_->core.Hash(key));
}

void Store::SetEventSink(std::function<void(std::string_view)> sink) {
  impl_->core.sink = std::move(sink);
}

// ---------------------------------------------------------------------------
// Locking

void Store::Prefetch(std::string_view key, int stage) const {
  const Core& core = impl_->core;
  const uint64_t hash = core.Hash(key);
  const uint32_t s = core.StripeOfHash(hash);
  // The newer table while rehashing: where new and moved keys are.
  uint64_t desc = core.stripes[s].tables[1].load(kRelaxed);
  if (desc == 0) desc = core.stripes[s].tables[0].load(kRelaxed);
  if (desc == 0) return;
  const auto* slot = Stripe(core, s).BucketUnlocked(desc, hash);
  if (slot == nullptr) return;
  if (stage == 0) {
    __builtin_prefetch(slot);
    return;
  }
  const uint64_t entry = LinkOffset(slot->load(kRelaxed));
  if (entry != 0 && core.InPool(entry)) __builtin_prefetch(core.base + entry);
}

Store::ReadResult Store::ReadUnlockedImpl(std::string_view key,
                                          void (*emit)(void*, const EntryView&), void* ctx) {
  Impl& im = *impl_;
  const Core& core = im.core;
  uint64_t hash = core.Hash(key);
  uint32_t s = core.StripeOfHash(hash);
  // A batch keeps a stripe only across consecutive Txns on it: a read of
  // another stripe ends the run, so other processes do not wait on it for
  // the rest of the batch. (A read of the kept stripe finds it locked, by
  // this process, and goes to Lock, which takes it over.)
  if (im.kept != Impl::kNoStripe && im.kept != s && !im.kept_in_use) im.ReleaseKept();
  const std::atomic<uint64_t>& version = core.stripes[s].version;
  // Pairs with BeginWrite's fence: if this load sees no writer, the reads
  // below see no writes of one that starts later, unless the recheck
  // catches it.
  const uint64_t v = version.load(std::memory_order_acquire);
  if (v & 1) return ReadResult::kRetry;
  auto unchanged = [&] {
    std::atomic_thread_fence(std::memory_order_acquire);
    return version.load(kRelaxed) == v;
  };
  uint64_t offset = 0;
  switch (Stripe(core, s).LookupUnlocked(key, hash, &offset)) {
    case Stripe::Probe::kInvalid:
      return ReadResult::kRetry;
    case Stripe::Probe::kAbsent:
      return unchanged() ? ReadResult::kAbsent : ReadResult::kRetry;
    case Stripe::Probe::kFound:
      break;
  }
  EntryHeader* e = core.Entry(offset);
  const int64_t now = now_ms_ != 0 ? now_ms_ : NowMs();
  const int64_t expire = e->expire_ms.load(kRelaxed);
  const uint32_t value_len = __atomic_load_n(&e->value_len, __ATOMIC_RELAXED);
  // Not e->value(): that reads key_len again, and a writer may have reused
  // the chunk since the key matched (a parent process crashed on exactly
  // that). The key matched with key.size() bytes.
  const char* value = e->key() + key.size();
  uint64_t link = e->link.load(kRelaxed);
  // Checked before emit copies anything, so that a torn length never makes
  // it copy a stranger's bytes (or many of them); checked again after.
  if (Expired(expire, now) || !unchanged() ||
      core.g.total_bytes - offset - kEntryHeaderBytes - key.size() < value_len) {
    return ReadResult::kRetry;
  }
  const uint32_t lru = LruClock(now);
  emit(ctx,
       EntryView{std::string_view(value, value_len), expire, (lru - LinkLru(link)) & kLruClockMax});
  if (!unchanged()) return ReadResult::kRetry;
  // The LRU touch, at most once a second per key: a CAS, so that it never
  // undoes a locked writer's store to this word (that makes it fail). If the
  // entry was replaced since the check, the word is another's and differs.
  if (LinkLru(link) != lru) {
    e->link.compare_exchange_strong(link, MakeLink(LinkOffset(link), lru), kRelaxed);
  }
  return ReadResult::kFound;
}

Store::Txn Store::Lock(std::string_view key) {
  // A batch's run of Txns on one stripe shares one lock and unlock. Another
  // process waiting for the stripe waits for the batch's end: at most one
  // read's worth of requests (the worker's read buffer).
  Impl& im = *impl_;
  uint32_t s = StripeOf(key);
  if (im.kept != s || im.kept_in_use) im.LockStripe(s);  // lets go of a kept stripe first
  Txn txn(this, now_ms_ != 0 ? now_ms_ : NowMs());
  txn.inline_[0] = s;
  txn.count_ = 1;
  if (batch_) {
    im.kept = s;
    im.kept_in_use = true;
    txn.kept_ = true;
  }
  return txn;
}

void Store::EndBatch() {
  Impl& im = *impl_;
  batch_ = false;
  uint32_t s = im.kept;
  if (s == Impl::kNoStripe) return;
  const uint64_t released = im.ReleaseKept();
  // Fairness: another process blocked on the stripe while this batch held
  // it. Its wake-up takes microseconds, and this process, on to its next
  // connection's batch, would most likely lock the (hot) stripe again first,
  // starving it (p99 of a pipelined hot-key SET load went from 0.3 s to
  // 1 s). So wait until somebody else has taken the stripe, for a bounded
  // time: the version moves on when they do.
  StripeHeader& h = im.core.stripes[s];
  uint32_t waiting = h.waiters.load(kRelaxed);
  if (waiting == 0) return;
  for (int i = 0; i < 2000; i++) {
    if (h.version.load(kRelaxed) != released) return;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  // Nobody took it: the count was left by waiters that were killed while
  // blocked (they never held the lock, so no repair follows). Clear it, so
  // that later batches do not spin for nobody.
  h.waiters.compare_exchange_strong(waiting, 0, kRelaxed);
}

Store::Txn Store::LockKeys(std::span<const std::string_view> keys) {
  // Sort and dedupe the stripes in place: in the Txn's inline array when the
  // keys fit (MGET/MSET of a few keys take no allocation), else in many_.
  uint32_t inline_stripes[Txn::kInline];
  std::vector<uint32_t> many;
  uint32_t* stripes = inline_stripes;
  if (keys.size() > Txn::kInline) {
    many.resize(keys.size());
    stripes = many.data();
  }
  for (size_t i = 0; i < keys.size(); i++) stripes[i] = StripeOf(keys[i]);
  std::sort(stripes, stripes + keys.size());
  size_t count = std::unique(stripes, stripes + keys.size()) - stripes;
  // Ascending order: two Txns can never wait for each other in a cycle.
  for (size_t i = 0; i < count; i++) impl_->LockStripe(stripes[i]);
  Txn txn(this, now_ms_ != 0 ? now_ms_ : NowMs());
  txn.atomic_ = keys.size() > 1;
  txn.count_ = static_cast<uint32_t>(count);
  if (count <= Txn::kInline) {
    std::copy(stripes, stripes + count, txn.inline_);
  } else {
    many.resize(count);
    txn.many_ = std::move(many);
  }
  return txn;
}

Store::Txn::Txn(Store* store, int64_t now_ms)
    : store_(store), now_ms_(now_ms), lru_(LruClock(now_ms)) {}

// A multi-key Txn's staged writes: at most one per key (a later write to the
// same key replaces the earlier one), and per stripe room in a redo log
// reserved as writes are staged, so that committing never allocates.
struct Store::Txn::PendingOp {
  uint32_t stripe;
  uint32_t kind;  // TxnOpKind
  uint64_t hash;
  std::string_view key;  // in `entry`'s bytes
  uint64_t entry;        // put: the staged entry; erase, expire: the key's entry
  uint64_t base;         // put: the key's entry when it was first written (0 = none)
  int64_t expire;        // expire: the new expire time
};

struct Store::Txn::Staging {
  struct Log {
    uint32_t stripe;
    uint32_t capacity;  // ops the log holds
    uint32_t reserved;  // ops staged on this stripe
    uint64_t chunk;     // 0: the log is inline in the stripe header
  };
  std::vector<PendingOp> ops;
  std::vector<Log> logs;

  // Lookups by key and by stripe. A linear search per key made MSET of n
  // pairs O(n^2): 200k pairs kept a worker busy until the watchdog killed
  // it. Small Txns (RENAME, MSET of a few keys) search the vectors; past
  // kIndexFrom ops a hash index takes over.
  static constexpr size_t kIndexFrom = 16;
  bool indexed = false;
  std::unordered_multimap<uint64_t, uint32_t> by_hash;  // hash -> position in ops
  std::vector<uint32_t> log_of;                         // stripe -> position in logs + 1 (0: none)

  PendingOp* Find(uint64_t hash, std::string_view key) {
    if (indexed) {
      auto [it, end] = by_hash.equal_range(hash);
      for (; it != end; ++it) {
        if (ops[it->second].key == key) return &ops[it->second];
      }
      return nullptr;
    }
    for (PendingOp& op : ops) {
      if (op.hash == hash && op.key == key) return &op;
    }
    return nullptr;
  }
  void Add(const PendingOp& op) {
    ops.push_back(op);
    if (indexed) {
      by_hash.emplace(op.hash, static_cast<uint32_t>(ops.size() - 1));
    } else if (ops.size() >= kIndexFrom) {
      by_hash.reserve(ops.size() * 2);
      for (size_t i = 0; i < ops.size(); i++) by_hash.emplace(ops[i].hash, i);
      indexed = true;
    }
  }
  // Removes ops[i], moving the last op into its place.
  void Remove(PendingOp* op) {
    const auto i = static_cast<uint32_t>(op - ops.data());
    const auto last = static_cast<uint32_t>(ops.size() - 1);
    if (indexed) {
      Unindex(ops[i].hash, i);
      if (i != last) {
        Unindex(ops[last].hash, last);
        by_hash.emplace(ops[last].hash, i);
      }
    }
    ops[i] = ops[last];
    ops.pop_back();
  }
  void Unindex(uint64_t hash, uint32_t pos) {
    auto [it, end] = by_hash.equal_range(hash);
    for (; it != end; ++it) {
      if (it->second == pos) {
        by_hash.erase(it);
        return;
      }
    }
  }
  Log* LogOf(uint32_t stripe) {
    return stripe < log_of.size() && log_of[stripe] != 0 ? &logs[log_of[stripe] - 1] : nullptr;
  }
  Log* AddLog(uint32_t stripe, uint32_t capacity) {
    if (stripe >= log_of.size()) log_of.resize(stripe + 1, 0);
    logs.push_back(Log{stripe, capacity, 0, 0});
    log_of[stripe] = static_cast<uint32_t>(logs.size());
    return &logs.back();
  }
  // Empty for reuse, keeping the capacity (SpareStaging).
  void Clear() {
    for (const Log& l : logs) log_of[l.stripe] = 0;
    ops.clear();
    logs.clear();
    by_hash.clear();
    indexed = false;
  }
};

// A Txn's Staging is recycled per thread (a thread holds one Txn at a time),
// so that an MSET does not pay for heap allocations.
std::unique_ptr<Store::Txn::Staging>& Store::Txn::SpareStaging() {
  static thread_local std::unique_ptr<Staging> spare;
  return spare;
}

static uint64_t LogBytes(uint32_t capacity) {
  return sizeof(TxnLogHeader) + uint64_t{capacity} * sizeof(TxnLogOp);
}

Store::Txn::Txn(Txn&& other) noexcept { *this = std::move(other); }

Store::Txn& Store::Txn::operator=(Txn&& other) noexcept {
  if (this != &other) {
    Unlock();
    store_ = other.store_;
    now_ms_ = other.now_ms_;
    lru_ = other.lru_;
    count_ = other.count_;
    std::copy(std::begin(other.inline_), std::end(other.inline_), inline_);
    many_ = std::move(other.many_);
    deferred_ = std::move(other.deferred_);
    atomic_ = other.atomic_;
    wrote_ = other.wrote_;
    kept_ = other.kept_;
    staging_ = std::move(other.staging_);
    other.store_ = nullptr;
    other.count_ = 0;
    other.kept_ = false;
  }
  return *this;
}

Store::Txn::~Txn() { Unlock(); }

void Store::Txn::Unlock() {
  if (store_ == nullptr) return;
  Impl& im = *store_->impl_;
  if (staging_) {
    Commit();
    staging_->Clear();
    SpareStaging() = std::move(staging_);
  }
  for (uint64_t chunk : deferred_) {
    uint32_t s = im.core.owner[im.core.PageOf(chunk)].load(kRelaxed) - 1;
    Stripe(im.core, s).FreeChunk(chunk);
  }
  deferred_.clear();
  if (kept_) {
    // The batch keeps the stripe locked for its next Txn: everything this
    // Txn wrote is complete and published, as after an unlock.
    im.kept_in_use = false;
    kept_ = false;
  } else {
    const uint32_t* s = stripes();
    for (uint32_t i = count_; i-- > 0;) im.UnlockStripe(s[i]);
  }
  store_ = nullptr;
  count_ = 0;
  many_.clear();
  wrote_ = false;
}

void Store::Txn::Abort() {
  if (store_ == nullptr) return;
  if (!atomic_) {
    if (wrote_) {
      Fatal(
          "Txn::Abort after a write through a Txn that does not stage its writes (Store::Lock, "
          "or LockKeys with one key)");
    }
    Unlock();
    return;
  }
  if (staging_) {
    Discard();
    staging_->Clear();
    SpareStaging() = std::move(staging_);
  }
  // Staging may have made a stripe's first table for a key it never wrote.
  Impl& im = *store_->impl_;
  const uint32_t* s = stripes();
  for (uint32_t i = 0; i < count_; i++) Stripe(im.core, s[i]).MaybeResize();
  Unlock();  // nothing left to commit: frees the evicted chunks, unlocks
}

// A redo log's chunk, reserved while staging (0: the log is inline in the
// stripe header).
static void FreeLog(Core& core, uint32_t s, uint32_t capacity, uint64_t chunk) {
  if (chunk == 0) return;
  Stripe stripe(core, s);
  stripe.Charge(-static_cast<int64_t>(stripe.ChargeFor(LogBytes(capacity))));
  stripe.FreeChunk(chunk);
}

// Abort: frees what staging allocated. Nothing of it is reachable (no stripe
// record names a log, no chain a staged entry), so a death here is a death
// before the commit: the repair's sweep frees whatever is left.
void Store::Txn::Discard() {
  Impl& im = *store_->impl_;
  for (const PendingOp& op : staging_->ops) {
    if (op.kind != kTxnOpPut) continue;  // erase, expire: only recorded
    Stripe stripe(im.core, op.stripe);
    stripe.Charge(-static_cast<int64_t>(stripe.EntryCharge(op.entry)));
    stripe.FreeChunk(op.entry);
    MaybeCrash(CrashPoint::kTxnAbort);
  }
  for (const Staging::Log& log : staging_->logs) {
    FreeLog(im.core, log.stripe, log.capacity, log.chunk);
  }
}

// The commit protocol (layout.h): redo logs written and every participant
// marked pending, then the one store that commits (the home's txn_commit),
// then each participant publishes its part and clears its record. A death
// before the commit store leaves only unreachable chunks (all or nothing:
// nothing); after it, each participant's repair rolls its part forward.
void Store::Txn::Commit() {
  Impl& im = *store_->impl_;
  Staging& st = *staging_;
  auto free_log = [&](const Staging::Log& log) {
    FreeLog(im.core, log.stripe, log.capacity, log.chunk);
  };
  if (st.ops.empty()) {
    for (const Staging::Log& log : st.logs) free_log(log);
    return;
  }
  // (Within a stripe the order does not matter: one op per key.)
  std::sort(st.ops.begin(), st.ops.end(),
            [](const PendingOp& a, const PendingOp& b) { return a.stripe < b.stripe; });
  std::sort(st.logs.begin(), st.logs.end(),
            [](const Staging::Log& a, const Staging::Log& b) { return a.stripe < b.stripe; });
  const uint32_t home = stripes()[0];
  StripeHeader& hh = im.core.stripes[home];
  const uint64_t seq = ++hh.txn_seq;
  const uint64_t pending = MakeTxnState(seq, home, kTxnPending);

  // 1. Each participant: its redo log, then its record, pending.
  size_t first = 0;
  for (Staging::Log& log : st.logs) {
    size_t end = first;
    while (end < st.ops.size() && st.ops[end].stripe == log.stripe) end++;
    if (end == first) {
      free_log(log);
      log.reserved = 0;  // nothing to publish here
      continue;
    }
    StripeHeader& sh = im.core.stripes[log.stripe];
    const uint32_t count = static_cast<uint32_t>(end - first);
    TxnLogOp* ops =
        log.chunk == 0 ? sh.txn_ops : im.core.At<TxnLogOp>(log.chunk + sizeof(TxnLogHeader));
    for (size_t i = first; i < end; i++) {
      ops[i - first] = TxnLogOp{st.ops[i].entry | st.ops[i].kind, st.ops[i].expire};
    }
    if (log.chunk == 0) {
      sh.txn_log = InlineTxnLog(count);
    } else {
      auto* lh = im.core.At<TxnLogHeader>(log.chunk);
      lh->magic = kTxnLogMagic;
      lh->count = count;
      sh.txn_log = log.chunk;
    }
    sh.txn_state.store(pending, std::memory_order_release);
    MaybeCrash(CrashPoint::kTxnPending);
    first = end;
  }
  // (Allocated before the commit: nothing after it may throw.)
  std::vector<uint64_t> unreachable;
  unreachable.reserve(st.ops.size());
  // 2. The commit point.
  MaybeCrash(CrashPoint::kTxnCommit);
  hh.txn_commit.store(seq, std::memory_order_release);
  MaybeCrash(CrashPoint::kTxnCommitted);

  // 3. Publish each participant's part, clear its record, then free what
  // became unreachable (a death from here on: the sweep frees it).
  first = 0;
  for (const Staging::Log& log : st.logs) {
    if (log.reserved == 0) continue;
    Stripe stripe(im.core, log.stripe);
    for (; first < st.ops.size() && st.ops[first].stripe == log.stripe; first++) {
      const PendingOp& op = st.ops[first];
      if (!stripe.ApplyTxnOp(op.entry | op.kind, op.expire, /*repair=*/false, &unreachable)) {
        // Only a Put whose stripe lost its table (never: staging keeps it).
        stripe.Charge(-static_cast<int64_t>(stripe.EntryCharge(op.entry)));
        unreachable.push_back(op.entry);
      }
      MaybeCrash(CrashPoint::kTxnApply);
    }
    im.core.stripes[log.stripe].txn_state.store(0, std::memory_order_release);
    MaybeCrash(CrashPoint::kTxnApplied);
    for (uint64_t chunk : unreachable) stripe.FreeChunk(chunk);
    unreachable.clear();
    free_log(log);
    stripe.MaybeResize();
  }
}

Store::Txn::PendingOp* Store::Txn::FindPending(uint64_t hash, std::string_view key) {
  return staging_ ? staging_->Find(hash, key) : nullptr;
}

// Room in `stripe`'s redo log for one more op (grown by doubling). False if
// the pool has no chunk for it.
bool Store::Txn::ReserveLogSlot(uint32_t s) {
  Impl& im = *store_->impl_;
  if (!staging_) {
    std::unique_ptr<Staging>& spare = SpareStaging();
    staging_ = spare ? std::move(spare) : std::make_unique<Staging>();
  }
  Staging::Log* log = staging_->LogOf(s);
  if (log == nullptr) log = staging_->AddLog(s, kTxnInlineOps);
  if (log->reserved == log->capacity) {  // past the stripe header's room
    uint32_t capacity = log->capacity * 2;
    Stripe stripe(im.core, s);
    uint64_t chunk = stripe.AllocChunk(LogBytes(capacity));
    if (chunk == 0) return false;
    if (log->chunk != 0) {
      stripe.Charge(-static_cast<int64_t>(stripe.ChargeFor(LogBytes(log->capacity))));
      stripe.FreeChunk(log->chunk);
    }
    log->chunk = chunk;
    log->capacity = capacity;
  }
  log->reserved++;
  return true;
}

void Store::Txn::ReleaseLogSlot(uint32_t s) {
  if (Staging::Log* log = staging_->LogOf(s)) log->reserved--;
}

Status Store::Txn::StagePut(std::string_view key, uint64_t hash, size_t value_len,
                            int64_t expire_ms, void (*fill)(void*, char*), void* ctx) {
  Impl& im = *store_->impl_;
  uint32_t s = im.core.StripeOfHash(hash);
  Stripe stripe(im.core, s);
  uint64_t bytes = uint64_t{kEntryHeaderBytes} + key.size() + value_len;
  uint64_t charge = stripe.ChargeFor(bytes);
  stripe.RehashStep(1);
  if (Status status = im.MakeRoom(*this, stripe, charge); status != Status::kOk) return status;
  // The table the entry will be published into, made now: publishing at the
  // end (or in a repair) must not allocate.
  if (stripe.InsertSlot(hash) == nullptr) return Status::kOom;
  PendingOp* p = FindPending(hash, key);
  if (p == nullptr && !ReserveLogSlot(s)) return Status::kOom;
  uint64_t chunk = stripe.AllocChunk(bytes);
  if (chunk == 0) {
    if (p == nullptr) ReleaseLogSlot(s);
    return Status::kOom;
  }
  EntryHeader* e = im.core.Entry(chunk);
  e->key_len = static_cast<uint32_t>(key.size());
  e->value_len = static_cast<uint32_t>(value_len);
  if (!key.empty()) memcpy(e->key(), key.data(), key.size());
  try {
    fill(ctx, e->value());
  } catch (...) {
    stripe.Charge(-static_cast<int64_t>(charge));
    stripe.FreeChunk(chunk);
    if (p == nullptr) ReleaseLogSlot(s);
    throw;
  }
  // The key's value as this Txn sees it, for KEEPTTL.
  bool exists = false;
  int64_t old_expire = 0;
  uint64_t base = 0;
  if (p != nullptr) {
    exists = p->kind != kTxnOpErase;
    old_expire =
        p->kind == kTxnOpPut ? im.core.Entry(p->entry)->expire_ms.load(kRelaxed) : p->expire;
  } else if (Slot old; stripe.Lookup(key, hash, &old)) {
    base = old.entry;
    old_expire = im.core.Entry(old.entry)->expire_ms.load(kRelaxed);
    exists = true;
  }
  if (exists && Expired(old_expire, now_ms_)) exists = false;
  int64_t expire = expire_ms != kKeepTtl ? expire_ms : exists ? old_expire : 0;
  e->expire_ms.store(expire, kRelaxed);
  e->link.store(MakeLink(0, lru_), kRelaxed);
  std::string_view staged_key(e->key(), e->key_len);
  if (p == nullptr) {
    staging_->Add(PendingOp{s, kTxnOpPut, hash, staged_key, chunk, base, 0});
    return Status::kOk;
  }
  if (p->kind == kTxnOpPut) {  // never published: free it now (fill has read it)
    stripe.Charge(-static_cast<int64_t>(stripe.EntryCharge(p->entry)));
    stripe.FreeChunk(p->entry);
  } else {
    p->base = p->entry;
  }
  p->kind = kTxnOpPut;
  p->entry = chunk;
  p->key = staged_key;
  return Status::kOk;
}

bool Store::Txn::StageErase(std::string_view key, uint64_t hash) {
  Impl& im = *store_->impl_;
  uint32_t s = im.core.StripeOfHash(hash);
  Stripe stripe(im.core, s);
  if (PendingOp* p = FindPending(hash, key)) {
    switch (p->kind) {
      case kTxnOpPut: {
        bool visible = !Expired(im.core.Entry(p->entry)->expire_ms.load(kRelaxed), now_ms_);
        stripe.Charge(-static_cast<int64_t>(stripe.EntryCharge(p->entry)));
        stripe.FreeChunk(p->entry);
        if (p->base != 0) {
          EntryHeader* b = im.core.Entry(p->base);
          p->kind = kTxnOpErase;
          p->entry = p->base;
          p->base = 0;
          p->key = std::string_view(b->key(), b->key_len);
        } else {  // the key did not exist before this Txn: nothing to do
          staging_->Remove(p);
          ReleaseLogSlot(s);
        }
        return visible;
      }
      case kTxnOpExpire: {
        bool visible = !Expired(p->expire, now_ms_);
        p->kind = kTxnOpErase;
        return visible;
      }
      default:
        return false;
    }
  }
  stripe.RehashStep(1);
  Slot slot;
  if (!stripe.Lookup(key, hash, &slot)) return false;
  EntryHeader* x = im.core.Entry(slot.entry);
  if (Expired(x->expire_ms.load(kRelaxed), now_ms_)) {
    im.DeleteExpired(stripe, slot, /*resize=*/false);
    return false;
  }
  if (!ReserveLogSlot(s)) {
    // The pool is completely full: erase at once, outside the atomic set
    // (store.h). Freed at unlock, so views of the value stay valid.
    stripe.Unlink(slot);
    deferred_.push_back(slot.entry);
    return true;
  }
  staging_->Add(
      PendingOp{s, kTxnOpErase, hash, std::string_view(x->key(), x->key_len), slot.entry, 0, 0});
  return true;
}

bool Store::Txn::StageSetExpire(std::string_view key, uint64_t hash, int64_t expire_ms) {
  Impl& im = *store_->impl_;
  uint32_t s = im.core.StripeOfHash(hash);
  Stripe stripe(im.core, s);
  if (PendingOp* p = FindPending(hash, key)) {
    switch (p->kind) {
      case kTxnOpPut: {
        EntryHeader* e = im.core.Entry(p->entry);  // not published: written in place
        if (Expired(e->expire_ms.load(kRelaxed), now_ms_)) return false;
        if (expire_ms != kKeepTtl) e->expire_ms.store(expire_ms, kRelaxed);
        return true;
      }
      case kTxnOpExpire:
        if (Expired(p->expire, now_ms_)) return false;
        if (expire_ms != kKeepTtl) p->expire = expire_ms;
        return true;
      default:
        return false;
    }
  }
  Slot slot;
  if (!stripe.Lookup(key, hash, &slot)) return false;
  EntryHeader* x = im.core.Entry(slot.entry);
  int64_t old = x->expire_ms.load(kRelaxed);
  if (Expired(old, now_ms_)) {
    im.DeleteExpired(stripe, slot, /*resize=*/false);
    return false;
  }
  if (expire_ms == kKeepTtl) return true;
  if (!ReserveLogSlot(s)) {  // the pool is completely full: at once (store.h)
    x->expire_ms.store(expire_ms, kRelaxed);
    stripe.AddCounts(0, (expire_ms != 0) - (old != 0));
    return true;
  }
  staging_->Add(PendingOp{s, kTxnOpExpire, hash, std::string_view(x->key(), x->key_len), slot.entry,
                          0, expire_ms});
  return true;
}

bool Store::Txn::Holds(uint32_t stripe) const {
  const uint32_t* s = stripes();
  return std::binary_search(s, s + count_, stripe);
}

// ---------------------------------------------------------------------------
// Operations

static void CheckHeld(bool held, uint32_t stripe) {
  if (!held) Fatal("a key of stripe %u was used through a Txn that does not hold it", stripe);
}

std::optional<EntryView> Store::Txn::FindImpl(std::string_view key, bool touch) {
  CheckHeld(store_ != nullptr, 0);
  Impl& im = *store_->impl_;
  uint64_t hash = im.core.Hash(key);
  uint32_t s = im.core.StripeOfHash(hash);
  CheckHeld(Holds(s), s);
  if (atomic_) {
    if (PendingOp* p = FindPending(hash, key)) {  // this Txn's own staged write
      if (p->kind == kTxnOpErase) return std::nullopt;
      EntryHeader* e = im.core.Entry(p->entry);
      int64_t expire = p->kind == kTxnOpPut ? e->expire_ms.load(kRelaxed) : p->expire;
      if (Expired(expire, now_ms_)) return std::nullopt;
      uint32_t idle =
          p->kind == kTxnOpPut ? 0 : (lru_ - LinkLru(e->link.load(kRelaxed))) & kLruClockMax;
      return EntryView{std::string_view(e->value(), e->value_len), expire, idle};
    }
  }
  Stripe stripe(im.core, s);
  Slot slot;
  if (!stripe.Lookup(key, hash, &slot)) return std::nullopt;
  EntryHeader* e = im.core.Entry(slot.entry);
  int64_t expire = e->expire_ms.load(kRelaxed);
  if (Expired(expire, now_ms_)) {
    im.DeleteExpired(stripe, slot, /*resize=*/!atomic_);
    return std::nullopt;
  }
  uint64_t link = e->link.load(kRelaxed);
  uint32_t idle = (lru_ - LinkLru(link)) & kLruClockMax;
  if (touch && LinkLru(link) != lru_) e->link.store(MakeLink(LinkOffset(link), lru_), kRelaxed);
  return EntryView{std::string_view(e->value(), e->value_len), expire, idle};
}

std::optional<EntryView> Store::Txn::Find(std::string_view key) { return FindImpl(key, true); }
std::optional<EntryView> Store::Txn::Peek(std::string_view key) { return FindImpl(key, false); }

bool Store::Txn::Touch(std::string_view key) { return FindImpl(key, true).has_value(); }

Status Store::Txn::Put(std::string_view key, std::string_view value, int64_t expire_ms) {
  return PutImpl(
      key, value.size(), expire_ms,
      [](void* ctx, char* dst) {
        auto* v = static_cast<std::string_view*>(ctx);
        if (!v->empty()) memcpy(dst, v->data(), v->size());
      },
      &value);
}

// The write path: make room, write the new entry completely in a fresh chunk,
// publish it with one store (in place of the old entry, or at its bucket's
// head), and only then free the old one. A death before the publish leaves an
// unreachable chunk; after it, the new value; either way a repair reclaims
// whatever is unreachable.
Status Store::Txn::PutImpl(std::string_view key, size_t value_len, int64_t expire_ms,
                           void (*fill)(void*, char*), void* ctx) {
  CheckHeld(store_ != nullptr, 0);
  Impl& im = *store_->impl_;
  if (key.size() > UINT32_MAX || value_len > UINT32_MAX) return Status::kTooLarge;
  uint64_t hash = im.core.Hash(key);
  uint32_t s = im.core.StripeOfHash(hash);
  CheckHeld(Holds(s), s);
  Stripe stripe(im.core, s);
  uint64_t bytes = uint64_t{kEntryHeaderBytes} + key.size() + value_len;
  uint64_t charge = stripe.ChargeFor(bytes);
  if (charge > im.core.g.pages * im.core.g.page_size) return Status::kTooLarge;
  if (atomic_) return StagePut(key, hash, value_len, expire_ms, fill, ctx);

  stripe.RehashStep(1);
  if (Status status = im.MakeRoom(*this, stripe, charge); status != Status::kOk) return status;
  uint64_t chunk = stripe.AllocChunk(bytes);
  if (chunk == 0) return Status::kOom;
  EntryHeader* e = im.core.Entry(chunk);
  e->key_len = static_cast<uint32_t>(key.size());
  e->value_len = static_cast<uint32_t>(value_len);
  if (!key.empty()) memcpy(e->key(), key.data(), key.size());
  try {
    fill(ctx, e->value());
  } catch (...) {  // nothing is published yet: give the chunk back
    stripe.Charge(-static_cast<int64_t>(charge));
    stripe.FreeChunk(chunk);
    throw;
  }

  Slot old;
  if (stripe.Lookup(key, hash, &old)) {
    EntryHeader* o = im.core.Entry(old.entry);
    int64_t old_expire = o->expire_ms.load(kRelaxed);
    bool old_expired = Expired(old_expire, now_ms_);
    if (old_expired) im.core.header->expired.fetch_add(1, kRelaxed);
    int64_t expire = expire_ms != kKeepTtl ? expire_ms : old_expired ? 0 : old_expire;
    e->expire_ms.store(expire, kRelaxed);
    e->link.store(MakeLink(LinkOffset(o->link.load(kRelaxed)), lru_), kRelaxed);
    MaybeCrash(CrashPoint::kBeforePublish);
    Stripe::Publish(old.link, chunk);
    MaybeCrash(CrashPoint::kAfterPublish);
    stripe.AddCounts(0, (expire != 0) - (old_expire != 0));
    stripe.Charge(-static_cast<int64_t>(stripe.EntryCharge(old.entry)));
    stripe.FreeChunk(old.entry);
  } else {
    int64_t expire = expire_ms == kKeepTtl ? 0 : expire_ms;
    e->expire_ms.store(expire, kRelaxed);
    std::atomic<uint64_t>* slot = stripe.InsertSlot(hash);
    if (slot == nullptr) {  // the stripe's first table needs a page and there is none
      stripe.Charge(-static_cast<int64_t>(charge));
      stripe.FreeChunk(chunk);
      return Status::kOom;
    }
    e->link.store(MakeLink(LinkOffset(slot->load(kRelaxed)), lru_), kRelaxed);
    MaybeCrash(CrashPoint::kBeforePublish);
    Stripe::Publish(slot, chunk);
    MaybeCrash(CrashPoint::kAfterPublish);
    stripe.AddCounts(1, expire != 0);
  }
  wrote_ = true;
  stripe.MaybeResize();
  return Status::kOk;
}

bool Store::Txn::Erase(std::string_view key) {
  CheckHeld(store_ != nullptr, 0);
  Impl& im = *store_->impl_;
  uint64_t hash = im.core.Hash(key);
  uint32_t s = im.core.StripeOfHash(hash);
  CheckHeld(Holds(s), s);
  if (atomic_) return StageErase(key, hash);
  Stripe stripe(im.core, s);
  stripe.RehashStep(1);
  Slot slot;
  if (!stripe.Lookup(key, hash, &slot)) return false;
  bool expired = Expired(im.core.Entry(slot.entry)->expire_ms.load(kRelaxed), now_ms_);
  stripe.Unlink(slot);
  MaybeCrash(CrashPoint::kAfterUnlink);
  stripe.FreeChunk(slot.entry);
  if (expired) im.core.header->expired.fetch_add(1, kRelaxed);
  wrote_ = wrote_ || !expired;
  stripe.MaybeResize();
  return !expired;
}

bool Store::Txn::SetExpire(std::string_view key, int64_t expire_ms) {
  CheckHeld(store_ != nullptr, 0);
  Impl& im = *store_->impl_;
  uint64_t hash = im.core.Hash(key);
  uint32_t s = im.core.StripeOfHash(hash);
  CheckHeld(Holds(s), s);
  if (atomic_) return StageSetExpire(key, hash, expire_ms);
  Stripe stripe(im.core, s);
  Slot slot;
  if (!stripe.Lookup(key, hash, &slot)) return false;
  EntryHeader* e = im.core.Entry(slot.entry);
  int64_t old = e->expire_ms.load(kRelaxed);
  if (Expired(old, now_ms_)) {
    im.DeleteExpired(stripe, slot);
    return false;
  }
  if (expire_ms == kKeepTtl) return true;
  e->expire_ms.store(expire_ms, kRelaxed);  // one aligned store: never torn
  wrote_ = true;
  stripe.AddCounts(0, (expire_ms != 0) - (old != 0));
  return true;
}

// ---------------------------------------------------------------------------
// Memory limit

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

// ---------------------------------------------------------------------------
// Whole-store operations

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

uint64_t Store::Scan(uint64_t cursor, size_t count, const ScanFn& fn) {
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

std::optional<std::string> Store::RandomKey() {
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

bool Store::OverMaxmemory() const {
  const SegmentHeader* h = impl_->core.header;
  const uint64_t max = h->maxmemory.load(kRelaxed);
  // used_bytes is never above the stripes' exact sum (frees are passed on
  // at once, Stripe::Charge), so over it is over for certain.
  return max != 0 && static_cast<Policy>(h->policy.load(kRelaxed)) == Policy::kNoEviction &&
         h->used_bytes.load(kRelaxed) > static_cast<int64_t>(max);
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
