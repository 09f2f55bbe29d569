// CONFIG: GET only, over the settings Redis clients and tools ask about.
// (CmdConfig is as it was in commands.cc; it is to read the master's
// settings table once that exists.)
#include <string>
#include <utility>
#include <vector>

#include "command_util.h"
#include "counters.h"
#include "glob.h"
#include "store.h"

namespace redhub::worker {
namespace {

// CONFIG GET answers with the settings Redis clients and tools ask about.
Action CmdConfig(CommandContext& ctx) {
  std::string_view sub = ctx.args[1];
  if (!EqualsNoCase(sub, "GET")) {
    UnknownSubcommand(ctx.w, sub, "CONFIG");
    return Action::kNone;
  }
  if (ctx.args.size() < 3) {
    WrongArity(ctx.w, "config|get");
    return Action::kNone;
  }
  const Options& o = ctx.conn.server().options();
  const shm::Stats st = ctx.service.store().stats();
  const std::pair<std::string, std::string> params[] = {
      {"bind", ctx.service.info().bind},
      {"port", std::to_string(ctx.service.info().port)},
      {"maxclients", std::to_string(o.max_clients)},
      {"timeout", std::to_string(o.idle_timeout.count())},
      {"tcp-keepalive", std::to_string(o.tcp_keepalive.count())},
      {"proto-max-bulk-len", std::to_string(o.max_bulk_len)},
      {"client-query-buffer-limit", std::to_string(o.max_query_buffer)},
      {"client-output-buffer-limit", "normal " + std::to_string(o.output_buffer_hard_limit) + " " +
                                         std::to_string(o.output_buffer_soft_limit) + " 0"},
      {"databases", "1"},
      {"save", ""},
      {"appendonly", "no"},
      {"maxmemory", std::to_string(st.maxmemory)},
      {"maxmemory-policy", std::string(shm::NameOf(st.policy))},
      {"slowlog-log-slower-than",
       std::to_string(ctx.service.counter_area() ? ctx.service.counter_area()->SlowLogThreshold()
                                                 : -1)},
      {"slowlog-max-len",
       std::to_string(ctx.service.counter_area() ? ctx.service.counter_area()->SlowLogMaxLen()
                                                 : 0)},
  };
  std::vector<const std::pair<std::string, std::string>*> found;
  for (const auto& p : params) {
    for (size_t i = 2; i < ctx.args.size(); i++) {
      if (GlobMatch(ctx.args[i], p.first, true)) {
        found.push_back(&p);
        break;
      }
    }
  }
  ctx.w.Map(static_cast<int64_t>(found.size()));
  for (const auto* p : found) {
    ctx.w.Bulk(p->first);
    ctx.w.Bulk(p->second);
  }
  return Action::kNone;
}

// CONFIG's subcommands all run while loading (Redis: loading, stale).
const CommandSpec kConfigCommands[] = {
    // name, arity, flags, first key, last key, step, handler, slot
    {"config", -2, 0, 0, 0, 0, CmdConfig, 2, kLoading | kStale},
};

}  // namespace

std::span<const CommandSpec> ConfigCommands() { return kConfigCommands; }

}  // namespace redhub::worker
