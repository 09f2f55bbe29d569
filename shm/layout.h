// The bytes of the shared-memory segment: every struct here lives in shared
// memory, is read by several processes that may map it at different
// addresses, and so holds offsets (from the segment's first byte), never
// pointers. A change to any struct or constant here that alters the bytes is a
// new kLayoutVersion: a binary refuses to attach to a segment of another one.
//
//   [SegmentHeader | StripeHeader x stripes | page owner x pages |
//    PageMeta x pages | pages (page_size each, page aligned)]
//
// Which lock guards what:
//   SegmentHeader::pool.mu  the pool's free runs, and page_owner / the
//                           run-level PageMeta fields of every page.
//   StripeHeader::mu        the stripe's tables, entries, intent, counters,
//                           and the slab fields of the runs the stripe owns.
// Lock order: stripes in ascending index order, then the pool (a leaf).
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace redhub::shm {

inline constexpr uint64_t kMagic = 0x314D485342554852ULL;  // "RHUBSHM1", little-endian
// 2: multi-key txn records in StripeHeader; 3: StripeHeader::version
inline constexpr uint32_t kLayoutVersion = 3;

// ---------------------------------------------------------------------------
// Links. A link is one aligned 8-byte word: the offset of the next entry in a
// chain, divided by 8, in the low 40 bits (so segments up to 8 TB), and the
// owning entry's LRU clock in the high 24 bits. Bucket slots use the same
// format with the clock bits zero. Every change to a chain is one store of one
// link, which is what makes a chain consistent at every instant.
inline constexpr int kLinkOffsetBits = 40;
inline constexpr uint64_t kLinkOffsetMask = (uint64_t{1} << kLinkOffsetBits) - 1;
inline constexpr uint64_t kMaxSegmentBytes = uint64_t{1} << (kLinkOffsetBits + 3);
inline constexpr uint32_t kLruClockMax = (1u << 24) - 1;

inline uint64_t LinkOffset(uint64_t link) { return (link & kLinkOffsetMask) << 3; }
inline uint32_t LinkLru(uint64_t link) { return static_cast<uint32_t>(link >> kLinkOffsetBits); }
inline uint64_t MakeLink(uint64_t offset, uint32_t lru) {
  return (offset >> 3) | (static_cast<uint64_t>(lru) << kLinkOffsetBits);
}
inline uint64_t WithOffset(uint64_t link, uint64_t offset) {
  return (link & ~kLinkOffsetMask) | (offset >> 3);
}

// ---------------------------------------------------------------------------
// An entry: header, key bytes, value bytes, in one chunk. It is written
// completely before it is linked into a chain and never written in place
// afterwards, except for `link` (next pointer and LRU clock) and `expire_ms`,
// both single aligned 8-byte stores.
struct EntryHeader {
  std::atomic<uint64_t> link;
  std::atomic<int64_t> expire_ms;  // absolute unix ms; 0 = no expiry
  uint32_t key_len;
  uint32_t value_len;

  char* key() { return reinterpret_cast<char*>(this + 1); }
  char* value() { return key() + key_len; }
};
static_assert(sizeof(EntryHeader) == 24);
inline constexpr uint32_t kEntryHeaderBytes = sizeof(EntryHeader);

// ---------------------------------------------------------------------------
// Size classes for chunks carved from slabs: 8-byte steps up to 128, then four
// classes per doubling up to kMaxSmallChunk. Bigger chunks get a run of whole
// pages each.
inline constexpr uint32_t kSizeClasses[] = {
    24,   32,   40,   48,   56,   64,   72,   80,   88,   96,   104,   112,   120,   128,
    160,  192,  224,  256,  320,  384,  448,  512,  640,  768,  896,   1024,  1280,  1536,
    1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384};
inline constexpr int kNumClasses = sizeof(kSizeClasses) / sizeof(kSizeClasses[0]);
inline constexpr uint32_t kMaxSmallChunk = kSizeClasses[kNumClasses - 1];

// ---------------------------------------------------------------------------
// Pages. page_owner[p] is 0 for a free page and stripe + 1 for a page of a run
// owned by a stripe. It is a separate array so that a stripe's repair can find
// its runs by scanning 4 bytes per page.
inline constexpr uint32_t kNoOwner = 0;
inline constexpr uint32_t kNoPage = 0xFFFFFFFF;

enum PageKind : uint8_t {
  kPageFree = 0,     // head or last page of a free run (pool)
  kPageRunHead = 1,  // head of a run the pool handed out, not yet formatted by its stripe
  kPageTail = 2,     // a non-head page of an allocated run
  kPageSlab = 3,     // head of a slab: chunks of one size class
  kPageLarge = 4,    // head of a run holding one large entry
  kPageTable = 5,    // head of a run holding one bucket array
};

struct PageMeta {
  uint32_t head;       // first page of the run this page belongs to (every page)
  uint32_t run_pages;  // head: pages in the run
  uint8_t kind;        // head: PageKind
  uint8_t size_class;  // slab head: index into kSizeClasses
  uint16_t reserved;
  uint32_t live;       // slab head: chunks in use
  uint32_t free_slot;  // slab head: first free slot + 1 (0 = none); free slots chain
                       // through their first 4 bytes the same way
  uint32_t prev;       // slab head: stripe's non-full list for the class; free run:
  uint32_t next;       // the pool's bin list. Page index + 1, 0 = none.
};
static_assert(sizeof(PageMeta) == 28);

// ---------------------------------------------------------------------------
// The page pool (global, rarely taken).
inline constexpr int kPoolBins = 64;

enum PoolOp : uint32_t { kPoolOpNone = 0, kPoolOpAlloc = 1, kPoolOpFree = 2 };

// Written before the pool changes page_owner for a run, cleared after: a
// repair redoes the change, then rebuilds the free runs from page_owner.
struct PoolIntent {
  std::atomic<uint32_t> op;
  uint32_t owner;
  uint32_t start;
  uint32_t pages;
};

struct alignas(64) PoolHeader {
  pthread_mutex_t mu;  // robust, process-shared
  std::atomic<uint64_t> free_pages;
  PoolIntent intent;
  uint32_t bins[kPoolBins];  // first free run (page index + 1) by run length
};

// ---------------------------------------------------------------------------
// A stripe: a lock, its hash tables and its slabs.

// A table descriptor packs the bucket array's offset / 8 (high 56 bits) and
// log2 of its bucket count (low 8 bits) in one word, so that switching tables
// is one store. 0 = no table.
inline uint64_t MakeTableDesc(uint64_t offset, uint32_t log2) { return (offset >> 3) << 8 | log2; }
inline uint64_t TableOffset(uint64_t desc) { return (desc >> 8) << 3; }
inline uint32_t TableLog2(uint64_t desc) { return static_cast<uint32_t>(desc & 0xFF); }
inline constexpr uint32_t kMinTableLog2 = 2;
inline constexpr uint32_t kMaxTableLog2 = 30;

// Moving an entry from one chain to another (rehash) takes three stores; this
// record lets a repair finish the move. See Stripe::MoveEntry.
struct MoveIntent {
  std::atomic<uint32_t> active;
  uint32_t to_bucket;
  uint64_t entry;      // offset of the entry being moved
  uint64_t from_slot;  // offset of the link word that pointed to it
  uint64_t to_table;   // descriptor of the destination table
};

// ---------------------------------------------------------------------------
// Multi-key transactions (Txns from Store::LockKeys): all of their writes or
// none survive a death. Each participant stripe writes its part as a redo log
// (a chunk of its own: TxnLogHeader, then TxnLogOp x count) whose new entries
// are complete but unreachable, then marks itself pending with one store of
// txn_state; the Txn commits with one store of its home stripe's (the lowest
// stripe it holds) txn_commit; then each participant publishes its part and
// clears txn_state. A repair of a stripe left pending asks the home whether
// the Txn committed (rolls its part forward) or not (the sweep drops the
// unreachable new entries). The home's repair first writes that decision into
// every participant still pending, so a home reused later can never be asked
// about an older Txn.
//
// txn_state: 0 = none; else seq << 13 | home << 2 | TxnState.
enum TxnState : uint64_t { kTxnNone = 0, kTxnPending = 1, kTxnCommitted = 2, kTxnAborted = 3 };
inline constexpr int kTxnHomeBits = 11;  // stripes <= 2000 < 2^11
inline uint64_t MakeTxnState(uint64_t seq, uint32_t home, TxnState st) {
  return seq << (kTxnHomeBits + 2) | uint64_t{home} << 2 | st;
}
inline uint64_t TxnStateSeq(uint64_t w) { return w >> (kTxnHomeBits + 2); }
inline uint32_t TxnStateHome(uint64_t w) {
  return static_cast<uint32_t>((w >> 2) & ((1u << kTxnHomeBits) - 1));
}
inline TxnState TxnStateOf(uint64_t w) { return static_cast<TxnState>(w & 3); }
inline uint64_t WithTxnState(uint64_t w, TxnState st) { return (w & ~uint64_t{3}) | st; }

// One write of a Txn to one stripe. `entry_kind`: an entry's offset with the
// op in the low 3 bits. kTxnOpPut: the new, unpublished entry (it replaces
// the key's current entry, or is inserted); kTxnOpErase / kTxnOpExpire: the
// key's entry when the Txn ran (the key is read from it), erased or given
// `expire_ms`. At most one op per key.
enum TxnOpKind : uint64_t { kTxnOpPut = 1, kTxnOpErase = 2, kTxnOpExpire = 3 };
struct TxnLogOp {
  uint64_t entry_kind;
  int64_t expire_ms;
};
struct TxnLogHeader {
  uint32_t magic;
  uint32_t count;
};
inline constexpr uint32_t kTxnLogMagic = 0x4E584854;  // "THXN"
// Up to this many ops live in the stripe header itself (txn_ops), so that
// the usual MSET / RENAME (a key or two per stripe) allocates no log.
inline constexpr uint32_t kTxnInlineOps = 4;
// txn_log: a log chunk's offset, or (count << 1 | 1) for ops in txn_ops.
inline uint64_t InlineTxnLog(uint32_t count) { return uint64_t{count} << 1 | 1; }

struct alignas(64) StripeHeader {
  pthread_mutex_t mu;  // robust, process-shared
  // Odd while a process holds `mu` (it may be changing the stripe), and
  // changed by every lock and unlock: a seqlock for reads that take no lock
  // (Store::ReadUnlocked). A holder that dies leaves it odd; the next locker
  // makes it odd again (a new value) before repairing, and even at unlock.
  std::atomic<uint64_t> version;
  // Processes blocked (or about to block) on `mu`: a hint for fairness (see
  // Store::EndBatch). A waiter killed while waiting leaves it too high; the
  // next EndBatch that waits in vain for a taker clears it (one bounded
  // spin). Never decremented below zero.
  std::atomic<uint32_t> waiters;
  // tables[1] != 0 while rehashing from tables[0] into tables[1].
  std::atomic<uint64_t> tables[2];
  std::atomic<uint64_t> rehash_index;
  // Exact under the lock; read without it (relaxed) for statistics.
  std::atomic<uint64_t> keys;
  std::atomic<uint64_t> expires;
  std::atomic<uint64_t> used;  // bytes of chunks and runs in use
  // The part of `used`'s changes not yet added to SegmentHeader::used_bytes:
  // the store-wide counter is written once per few KB of change instead of
  // at every write (one cache line all workers' writes would bounce). See
  // Stripe::Charge for the bound this keeps on the maxmemory check.
  std::atomic<int64_t> unflushed;
  MoveIntent intent;
  // Multi-key Txn record (see above). txn_log: this stripe's redo log (a
  // chunk, or inline in txn_ops), valid while txn_state != 0. As a home:
  // txn_seq is the last sequence number issued, txn_commit the last one
  // committed.
  std::atomic<uint64_t> txn_state;
  uint64_t txn_log;
  std::atomic<uint64_t> txn_commit;
  uint64_t txn_seq;
  TxnLogOp txn_ops[kTxnInlineOps];
  uint32_t nonfull[kNumClasses];  // first slab with a free chunk (page index + 1)
};

// ---------------------------------------------------------------------------
struct alignas(64) SegmentHeader {
  std::atomic<uint64_t> magic;  // stored last by Create
  uint32_t layout_version;
  uint32_t header_bytes;
  uint32_t stripe_header_bytes;
  uint32_t page_meta_bytes;
  uint32_t stripes;
  uint32_t page_size;
  uint64_t pages;
  uint64_t total_bytes;
  uint64_t stripes_offset;
  uint64_t owner_offset;
  uint64_t meta_offset;
  uint64_t pool_offset;
  uint64_t hash_seed;
  int64_t created_ms;
  std::atomic<uint64_t> maxmemory;
  std::atomic<uint32_t> policy;

  // Counters. used_bytes plus every stripe's `unflushed` is the sum of the
  // stripes' `used`; used_bytes alone is what the maxmemory check reads. It
  // can be off by one operation after a crash until ResyncCounters
  // (resync_needed set).
  alignas(64) std::atomic<int64_t> used_bytes;
  alignas(64) std::atomic<uint64_t> repairs;
  std::atomic<uint64_t> pool_repairs;
  std::atomic<uint64_t> expired;
  std::atomic<uint64_t> evicted;
  std::atomic<uint64_t> validation_errors;
  std::atomic<uint32_t> resync_needed;
  std::atomic<uint64_t> expire_cursor;

  PoolHeader pool;
};

}  // namespace redhub::shm
