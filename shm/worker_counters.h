// The slots of a worker's CounterBlock (counters.h): the contract between
// the workers, which write them, and whoever sums them (INFO in any worker,
// the admin process). Adding a slot is safe; moving one breaks the figures
// of a running daemon across a binary upgrade.
#pragma once

#include <cstdint>

namespace redhub::shm::slots {

// Gauges: [0, kGauges). They count only while their worker lives.
inline constexpr uint32_t kConnectedClients = 0;
inline constexpr uint32_t kPausedClients = 1;  // reading paused by backpressure
inline constexpr uint32_t kClientBufferBytes = 2;
// Written by the master into its own block: worker slots configured, and
// slots whose current worker reported ready.
inline constexpr uint32_t kConfiguredSlots = 3;
inline constexpr uint32_t kServingSlots = 4;
// Bumped by a worker as it works (progress.h), read by the master's watchdog:
// a worker whose heartbeat is late but whose progress moves is busy, not hung.
inline constexpr uint32_t kProgress = 5;
inline constexpr uint32_t kGauges = 16;

// Counters: folded into retired totals when their worker dies.
inline constexpr uint32_t kConnectionsReceived = 16;
inline constexpr uint32_t kRejectedConnections = 17;
inline constexpr uint32_t kCommandsProcessed = 18;
inline constexpr uint32_t kNetInputBytes = 19;
inline constexpr uint32_t kNetOutputBytes = 20;
inline constexpr uint32_t kProtocolErrors = 21;
inline constexpr uint32_t kOutputLimitDisconnects = 22;
inline constexpr uint32_t kQueryLimitDisconnects = 23;
inline constexpr uint32_t kIdleDisconnects = 24;
inline constexpr uint32_t kKeyspaceHits = 25;
inline constexpr uint32_t kKeyspaceMisses = 26;
inline constexpr uint32_t kErrorReplies = 27;
inline constexpr uint32_t kUnknownCommands = 28;
// Written by the master.
inline constexpr uint32_t kReloadsOk = 29;
inline constexpr uint32_t kReloadsFailed = 30;
inline constexpr uint32_t kUpgradesOk = 31;
inline constexpr uint32_t kUpgradesFailed = 32;
// accept4 failures other than a connection gone before it was accepted
// (mostly EMFILE/ENFILE: out of file descriptors).
inline constexpr uint32_t kAcceptErrors = 33;

// Error replies by their first word (Redis's errorstats), in this order.
inline constexpr uint32_t kErrorBase = 40;
inline constexpr const char* kErrorNames[] = {"ERR",       "OOM",     "NOPROTO", "WRONGPASS",
                                              "WRONGTYPE", "NOAUTH",  "BUSY",    "EXECABORT",
                                              "NOSCRIPT",  "READONLY"};
inline constexpr uint32_t kErrorKinds = 10;  // error_other below catches the rest
inline constexpr uint32_t kErrorOther = kErrorBase + kErrorKinds;

// Per command c (its index in the command table): calls, microseconds,
// failed calls (an error reply). The calls slot carries the command's name
// as its label.
inline constexpr uint32_t kCommandBase = 64;
inline constexpr uint32_t kCommandStride = 3;
inline constexpr uint32_t kCalls = 0;
inline constexpr uint32_t kMicros = 1;
inline constexpr uint32_t kFailed = 2;
inline constexpr uint32_t kMaxCommands = 128;

inline constexpr uint32_t CommandSlot(uint32_t command, uint32_t which) {
  return kCommandBase + command * kCommandStride + which;
}

// Per-command latency histogram: calls whose time was <= kBucketMicros[b]
// (and above the previous bound) in bucket b; not cumulative (a reader sums
// to Prometheus's cumulative buckets; +Inf is the command's calls).
inline constexpr uint32_t kHistogramBase = kCommandBase + kCommandStride * kMaxCommands;  // 448
inline constexpr uint32_t kBucketMicros[] = {10,   25,   50,    100,   250,    500,
                                             1000, 2500, 10000, 50000, 250000, 1000000};
inline constexpr uint32_t kBuckets = 12;

inline constexpr uint32_t HistogramSlot(uint32_t command, uint32_t bucket) {
  return kHistogramBase + command * kBuckets + bucket;
}

// Worker restarts by slot and reason, written by the master.
inline constexpr uint32_t kRestartBase = kHistogramBase + kBuckets * kMaxCommands;  // 1984
inline constexpr uint32_t kRestartReasons = 3;  // crash (signal), exit (non-zero status), timeout
inline constexpr const char* kRestartReasonNames[] = {"crash", "exit", "timeout"};
inline constexpr uint32_t kMaxTrackedSlots = 256;

inline constexpr uint32_t RestartSlot(uint32_t slot, uint32_t reason) {
  return kRestartBase + slot * kRestartReasons + reason;
}

inline constexpr uint32_t kSlots = kRestartBase + kRestartReasons * kMaxTrackedSlots;  // 2752

}  // namespace redhub::shm::slots
