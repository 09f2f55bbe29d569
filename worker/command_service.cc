// CommandService outside Dispatch (dispatcher.cc): the event loop's
// handlers, and the figures this worker publishes into its counter block.
#include "command_service.h"

#include "acl_registry.h"
#include "counters.h"
#include "progress.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::worker {
namespace {

// The event loop's figures a worker publishes: (slot, ServerStats member).
#define REDHUB_LOOP_STATS(X)                           \
  X(kConnectedClients, connected_clients)              \
  X(kPausedClients, blocked_reading)                   \
  X(kConnectionsReceived, connections_received)        \
  X(kRejectedConnections, rejected_connections)        \
  X(kCommandsProcessed, commands_processed)            \
  X(kNetInputBytes, net_input_bytes)                   \
  X(kNetOutputBytes, net_output_bytes)                 \
  X(kProtocolErrors, protocol_errors)                  \
  X(kOutputLimitDisconnects, output_limit_disconnects) \
  X(kQueryLimitDisconnects, query_limit_disconnects)   \
  X(kIdleDisconnects, idle_disconnects)                \
  X(kAcceptErrors, accept_errors)                      \
  X(kTlsConnectedClients, tls_connected_clients)       \
  X(kTlsHandshakeFailures, tls_handshake_failures)

// Calls fn(slot, value) for every figure this worker publishes: the loop's
// (if it has started) and the service's own.
template <typename Fn>
void ForEachPublished(const ServerView* server, const CommandStats& stats, Fn&& fn) {
  namespace s = shm::slots;
  if (server != nullptr) {
    const ServerStats st = server->stats();
#define REDHUB_PUBLISH(slot, member) fn(s::slot, st.member);
    REDHUB_LOOP_STATS(REDHUB_PUBLISH)
#undef REDHUB_PUBLISH
    fn(s::kClientBufferBytes, server->client_buffer_bytes());
  }
  fn(s::kKeyspaceHits, stats.keyspace_hits);
  fn(s::kKeyspaceMisses, stats.keyspace_misses);
}

}  // namespace

CommandService::CommandService(ServiceInfo info, shm::Store* store)
    : store_(store), table_(Table().data()), prefetcher_(store, &clock_) {
  ConfigParameterList p = std::move(info.config_parameters);
  info_ = std::move(info);
  set_config_parameters(std::move(p));
}

void CommandService::PublishLoopStats() {
  if (block_ == nullptr || server_ == nullptr) return;
  ForEachPublished(server_, stats, [&](uint32_t slot, uint64_t v) { block_->Set(slot, v); });
}

std::vector<uint64_t> CommandService::Totals() {
  if (area_ != nullptr && block_ != nullptr) {
    PublishLoopStats();
    return area_->Sum();
  }
  std::vector<uint64_t> t(shm::slots::kSlots, 0);
  ForEachPublished(server_, stats, [&](uint32_t slot, uint64_t v) { t[slot] = v; });
  return t;
}

void CommandService::LabelCounters(shm::CounterArea* area) {
  const auto& table = Table();
  for (uint32_t c = 0; c < table.size() && c < shm::slots::kMaxCommands; c++) {
    area->SetLabel(shm::slots::CommandSlot(c, shm::slots::kCalls), table[c].name);
  }
}

Handlers CommandService::MakeHandlers() {
  Handlers h;
  // A connection's pipelined requests are one store batch: consecutive
  // commands on one stripe (a hot key) lock it once (Store::BeginBatch).
  h.on_command = [this](Conn& conn, const resp::Command& cmd, resp::Writer& w) {
    if (!store_->in_batch()) {
      store_->BeginBatch();
      // The batch was read at the loop's time: every command of it judges
      // expiry by that.
      if (server_ != nullptr) SetStoreClock(*server_);
      // And by the users as they were then: a change published during the
      // batch is concurrent with it, and the next batch (or tick) sees it.
      RefreshUsers();
    }
    return Dispatch(conn, cmd, w);
  };
  h.on_open = [this](Conn& conn, resp::Writer& w) { return OnOpen(conn, w); };
  h.on_start = [this](const ServerView& server) {
    server_ = &server;
    started_at = server.now();
  };
  h.on_batch_begin = [this](std::string_view requests) {
    // The watchdog's sign of life (progress.h), once per read: a command
    // that runs long reports from inside its loops.
    shm::ReportProgress();
    prefetcher_.BeginBatch(requests);
  };
  h.on_batch_end = [this] {
    if (store_->in_batch()) {
      store_->EndBatch();
      store_->set_now_ms(0);
    }
    prefetcher_.EndBatch();
  };
  // Active expiry, as Redis's serverCron does ten times a second: every
  // worker runs a short cycle, so expired keys go even if nobody reads them
  // and even if some workers are idle or dead. The budget bounds the latency
  // it adds to this worker's clients.
  h.on_tick = [this] {
    store_->ExpireCycle(shm::Store::NowMs(), std::chrono::microseconds(1000));
    PublishLoopStats();
    // A user removed or disabled on another worker: its connections here
    // close within a tick even if they send nothing.
    RefreshUsers();
    return Tick{std::chrono::milliseconds(100), Action::kNone};
  };
  return h;
}

}  // namespace redhub::worker
