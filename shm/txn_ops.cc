// Store::Txn: its lifetime (move, Unlock, Abort) and what it does to one key
// (Find, Peek, Touch, Put, PutWith, Erase, SetExpire). A Txn that does not
// stage applies each write at once, here, with the single publishing store
// the crash-safety proof rests on; a multi-key Txn hands its writes to
// txn_staging.cc. WriteUnpublished, the part of a Put that both share, is
// here too.
#include <algorithm>
#include <cstring>
#include <optional>
#include <string_view>

#include "crash_point.h"
#include "store_impl.h"
#include "txn_staging.h"

namespace redhub::shm {

Store::Txn::Txn(Store* store, int64_t now_ms)
    : store_(store), now_ms_(now_ms), lru_(LruClock(now_ms)) {}

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
    all_ = other.all_;
    staging_ = std::move(other.staging_);
    outer_ = other.outer_;
    savepoint_ = std::move(other.savepoint_);
    other.store_ = nullptr;
    other.count_ = 0;
    other.kept_ = false;
    other.all_ = false;
    other.outer_ = nullptr;
  }
  return *this;
}

Store::Txn::~Txn() { Unlock(); }

void Store::Txn::Unlock() {
  if (store_ == nullptr) return;
  if (outer_ != nullptr) {  // borrowed: its writes stay staged in the scope's Txn
    outer_->EndSavepoint(/*keep=*/true);
    outer_ = nullptr;
    store_ = nullptr;
    return;
  }
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
  all_ = false;
}

void Store::Txn::Abort() {
  if (store_ == nullptr) return;
  if (outer_ != nullptr) {  // borrowed: only what was staged through it
    outer_->EndSavepoint(/*keep=*/false);
    outer_ = nullptr;
    store_ = nullptr;
    return;
  }
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

bool Store::Txn::Holds(uint32_t stripe) const {
  if (all_) return true;
  const uint32_t* s = stripes();
  return std::binary_search(s, s + count_, stripe);
}

static void CheckHeld(bool held, uint32_t stripe) {
  if (!held) Fatal("a key of stripe %u was used through a Txn that does not hold it", stripe);
}

std::optional<EntryView> Store::Txn::FindImpl(std::string_view key, bool touch) {
  CheckHeld(store_ != nullptr, 0);
  if (outer_ != nullptr) return outer_->FindImpl(key, touch);
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

uint64_t Store::Impl::WriteUnpublished(Stripe& stripe, std::string_view key, size_t value_len,
                                       uint64_t bytes, void (*fill)(void*, char*), void* ctx) {
  uint64_t chunk = stripe.AllocChunk(bytes);
  if (chunk == 0) return 0;
  EntryHeader* e = core.Entry(chunk);
  e->key_len = static_cast<uint32_t>(key.size());
  e->value_len = static_cast<uint32_t>(value_len);
  if (!key.empty()) memcpy(e->key(), key.data(), key.size());
  try {
    fill(ctx, e->value());
  } catch (...) {  // nothing is published yet: give the chunk back
    stripe.ReturnChunk(chunk, stripe.ChargeFor(bytes));
    throw;
  }
  return chunk;
}

// The write path: make room, write the new entry completely in a fresh chunk,
// publish it with one store (in place of the old entry, or at its bucket's
// head), and only then free the old one. A death before the publish leaves an
// unreachable chunk; after it, the new value; either way a repair reclaims
// whatever is unreachable.
Status Store::Txn::PutImpl(std::string_view key, size_t value_len, int64_t expire_ms,
                           void (*fill)(void*, char*), void* ctx) {
  CheckHeld(store_ != nullptr, 0);
  if (outer_ != nullptr) return outer_->PutImpl(key, value_len, expire_ms, fill, ctx);
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
  uint64_t chunk = im.WriteUnpublished(stripe, key, value_len, bytes, fill, ctx);
  if (chunk == 0) return Status::kOom;
  EntryHeader* e = im.core.Entry(chunk);

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
    stripe.ReturnChunk(old.entry, stripe.EntryCharge(old.entry));
  } else {
    int64_t expire = expire_ms == kKeepTtl ? 0 : expire_ms;
    e->expire_ms.store(expire, kRelaxed);
    std::atomic<uint64_t>* slot = stripe.InsertSlot(hash);
    if (slot == nullptr) {  // the stripe's first table needs a page and there is none
      stripe.ReturnChunk(chunk, charge);
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
  if (outer_ != nullptr) return outer_->Erase(key);
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
  if (outer_ != nullptr) return outer_->SetExpire(key, expire_ms);
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

}  // namespace redhub::shm
