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

// Per command c (its index in the command table): calls, microseconds,
// failed calls (an error reply). The calls slot carries the command's name
// as its label.
inline constexpr uint32_t kCommandBase = 64;
inline constexpr uint32_t kCommandStride = 3;
inline constexpr uint32_t kCalls = 0;
inline constexpr uint32_t kMicros = 1;
inline constexpr uint32_t kFailed = 2;
inline constexpr uint32_t kMaxCommands = 128;

inline constexpr uint32_t kSlots = kCommandBase + kCommandStride * kMaxCommands;  // 448

inline constexpr uint32_t CommandSlot(uint32_t command, uint32_t which) {
  return kCommandBase + command * kCommandStride + which;
}

}  // namespace redhub::shm::slots
