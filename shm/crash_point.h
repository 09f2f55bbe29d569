// Named points inside the store where a test can make the process kill
// itself (SIGKILL, so nothing is cleaned up), to prove that a death at that
// exact instant is repaired. Off unless a test arms one: each point costs one
// load and one well-predicted branch.
#pragma once

#include <cstdint>

namespace redhub::shm {

enum class CrashPoint : uint32_t {
  kNone = 0,
  kPoolAlloc,      // inside the page-pool lock: a run's pages half assigned to a stripe
  kPoolFree,       // inside the page-pool lock: a run's pages half returned
  kSlabAlloc,      // a chunk taken off a slab's free list, slab counts not yet updated
  kSlabFree,       // a chunk pushed on a slab's free list, counts not yet updated
  kBeforePublish,  // a new entry completely written, not yet linked
  kAfterPublish,   // the new entry linked, the replaced one not yet freed
  kAfterUnlink,    // an erased entry unlinked, not yet freed
  kRehashMove,     // an entry taken out of its old bucket, not yet in the new one
  kRehashFinish,   // the new table installed, the old one not yet dropped
  kEvict,          // an evicted entry unlinked, not yet freed
  kRepairStripe,   // in the middle of repairing a stripe after a death
  kRepairPool,     // in the middle of repairing the page pool after a death
  // Multi-stripe Txns (LockKeys), in the order Unlock reaches them:
  kTxnPending,    // a participant stripe's redo log written and marked pending
  kTxnCommit,     // every participant pending, the commit store not yet done
  kTxnCommitted,  // committed (the home's one store), nothing published yet
  kTxnApply,      // one write of a participant published, the next not yet
  kTxnApplied,    // a participant's part published and its record cleared,
                  // its replaced entries and redo log not yet freed
  kRepairTxn,     // repair rolling a committed Txn's part forward, midway
  kTxnAbort,      // Txn::Abort: one staged entry freed, the others not yet
  // The ACL area (acl_area.cc), under its lock:
  kAclCopyMid,        // Update: half of the next text copied into the other copy
  kAclBeforePublish,  // Update: the next text and its length written, not yet published
  kAclLogAdd,         // LogAdd: a record half filled (hidden), not yet made visible
  // The script area (script_area.cc), under its lock:
  kScriptAppend,         // a record's header and key written past the end, its bytes not yet
  kScriptBeforePublish,  // records (or a compacted half) written, the end not yet published
  kCount,
};

const char* CrashPointName(CrashPoint point);

namespace internal {
extern uint32_t g_armed_crash_point;
[[gnu::cold, gnu::noinline]] void CrashPointReached();
}  // namespace internal

inline void MaybeCrash(CrashPoint point) {
  if (__builtin_expect(internal::g_armed_crash_point == static_cast<uint32_t>(point), 0)) {
    internal::CrashPointReached();
  }
}

// Tests only: this process SIGKILLs itself the `nth` time it reaches `point`.
void ArmCrashPointForTesting(CrashPoint point, uint32_t nth);

}  // namespace redhub::shm
