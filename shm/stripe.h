// One stripe of the store: its hash tables (two while rehashing), its
// entries, and the slabs it carves them from. Every method except the
// constructor requires the stripe's lock.
//
// The invariant that makes a death harmless: at every instant, each
// acknowledged entry is reachable from exactly one bucket of the stripe's
// tables through complete, published entries. Everything else the stripe
// keeps (slab free lists, live counts, non-full lists, counters) can be
// recomputed from the chains and page_owner, and Repair does just that. The
// one multi-store step that could break the invariant, moving an entry
// between chains, is covered by an intent record (MoveEntry).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core.h"
#include "layout.h"

namespace redhub::shm {

enum class Policy : uint32_t;

// Where an entry sits in a chain: the link word (a bucket slot or the previous
// entry's link) that points to it.
struct Slot {
  std::atomic<uint64_t>* link = nullptr;
  uint64_t entry = 0;
};

struct Table {
  uint64_t desc = 0;
  std::atomic<uint64_t>* slots = nullptr;
  uint64_t size = 0;
  uint64_t mask = 0;
};

// An eviction candidate; a higher score is a better victim.
struct Candidate {
  Slot slot;
  uint64_t score = 0;
  bool found = false;
};

size_t ClassFor(uint64_t chunk_bytes);

// xorshift64*: sampling randomness, not security.
inline uint64_t NextRandom(uint64_t& state) {
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545F4914F6CDD1DULL;
}

inline uint32_t ReverseBits(uint32_t v) {
  v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);
  v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);
  v = ((v >> 4) & 0x0F0F0F0Fu) | ((v & 0x0F0F0F0Fu) << 4);
  return __builtin_bswap32(v);
}

class Stripe {
 public:
  Stripe(const Core& core, uint32_t index) : c_(core), index_(index), h_(&core.stripes[index]) {}

  uint32_t index() const { return index_; }
  StripeHeader* header() const { return h_; }
  bool rehashing() const { return h_->tables[1].load(std::memory_order_relaxed) != 0; }

  // --- Entries -------------------------------------------------------------
  bool Lookup(std::string_view key, uint64_t hash, Slot* slot) const;
  // Lookup without the lock, for a seqlock read: the stripe may change under
  // it, so every offset is checked against the segment before it is followed
  // and the walk is bounded. kInvalid: something read was torn (the caller
  // retries or takes the lock); kFound and kAbsent mean something only if
  // the stripe's version did not change meanwhile.
  enum class Probe { kFound, kAbsent, kInvalid };
  // Without the lock: the bucket of `hash` in the table `desc` names, or
  // nullptr if the descriptor (read racily) does not describe a table that
  // lies inside the segment.
  const std::atomic<uint64_t>* BucketUnlocked(uint64_t desc, uint64_t hash) const;
  Probe LookupUnlocked(std::string_view key, uint64_t hash, uint64_t* entry) const;
  // The bucket slot a new key is linked into (the new table while rehashing);
  // creates the first table. nullptr if that needs a page and there is none.
  std::atomic<uint64_t>* InsertSlot(uint64_t hash);
  // The single store that makes `entry` (completely written, its link already
  // naming what follows) part of the chain in place of what `link` named.
  static void Publish(std::atomic<uint64_t>* link, uint64_t entry) {
    link->store(WithOffset(link->load(std::memory_order_relaxed), entry),
                std::memory_order_release);
  }
  // Takes the entry out of its chain (one store) and out of the counters. Its
  // chunk is still allocated: FreeChunk it (or defer that).
  void Unlink(const Slot& slot);
  void AddCounts(int64_t keys, int64_t expires);

  // --- Multi-key Txns (layout.h) -------------------------------------------
  // Performs one redo-log op on this stripe: publishes a staged entry in
  // place of the key's current one (or inserts it), unlinks an entry, or sets
  // its expire time. Idempotent (an op already done is skipped), needs no
  // allocation (a Put's key must have a table: the Txn made sure). Unless
  // `repair`, keeps the counters and appends chunks that became unreachable
  // to `unreachable` (the caller frees them); a repair validates the op first
  // and leaves counters and chunks to its sweep. False if the op was invalid.
  bool ApplyTxnOp(uint64_t entry_kind, int64_t expire_ms, bool repair,
                  std::vector<uint64_t>* unreachable);

  // --- Memory --------------------------------------------------------------
  // Charges the stripe's and the global used bytes. 0 if the pool is empty.
  uint64_t AllocChunk(uint64_t bytes);
  // Does not give back the chunk's charge: Unlink does that for an entry.
  void FreeChunk(uint64_t offset);
  // Takes back `charge` (what AllocChunk charged for the chunk), then frees
  // it: a chunk no chain reaches or will reach again (a replaced or
  // unpublished entry, a redo log, a table).
  void ReturnChunk(uint64_t offset, uint64_t charge);
  uint64_t ChargeFor(uint64_t chunk_bytes) const;
  uint64_t EntryCharge(uint64_t entry) const;
  void Charge(int64_t bytes);
  // What a stripe may hold back from the store-wide used_bytes (see Charge):
  // its `unflushed` stays below this in absolute value.
  static int64_t UnflushedLimit(const Core& core);

  // --- Tables --------------------------------------------------------------
  // Moves up to `buckets` non-empty buckets from the old table to the new one.
  void RehashStep(int buckets);
  // Grows at load factor 1, shrinks under 1/10, drops the tables when empty.
  void MaybeResize();
  // Empties the stripe (FLUSHALL). Returns the keys removed.
  uint64_t Clear();

  // --- Iteration -----------------------------------------------------------
  // One step of Redis's reverse-binary scan over both tables from cursor v:
  // calls fn(bucket link) for each bucket of the step, returns the next v (0
  // when the stripe is done).
  template <typename Fn>
  uint32_t ScanStep(uint32_t v, Fn&& fn);
  bool Sample(Policy policy, int want, uint32_t lru_now, uint64_t& rng, Candidate* best) const;
  // A uniformly-ish random entry; false if the stripe is empty.
  bool RandomEntry(uint64_t& rng, Slot* slot) const;

  // --- Crash repair --------------------------------------------------------
  // After the previous lock holder died: finish or undo its half-done step,
  // validate the chains, rebuild free lists and counters from a sweep of the
  // stripe's pages. Appends a human-readable summary.
  void Repair(std::string* summary);
  // Checks every invariant without changing anything (a live lock holder must
  // have left none broken).
  void Check(std::vector<std::string>* errors);

 private:
  struct SweepResult;

  Table GetTable(int i) const;
  uint64_t AllocTable(uint32_t log2);
  void FreeTable(uint64_t desc);
  void StartRehash(uint32_t log2);
  void FinishRehash();
  void MoveEntry(std::atomic<uint64_t>* from, uint64_t entry, uint64_t to_desc, uint32_t to_bucket);
  // A run of `pages` from the pool for this stripe, its head still of kind
  // kPageRunHead (the caller formats it and sets the kind last); kNoPage if
  // the pool has no run that long.
  uint32_t TakeRun(uint64_t pages);
  uint32_t NewSlab(size_t cls);
  void PushNonfull(size_t cls, uint32_t head);
  void RemoveNonfull(size_t cls, uint32_t head);
  void ReleaseRun(uint32_t head);

  // Validation shared by Repair and Check (audit.cc).
  // The first page of the run that holds `offset` (in the pool), if this
  // stripe owns that run; else kNoPage, and *why is `what` + the reason.
  uint32_t OwnedRunOf(uint64_t offset, const char* what, std::string* why) const;
  bool ValidTableDesc(uint64_t desc, std::string* why) const;
  bool ValidEntryChunk(uint64_t offset, std::string* why) const;
  void Walk(bool repair, SweepResult* result);
  void ResolveIntent(std::string* summary);
  void DecideTxnsOfHome(std::string* summary);
  void ResolveTxn(std::string* summary);
  const TxnLogOp* FindTxnLog(uint64_t log, uint32_t* count, std::string* why) const;
  void RebuildSlabs(const SweepResult& result, std::string* summary);
  void CheckSlabs(const SweepResult& result, std::vector<std::string>* errors);
  std::string Where() const { return "stripe " + std::to_string(index_) + ": "; }

  const Core& c_;
  uint32_t index_;
  StripeHeader* h_;
};

template <typename Fn>
uint32_t Stripe::ScanStep(uint32_t v, Fn&& fn) {
  auto next = [](uint32_t v, uint64_t mask) {
    v |= ~static_cast<uint32_t>(mask);
    v = ReverseBits(v);
    v++;
    return ReverseBits(v);
  };
  Table t0 = GetTable(0), t1 = GetTable(1);
  if (t0.desc == 0) return 0;
  if (t1.desc == 0) {
    fn(&t0.slots[v & t0.mask]);
    return next(v, t0.mask);
  }
  if (t0.size > t1.size) std::swap(t0, t1);
  fn(&t0.slots[v & t0.mask]);
  // Then every bucket of the larger table that the smaller one's expands to.
  do {
    fn(&t1.slots[v & t1.mask]);
    v = next(v, t1.mask);
  } while (v & (t0.mask ^ t1.mask));
  return v;
}

}  // namespace redhub::shm
