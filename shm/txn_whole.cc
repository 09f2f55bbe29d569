// A Txn's view of every key it holds the stripes of, its own staged writes
// included: what KEYS, SCAN, DBSIZE, RANDOMKEY and FLUSHALL see inside EXEC
// or a script, which run on one Txn from LockAll (Store::Scope). Outside a
// scope those commands walk the store stripe by stripe (store_walk.cc); in
// one, nothing else can change the store, and they must see the writes the
// transaction staged before them, which no chain holds yet.
#include <string>
#include <vector>

#include "progress.h"
#include "store_impl.h"
#include "txn_staging.h"

namespace redhub::shm {

// One held stripe: its chains' keys without a staged op (those are this
// Txn's to show), then the keys its staged Puts and expire changes leave
// present. Expired keys are left out, as the store's walks do.
void Store::Txn::ScanHeldStripe(uint32_t s, const ScanFn& fn, bool with_expired) {
  Impl& im = *store_->impl_;
  Core& core = im.core;
  Stripe stripe(core, s);
  const bool staged = staging_ && !staging_->ops.empty();
  uint32_t v = 0;
  do {
    v = stripe.ScanStep(v, [&](std::atomic<uint64_t>* link) {
      for (uint64_t e = LinkOffset(link->load(kRelaxed)); e != 0;) {
        EntryHeader* entry = core.Entry(e);
        std::string_view key(entry->key(), entry->key_len);
        const int64_t expire = entry->expire_ms.load(kRelaxed);
        if ((with_expired || !Expired(expire, now_ms_)) &&
            (!staged || FindPending(core.Hash(key), key) == nullptr)) {
          fn(key, EntryView{std::string_view(entry->value(), entry->value_len), expire, 0});
        }
        e = LinkOffset(entry->link.load(kRelaxed));
      }
    });
  } while (v != 0);
  if (!staged) return;
  for (const PendingOp& op : staging_->ops) {
    if (op.stripe != s || op.kind == kTxnOpNone || op.kind == kTxnOpErase) continue;
    EntryHeader* e = core.Entry(op.entry);
    const int64_t expire = op.kind == kTxnOpPut ? e->expire_ms.load(kRelaxed) : op.expire;
    if (!with_expired && Expired(expire, now_ms_)) continue;
    fn(op.key, EntryView{std::string_view(e->value(), e->value_len), expire, 0});
  }
}

void Store::Txn::ForEachKey(const ScanFn& fn) {
  if (outer_ != nullptr) return outer_->ForEachKey(fn);
  const uint32_t* s = stripes();
  for (uint32_t i = 0; i < count_; i++) {
    ReportProgress();
    ScanHeldStripe(s[i], fn);
  }
}

uint64_t Store::Txn::KeyCount() {
  if (outer_ != nullptr) return outer_->KeyCount();
  const Core& core = store_->impl_->core;
  int64_t n = 0;
  const uint32_t* s = stripes();
  for (uint32_t i = 0; i < count_; i++) n += core.stripes[s[i]].keys.load(kRelaxed);
  if (staging_) {
    for (const PendingOp& op : staging_->ops) {
      // A Put with no entry under it adds a key; an Erase removes one (a
      // Put after an Erase of the same key has that entry as its base).
      if (op.kind == kTxnOpPut && op.base == 0) n++;
      if (op.kind == kTxnOpErase) n--;
    }
  }
  return n > 0 ? static_cast<uint64_t>(n) : 0;
}

void Store::Txn::EraseAll() {
  if (outer_ != nullptr) return outer_->EraseAll();
  // The keys first: each Erase changes the staging the walk reads. Expired
  // ones too (an Erase of one deletes it at once): a flush leaves no key
  // counted, as the store-wide Flush does.
  std::vector<std::string> keys;
  const uint32_t* s = stripes();
  for (uint32_t i = 0; i < count_; i++) {
    ReportProgress();
    ScanHeldStripe(
        s[i], [&](std::string_view key, const EntryView&) { keys.emplace_back(key); },
        /*with_expired=*/true);
  }
  for (const std::string& key : keys) Erase(key);
}

// SCAN in a LockAll scope: a stripe at a time, whole (the cursor's bucket
// half stays 0), so that a staged key is returned once, with its stripe.
uint64_t Store::Txn::ScanHeld(uint64_t cursor, size_t count, const ScanFn& fn) {
  if (outer_ != nullptr) return outer_->ScanHeld(cursor, count, fn);
  const uint32_t stripes = store_->impl_->core.g.stripes;
  if (count == 0) count = 10;
  size_t emitted = 0;
  for (uint64_t s = cursor >> 32; s < stripes;) {
    ReportProgress();
    ScanHeldStripe(static_cast<uint32_t>(s), [&](std::string_view key, const EntryView& view) {
      emitted++;
      fn(key, view);
    });
    s++;
    if (emitted >= count) return s < stripes ? s << 32 : 0;
  }
  return 0;
}

std::optional<std::string> Store::Txn::RandomKeyHeld() {
  if (outer_ != nullptr) return outer_->RandomKeyHeld();
  // Reservoir sampling over the whole view: O(keys), as only a transaction
  // that asks for RANDOMKEY pays it.
  uint64_t& rng = Rng();
  uint64_t seen = 0;
  std::optional<std::string> pick;
  ForEachKey([&](std::string_view key, const EntryView&) {
    if (NextRandom(rng) % ++seen == 0) pick.emplace(key);
  });
  return pick;
}

}  // namespace redhub::shm
