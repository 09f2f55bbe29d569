// The stripe's half of the multi-key Txn protocol (layout.h, README "Why a
// death is harmless"): ApplyTxnOp, the idempotent redo of one logged write,
// which the committing Txn (txn_staging.cc) and a repair rolling a committed
// Txn forward both use; and the repair's decision for a Txn whose holder
// died (DecideTxnsOfHome as a home, ResolveTxn as a participant).
#include <atomic>
#include <string>
#include <vector>

#include "crash_point.h"
#include "stripe.h"
#include "stripe_internal.h"

namespace redhub::shm {

bool Stripe::ApplyTxnOp(uint64_t entry_kind, int64_t expire_ms, bool repair,
                        std::vector<uint64_t>* unreachable) {
  uint64_t entry = entry_kind & ~uint64_t{7};
  uint64_t kind = entry_kind & 7;
  if (repair) {
    std::string why;
    if (kind < kTxnOpPut || kind > kTxnOpExpire || !ValidEntryChunk(entry, &why)) return false;
  }
  EntryHeader* e = c_.Entry(entry);
  std::string_view key(e->key(), e->key_len);
  uint64_t hash = c_.Hash(key);
  if (repair && c_.StripeOfHash(hash) != index_) return false;
  Slot slot;
  bool found = Lookup(key, hash, &slot);
  if (kind == kTxnOpPut) {
    if (found && slot.entry == entry) return true;  // published already
    int64_t expire = e->expire_ms.load(kRelaxed);
    if (found) {
      EntryHeader* old = c_.Entry(slot.entry);
      int64_t old_expire = old->expire_ms.load(kRelaxed);
      e->link.store(WithOffset(e->link.load(kRelaxed), LinkOffset(old->link.load(kRelaxed))),
                    kRelaxed);
      Publish(slot.link, entry);
      if (!repair) {
        AddCounts(0, (expire != 0) - (old_expire != 0));
        Charge(-static_cast<int64_t>(EntryCharge(slot.entry)));
        unreachable->push_back(slot.entry);
      }
      return true;
    }
    if (h_->tables[0].load(kRelaxed) == 0) return false;  // the Txn made sure of a table
    Table t = GetTable(rehashing() ? 1 : 0);
    std::atomic<uint64_t>* head = &t.slots[hash & t.mask];
    e->link.store(WithOffset(e->link.load(kRelaxed), LinkOffset(head->load(kRelaxed))), kRelaxed);
    Publish(head, entry);
    if (!repair) AddCounts(1, expire != 0);
    return true;
  }
  if (!found || slot.entry != entry) return true;  // gone already (done, evicted, expired)
  if (kind == kTxnOpErase) {
    if (repair) {
      Publish(slot.link, LinkOffset(e->link.load(kRelaxed)));
    } else {
      Unlink(slot);
      unreachable->push_back(entry);
    }
    return true;
  }
  int64_t old = e->expire_ms.load(kRelaxed);
  e->expire_ms.store(expire_ms, kRelaxed);
  if (!repair) AddCounts(0, (expire_ms != 0) - (old != 0));
  return true;
}

// As a home: every stripe still pending on a Txn of this home gets the
// decision written into its own record (committed iff this home's txn_commit
// names the Txn), so that the home may commit later Txns without a stripe
// repaired later mistaking one for its own. The CAS only ever turns a pending
// record into the one decision every process agrees on, so it needs no lock.
void Stripe::DecideTxnsOfHome(std::string* summary) {
  uint64_t committed = h_->txn_commit.load(std::memory_order_acquire);
  int decided = 0;
  for (uint32_t s = 0; s < c_.g.stripes; s++) {
    std::atomic<uint64_t>& state = c_.stripes[s].txn_state;
    uint64_t w = state.load(std::memory_order_acquire);
    if (w == 0 || TxnStateOf(w) != kTxnPending || TxnStateHome(w) != index_) continue;
    TxnState d = TxnStateSeq(w) == committed ? kTxnCommitted : kTxnAborted;
    if (state.compare_exchange_strong(w, WithTxnState(w, d), std::memory_order_acq_rel)) decided++;
  }
  if (decided != 0) *summary += "; decided " + std::to_string(decided) + " txn participants";
}

// The redo log that `log` (StripeHeader::txn_log) names: inline in the
// header, or a chunk of this stripe's with a valid header that fits it.
// nullptr (and *why) if it is neither: only a stray write can do that.
const TxnLogOp* Stripe::FindTxnLog(uint64_t log, uint32_t* count, std::string* why) const {
  if (log & 1) {
    *count = static_cast<uint32_t>(log >> 1);
    if (*count > kTxnInlineOps) {
      *why = "inline redo log count out of range";
      return nullptr;
    }
    return h_->txn_ops;
  }
  if (!c_.InPool(log)) {
    *why = "redo log offset out of the pool";
    return nullptr;
  }
  const uint32_t head = OwnedRunOf(log, "redo log ", why);
  if (head == kNoPage) return nullptr;
  const PageMeta& m = c_.meta[head];
  uint64_t rel = log - c_.PageOffset(head);
  uint64_t room = 0;
  if (m.kind == kPageSlab && m.size_class < kNumClasses && rel % kSizeClasses[m.size_class] == 0) {
    room = kSizeClasses[m.size_class];
  } else if (m.kind == kPageLarge && rel == 0) {
    room = uint64_t{m.run_pages} << c_.page_shift;
  } else {
    *why = "redo log not at a chunk boundary";
    return nullptr;
  }
  const auto* lh = c_.At<TxnLogHeader>(log);
  if (lh->magic != kTxnLogMagic ||
      sizeof(TxnLogHeader) + uint64_t{lh->count} * sizeof(TxnLogOp) > room) {
    *why = "redo log is malformed";
    return nullptr;
  }
  *count = lh->count;
  return c_.At<TxnLogOp>(log + sizeof(TxnLogHeader));
}

// This stripe's part of a multi-key Txn whose holder died: roll it forward if
// the Txn committed; otherwise its new entries are unreachable and the sweep
// that follows frees them.
void Stripe::ResolveTxn(std::string* summary) {
  std::atomic<uint64_t>& state = h_->txn_state;
  uint64_t w = state.load(std::memory_order_acquire);
  if (w == 0) return;
  if (TxnStateOf(w) == kTxnPending) {
    uint32_t home = TxnStateHome(w);
    TxnState d = kTxnAborted;
    if (home < c_.g.stripes &&
        c_.stripes[home].txn_commit.load(std::memory_order_acquire) == TxnStateSeq(w)) {
      d = kTxnCommitted;
    }
    // Fails only if the home's repair decided first: then take its decision.
    if (!state.compare_exchange_strong(w, WithTxnState(w, d), std::memory_order_acq_rel)) {
      w = state.load(std::memory_order_acquire);
    } else {
      w = WithTxnState(w, d);
    }
  }
  if (TxnStateOf(w) == kTxnCommitted) {
    std::string why;
    uint32_t count = 0;
    const TxnLogOp* ops = FindTxnLog(h_->txn_log, &count, &why);
    if (!why.empty()) {
      c_.header->validation_errors.fetch_add(1, kRelaxed);
      *summary += "; committed txn not rolled forward: " + why;
    } else {
      uint32_t bad = 0;
      for (uint32_t i = 0; i < count; i++) {
        if (!ApplyTxnOp(ops[i].entry_kind, ops[i].expire_ms, /*repair=*/true, nullptr)) bad++;
        if (i == 0) MaybeCrash(CrashPoint::kRepairTxn);
      }
      if (bad != 0) {
        c_.header->validation_errors.fetch_add(bad, kRelaxed);
        *summary += "; " + std::to_string(bad) + " invalid txn ops skipped";
      }
      *summary += "; committed txn rolled forward (" + std::to_string(count) + " writes)";
    }
  } else {
    *summary += "; uncommitted txn discarded";
  }
  state.store(0, std::memory_order_release);
}

}  // namespace redhub::shm
