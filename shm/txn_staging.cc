// Multi-key Txns (LockKeys with two or more keys), the half that runs in
// the Txn's own process: staging (StagePut, StageErase, StageSetExpire, and
// the redo-log room ReserveLogSlot keeps ahead of them, so that committing
// never allocates), the commit protocol when the Txn ends (Commit: logs,
// pending records, the one commit store, publish), and Abort's Discard. The
// order of stores in Commit is the crash-safety proof (layout.h, README);
// what a repair does with a Txn whose holder died is in txn_repair.cc.
#include "txn_staging.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "crash_point.h"
#include "store_impl.h"

namespace redhub::shm {

// A Txn's Staging is recycled per thread (a thread holds one Txn at a time),
// so that an MSET does not pay for heap allocations.
std::unique_ptr<Store::Txn::Staging>& Store::Txn::SpareStaging() {
  static thread_local std::unique_ptr<Staging> spare;
  return spare;
}

static uint64_t LogBytes(uint32_t capacity) {
  return sizeof(TxnLogHeader) + uint64_t{capacity} * sizeof(TxnLogOp);
}

// A redo log's chunk, reserved while staging (0: the log is inline in the
// stripe header).
static void FreeLog(Core& core, uint32_t s, uint32_t capacity, uint64_t chunk) {
  if (chunk == 0) return;
  Stripe stripe(core, s);
  stripe.ReturnChunk(chunk, stripe.ChargeFor(LogBytes(capacity)));
}

// Abort: frees what staging allocated. Nothing of it is reachable (no stripe
// record names a log, no chain a staged entry), so a death here is a death
// before the commit: the repair's sweep frees whatever is left.
void Store::Txn::Discard() {
  Impl& im = *store_->impl_;
  for (const PendingOp& op : staging_->ops) {
    if (op.kind != kTxnOpPut) continue;  // erase, expire: only recorded
    Stripe stripe(im.core, op.stripe);
    stripe.ReturnChunk(op.entry, stripe.EntryCharge(op.entry));
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
// One function on purpose: the order of its stores is the proof, and it
// reads best as the three numbered steps in a row.
void Store::Txn::Commit() {
  Impl& im = *store_->impl_;
  Staging& st = *staging_;
  auto free_log = [&](const Staging::Log& log) {
    FreeLog(im.core, log.stripe, log.capacity, log.chunk);
  };
  // Ops a savepoint took back (kTxnOpNone) are not written, published or
  // counted.
  std::erase_if(st.ops, [](const PendingOp& op) { return op.kind == kTxnOpNone; });
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
      stripe.ReturnChunk(log->chunk, stripe.ChargeFor(LogBytes(log->capacity)));
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
  uint64_t chunk = 0;
  try {
    chunk = im.WriteUnpublished(stripe, key, value_len, bytes, fill, ctx);
  } catch (...) {  // WriteUnpublished gave the chunk back; give the log slot back too
    if (p == nullptr) ReleaseLogSlot(s);
    throw;
  }
  if (chunk == 0) {
    if (p == nullptr) ReleaseLogSlot(s);
    return Status::kOom;
  }
  EntryHeader* e = im.core.Entry(chunk);
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
  const bool saved = Journal(p);
  if (p->kind == kTxnOpPut) {  // never published: free it now (fill has read it)
    FreeStaged(s, p->entry, saved);
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
        const bool saved = Journal(p);
        FreeStaged(s, p->entry, saved);
        if (p->base != 0) {
          EntryHeader* b = im.core.Entry(p->base);
          p->kind = kTxnOpErase;
          p->entry = p->base;
          p->base = 0;
          p->key = std::string_view(b->key(), b->key_len);
        } else if (saved) {  // kept in place for the savepoint, out of the commit
          p->kind = kTxnOpNone;
        } else {  // the key did not exist before this Txn: nothing to do
          staging_->Remove(p);
          ReleaseLogSlot(s);
        }
        return visible;
      }
      case kTxnOpExpire: {
        bool visible = !Expired(p->expire, now_ms_);
        Journal(p);
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
        if (expire_ms != kKeepTtl) {
          if (InSavepoint(p))
            savepoint_->expires.emplace_back(p->entry, e->expire_ms.load(kRelaxed));
          e->expire_ms.store(expire_ms, kRelaxed);
        }
        return true;
      }
      case kTxnOpExpire:
        if (Expired(p->expire, now_ms_)) return false;
        if (expire_ms != kKeepTtl) {
          Journal(p);
          p->expire = expire_ms;
        }
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

// ---------------------------------------------------------------------------
// Savepoints (a borrowed Txn inside a Store::Scope)

// An op staged before the savepoint began: changing it needs a copy first.
bool Store::Txn::InSavepoint(const PendingOp* p) const {
  return savepoint_ && savepoint_->active &&
         static_cast<size_t>(p - staging_->ops.data()) < savepoint_->ops;
}

bool Store::Txn::Journal(PendingOp* p) {
  if (!InSavepoint(p)) return false;
  savepoint_->saved.emplace_back(static_cast<uint32_t>(p - staging_->ops.data()), *p);
  return true;
}

// A staged entry replaced by a later write of its key: unreachable, freed
// now, unless the savepoint may restore the op that names it.
void Store::Txn::FreeStaged(uint32_t s, uint64_t entry, bool saved) {
  if (saved) {
    savepoint_->replaced.emplace_back(s, entry);
    return;
  }
  Stripe stripe(store_->impl_->core, s);
  stripe.ReturnChunk(entry, stripe.EntryCharge(entry));
}

void Store::Txn::BeginSavepoint() {
  if (!savepoint_) savepoint_ = std::make_unique<Savepoint>();
  if (savepoint_->active) Fatal("two Txns borrowed from one scope at once");
  savepoint_->Clear();
  savepoint_->active = true;
  savepoint_->ops = staging_ ? staging_->ops.size() : 0;
}

// keep: the borrowed Txn ended normally, its writes stay staged (the entries
// they replaced are freed). Else (its Abort) every op is as before it: the
// ops it added are dropped with their entries and log room, those it changed
// restored, the entries they had staged since freed.
void Store::Txn::EndSavepoint(bool keep) {
  Savepoint& sp = *savepoint_;
  Core& core = store_->impl_->core;
  auto free_entry = [&](uint32_t s, uint64_t entry) {
    Stripe stripe(core, s);
    stripe.ReturnChunk(entry, stripe.EntryCharge(entry));
  };
  if (keep) {
    for (const auto& [s, entry] : sp.replaced) free_entry(s, entry);
    sp.Clear();
    return;
  }
  // The expire times first: the loops below free entries staged inside the
  // savepoint, some of which these writes name.
  for (size_t i = sp.expires.size(); i-- > 0;) {
    core.Entry(sp.expires[i].first)->expire_ms.store(sp.expires[i].second, kRelaxed);
  }
  if (staging_) {
    Staging& st = *staging_;
    while (st.ops.size() > sp.ops) {
      const PendingOp op = st.ops.back();
      if (st.indexed) st.Unindex(op.hash, static_cast<uint32_t>(st.ops.size() - 1));
      st.ops.pop_back();
      if (op.kind == kTxnOpPut) free_entry(op.stripe, op.entry);
      if (op.kind != kTxnOpNone) ReleaseLogSlot(op.stripe);
    }
    for (size_t i = sp.saved.size(); i-- > 0;) {
      const auto& [pos, before] = sp.saved[i];
      PendingOp& now = st.ops[pos];
      // The entry it staged since `before` (a later save of the same op
      // names it as its `before`, and frees it on the way back).
      if (now.kind == kTxnOpPut && now.entry != before.entry) {
        free_entry(now.stripe, now.entry);
      }
      now = before;
    }
  }
  sp.Clear();
}

}  // namespace redhub::shm
