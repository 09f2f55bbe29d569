#include "crash_point.h"

#include <signal.h>
#include <unistd.h>

namespace redhub::shm {
namespace internal {

uint32_t g_armed_crash_point = 0;
static uint32_t g_crash_countdown = 0;

void CrashPointReached() {
  if (--g_crash_countdown != 0) return;
  kill(getpid(), SIGKILL);
  for (;;) pause();
}

}  // namespace internal

const char* CrashPointName(CrashPoint point) {
  switch (point) {
    case CrashPoint::kNone:
      return "none";
    case CrashPoint::kPoolAlloc:
      return "pool-alloc";
    case CrashPoint::kPoolFree:
      return "pool-free";
    case CrashPoint::kSlabAlloc:
      return "slab-alloc";
    case CrashPoint::kSlabFree:
      return "slab-free";
    case CrashPoint::kBeforePublish:
      return "before-publish";
    case CrashPoint::kAfterPublish:
      return "after-publish";
    case CrashPoint::kAfterUnlink:
      return "after-unlink";
    case CrashPoint::kRehashMove:
      return "rehash-move";
    case CrashPoint::kRehashFinish:
      return "rehash-finish";
    case CrashPoint::kEvict:
      return "evict";
    case CrashPoint::kRepairStripe:
      return "repair-stripe";
    case CrashPoint::kRepairPool:
      return "repair-pool";
    case CrashPoint::kTxnPending:
      return "txn-pending";
    case CrashPoint::kTxnCommit:
      return "txn-commit";
    case CrashPoint::kTxnCommitted:
      return "txn-committed";
    case CrashPoint::kTxnApply:
      return "txn-apply";
    case CrashPoint::kTxnApplied:
      return "txn-applied";
    case CrashPoint::kRepairTxn:
      return "repair-txn";
    case CrashPoint::kTxnAbort:
      return "txn-abort";
    case CrashPoint::kAclCopyMid:
      return "acl-copy-mid";
    case CrashPoint::kAclBeforePublish:
      return "acl-before-publish";
    case CrashPoint::kAclLogAdd:
      return "acl-log-add";
    case CrashPoint::kScriptAppend:
      return "script-append";
    case CrashPoint::kScriptBeforePublish:
      return "script-before-publish";
    case CrashPoint::kCount:
      break;
  }
  return "?";
}

void ArmCrashPointForTesting(CrashPoint point, uint32_t nth) {
  internal::g_crash_countdown = nth == 0 ? 1 : nth;
  internal::g_armed_crash_point = static_cast<uint32_t>(point);
}

}  // namespace redhub::shm
