// The slots of a worker's CounterBlock (counters.h): the contract between
// the workers, which write them, and whoever sums them (INFO in any worker,
// the admin process). Adding a slot is safe; moving one breaks the figures
// of a running daemon across a binary upgrade.
#pragma once

#include <cstdint>

namespace redhub::shm::slots {

// The fixed slots, as one table (Pelikan's PROCESS_METRIC(ACTION) pattern):
// each row is written once and generates the slot constant (kConnectedClients
// = 0...), the INFO line (INFO clients and stats print their rows in table
// order) and the admin's Prometheus family (metrics_collector.cc, in table
// order). Slots [0, kGauges) are gauges: they count only while their worker
// lives; the others are counters, folded into retired totals when their
// worker dies.
//
//   X(name, slot, prometheus type, INFO section, INFO name, Prometheus name, help)
//
// An empty INFO or Prometheus name: not shown there. Rows in kFigureBase and
// above are not slots but figures INFO and /metrics print among the slots'
// (the store's expired keys, the maxclients setting...): each reader fills
// them in from its own source (WorkerFigure below).
#define REDHUB_WORKER_COUNTERS(X)                                                                 \
  /* INFO clients */                                                                              \
  X(kConnectedClients, 0, kGauge, kClients, "connected_clients", "redis_connected_clients",       \
    "connected_clients metric")                                                                   \
  X(kFigureMaxClients, kFigureBase + 0, kGauge, kClients, "maxclients", "redis_max_clients",      \
    "maxclients metric")                                                                          \
  X(kClientBufferBytes, 2, kGauge, kClients, "client_buffers_bytes", "", "")                      \
  X(kFigureBlockedClients, kFigureBase + 1, kGauge, kClients, "blocked_clients", "", "")          \
  /* reading paused by backpressure */                                                            \
  X(kPausedClients, 1, kGauge, kClients, "clients_paused_by_backpressure", "", "")                \
  /* TLS connections past their handshake (Redis's INFO has no TLS figures) */                    \
  X(kTlsConnectedClients, 6, kGauge, kClients, "tls_connected_clients",                           \
    "redhub_tls_connected_clients", "Clients connected over TLS, handshake done")                 \
  /* INFO stats */                                                                                \
  X(kConnectionsReceived, 16, kCounter, kStats, "total_connections_received",                     \
    "redis_connections_received_total", "total_connections_received metric")                      \
  X(kCommandsProcessed, 18, kCounter, kStats, "total_commands_processed",                         \
    "redis_commands_processed_total", "total_commands_processed metric")                          \
  X(kNetInputBytes, 19, kCounter, kStats, "total_net_input_bytes", "redis_net_input_bytes_total", \
    "total_net_input_bytes metric")                                                               \
  X(kNetOutputBytes, 20, kCounter, kStats, "total_net_output_bytes",                              \
    "redis_net_output_bytes_total", "total_net_output_bytes metric")                              \
  X(kRejectedConnections, 17, kCounter, kStats, "rejected_connections",                           \
    "redis_rejected_connections_total", "rejected_connections metric")                            \
  X(kKeyspaceHits, 25, kCounter, kStats, "keyspace_hits", "redis_keyspace_hits_total",            \
    "keyspace_hits metric")                                                                       \
  X(kKeyspaceMisses, 26, kCounter, kStats, "keyspace_misses", "redis_keyspace_misses_total",      \
    "keyspace_misses metric")                                                                     \
  X(kFigureExpiredKeys, kFigureBase + 2, kCounter, kStats, "expired_keys",                        \
    "redis_expired_keys_total", "expired_keys metric")                                            \
  X(kFigureEvictedKeys, kFigureBase + 3, kCounter, kStats, "evicted_keys",                        \
    "redis_evicted_keys_total", "evicted_keys metric")                                            \
  X(kErrorReplies, 27, kCounter, kStats, "total_error_replies", "", "")                           \
  X(kQueryLimitDisconnects, 23, kCounter, kStats, "client_query_buffer_limit_disconnections", "", \
    "")                                                                                           \
  X(kOutputLimitDisconnects, 22, kCounter, kStats, "client_output_buffer_limit_disconnections",   \
    "", "")                                                                                       \
  X(kProtocolErrors, 21, kCounter, kStats, "protocol_errors", "", "")                             \
  X(kIdleDisconnects, 24, kCounter, kStats, "idle_timeout_disconnections", "", "")                \
  /* accept4 failures other than a connection gone before it was accepted */                      \
  /* (mostly EMFILE/ENFILE: out of file descriptors) */                                           \
  X(kAcceptErrors, 33, kCounter, kStats, "accept_errors", "redhub_accept_errors_total",           \
    "accept4 failures (out of file descriptors, mostly): accepting paused")                       \
  /* TLS connections closed before their handshake completed: an OpenSSL */                       \
  /* error (a plaintext client, no or a bad client certificate, no common */                      \
  /* protocol) or tls-handshake-timeout */                                                        \
  X(kTlsHandshakeFailures, 38, kCounter, kStats, "tls_handshake_failures",                        \
    "redhub_tls_handshake_failures_total",                                                        \
    "TLS connections closed before their handshake completed (errors and timeouts)")              \
  /* Written by the master into its own block: worker slots configured, and */                    \
  /* slots whose current worker reported ready (the redhub_workers family). */                    \
  X(kConfiguredSlots, 3, kGauge, kNone, "", "", "")                                               \
  X(kServingSlots, 4, kGauge, kNone, "", "", "")                                                  \
  /* Bumped by a worker as it works (progress.h), read by the master's */                         \
  /* watchdog: a worker whose heartbeat is late but whose progress moves is */                    \
  /* busy, not hung. */                                                                           \
  X(kProgress, 5, kGauge, kNone, "", "", "")                                                      \
  X(kUnknownCommands, 28, kCounter, kNone, "", "", "")                                            \
  /* Connections closed for sending POST or Host: (an HTTP request) */                            \
  X(kCrossProtocolAborts, 34, kCounter, kStats, "cross_protocol_aborts",                          \
    "redhub_cross_protocol_aborts_total",                                                         \
    "Connections closed for sending an HTTP request (POST or Host:) to the RESP port")            \
  X(kAclDeniedAuth, 35, kCounter, kStats, "acl_access_denied_auth",                               \
    "redhub_acl_denied_auth_total", "AUTH and HELLO AUTH attempts refused (WRONGPASS)")           \
  X(kAclDeniedCommand, 36, kCounter, kStats, "acl_access_denied_cmd",                             \
    "redhub_acl_denied_commands_total", "Commands refused by the user's command rules (NOPERM)")  \
  X(kAclDeniedKey, 37, kCounter, kStats, "acl_access_denied_key", "redhub_acl_denied_keys_total", \
    "Commands refused by the user's key patterns (NOPERM)")                                       \
  X(kProtectedModeRejections, 39, kCounter, kStats, "protected_mode_rejections",                  \
    "redhub_protected_mode_rejections_total", "Connections refused by protected mode (DENIED)")   \
  /* Written by the master (redhub_reloads_total, redhub_upgrades_total). */                      \
  X(kReloadsOk, 29, kCounter, kNone, "", "", "")                                                  \
  X(kReloadsFailed, 30, kCounter, kNone, "", "", "")                                              \
  X(kUpgradesOk, 31, kCounter, kNone, "", "", "")                                                 \
  X(kUpgradesFailed, 32, kCounter, kNone, "", "", "")

inline constexpr uint32_t kGauges = 16;
// Figures, not slots: see REDHUB_WORKER_COUNTERS.
inline constexpr uint32_t kFigureBase = 1u << 20;

#define REDHUB_SLOT_CONSTANT(name, slot, type, section, info, prom, help) \
  inline constexpr uint32_t name = slot;
REDHUB_WORKER_COUNTERS(REDHUB_SLOT_CONSTANT)
#undef REDHUB_SLOT_CONSTANT

enum class MetricType { kGauge, kCounter };
enum class InfoSection { kNone, kClients, kStats };

struct CounterRow {
  uint32_t slot;  // or a figure (>= kFigureBase)
  MetricType type;
  InfoSection info_section;
  const char* info_name;        // "" if not in INFO
  const char* prometheus_name;  // "" if not a family of its own in /metrics
  const char* help;
};

inline constexpr CounterRow kCounterRows[] = {
#define REDHUB_COUNTER_ROW(name, slot, type, section, info, prom, help) \
  {slot, MetricType::type, InfoSection::section, info, prom, help},
    REDHUB_WORKER_COUNTERS(REDHUB_COUNTER_ROW)
#undef REDHUB_COUNTER_ROW
};

inline constexpr bool IsFigure(uint32_t slot) { return slot >= kFigureBase; }

// Every slot row below kGauges is a gauge and every other a counter (what
// the area folds at a death must be what Prometheus is told), and no slot row
// reaches the error, command or restart ranges below.
inline constexpr bool RowsAreConsistent() {
  for (const CounterRow& r : kCounterRows) {
    if (IsFigure(r.slot)) continue;
    if ((r.slot < kGauges) != (r.type == MetricType::kGauge) || r.slot >= 40) return false;
  }
  return true;
}
static_assert(RowsAreConsistent());

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
