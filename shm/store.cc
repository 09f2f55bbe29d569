// Store: creating, reopening and attaching the segment, the settings
// (maxmemory, policy), taking stripe locks (Lock, LockKeys, batches), the
// lock-free read (ReadUnlocked, Prefetch), and where repairs are reported
// (SetEventSink). What a Txn then does with its locks is in txn_ops.cc and
// txn_staging.cc; operations over every stripe are in store_walk.cc.
#include "store.h"

#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "store_impl.h"

namespace redhub::shm {

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

bool Store::OverMaxmemory() const {
  const SegmentHeader* h = impl_->core.header;
  const uint64_t max = h->maxmemory.load(kRelaxed);
  // used_bytes is never above the stripes' exact sum (frees are passed on
  // at once, Stripe::Charge), so over it is over for certain.
  return max != 0 && static_cast<Policy>(h->policy.load(kRelaxed)) == Policy::kNoEviction &&
         h->used_bytes.load(kRelaxed) > static_cast<int64_t>(max);
}

uint32_t Store::StripeOf(std::string_view key) const {
  return impl_->core.StripeOfHash(impl_->core.Hash(key));
}

// ---------------------------------------------------------------------------
// Repairs and their reports

void Store::SetEventSink(std::function<void(std::string_view)> sink) {
  Impl& im = *impl_;
  im.event_sink = std::move(sink);
  if (!im.event_sink) {
    im.core.sink = nullptr;
    return;
  }
  im.core.sink = [&im](std::string_view line) { im.QueueReport(line); };
}

void Store::Impl::RepairStripe(uint32_t s) {
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

// Runs inside a stripe's or the pool's lock: only a copy into process-local
// memory, and never an exception (the caller may be a repair that must not
// leave the lock held by a live process). A report that cannot be copied is
// dropped; the repair itself is done and counted either way.
void Store::Impl::QueueReport(std::string_view line) {
  try {
    std::lock_guard<std::mutex> lock(reports_mu);
    reports.emplace_back(line);
    reports_pending.store(true, kRelaxed);
  } catch (...) {
  }
}

// With no stripe held by this thread (UnlockStripe): the sink may block, or
// use the store. Never throws, since UnlockStripe runs in destructors.
void Store::Impl::DeliverReports() {
  std::vector<std::string> lines;
  try {
    std::lock_guard<std::mutex> lock(reports_mu);
    lines.swap(reports);
    reports_pending.store(false, kRelaxed);
  } catch (...) {
    return;
  }
  for (const std::string& line : lines) {
    try {
      if (event_sink) event_sink(line);
    } catch (...) {
    }
  }
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
  // In a scope the read must see the scope's staged writes: the locked
  // path borrows its Txn.
  if (scope_ != nullptr) return ReadResult::kRetry;
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
  if (scope_ != nullptr) return Borrow();
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

Store::Txn Store::LockKeys(std::span<const std::string_view> keys, Writes writes) {
  if (scope_ != nullptr) return Borrow();
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
  txn.atomic_ = keys.size() > 1 || writes == Writes::kStaged;
  txn.count_ = static_cast<uint32_t>(count);
  if (count <= Txn::kInline) {
    std::copy(stripes, stripes + count, txn.inline_);
  } else {
    many.resize(count);
    txn.many_ = std::move(many);
  }
  return txn;
}

Store::Txn Store::LockAll() {
  if (scope_ != nullptr) Fatal("LockAll inside a scope");
  Impl& im = *impl_;
  const uint32_t stripes = im.core.g.stripes;
  std::vector<uint32_t> all(stripes);
  for (uint32_t s = 0; s < stripes; s++) {
    // Waiting for a stripe is progress, not a hang (the watchdog): the
    // holder of each is another worker's command or batch.
    im.LockStripe(s);
    all[s] = s;
  }
  Txn txn(this, now_ms_ != 0 ? now_ms_ : NowMs());
  txn.atomic_ = true;
  txn.all_ = true;
  txn.count_ = stripes;
  if (stripes <= Txn::kInline) {
    std::copy(all.begin(), all.end(), txn.inline_);
  } else {
    txn.many_ = std::move(all);
  }
  return txn;
}

Store::Txn Store::Borrow() {
  Txn txn(this, scope_->now_ms_);
  txn.outer_ = scope_;
  scope_->BeginSavepoint();
  return txn;
}

Store::Scope::Scope(Store& store, Txn& txn) : store_(store) {
  if (store.scope_ != nullptr) Fatal("a scope inside a scope");
  if (txn.store_ != &store || !txn.atomic_ || txn.outer_ != nullptr) {
    Fatal("a scope needs a staging Txn of its own store (LockKeys kStaged or LockAll)");
  }
  store.scope_ = &txn;
}

Store::Scope::~Scope() { store_.scope_ = nullptr; }

}  // namespace redhub::shm
