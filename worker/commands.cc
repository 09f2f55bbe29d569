#include "commands.h"

#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "command_util.h"
#include "counters.h"
#include "daemon_cpu.h"
#include "event_loop.h"
#include "glob.h"
#include "log.h"
#include "progress.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::worker {
namespace {

void UnknownCommand(resp::Writer& w, std::span<const std::string_view> args) {
  std::string msg = "ERR unknown command '";
  msg.append(args[0].substr(0, 128));
  msg += "', with args beginning with: ";
  for (size_t i = 1; i < args.size() && msg.size() < 256; i++) {
    msg += '\'';
    msg.append(args[i].substr(0, 128));
    msg += "' ";
  }
  w.Error(msg);
}

// ---- connection ----

Action CmdPing(CommandContext& ctx) {
  if (ctx.args.size() > 2) {
    WrongArity(ctx.w, "ping");
  } else if (ctx.args.size() == 2) {
    ctx.w.Bulk(ctx.args[1]);
  } else {
    ctx.w.String("PONG");
  }
  return Action::kNone;
}

Action CmdEcho(CommandContext& ctx) {
  ctx.w.Bulk(ctx.args[1]);
  return Action::kNone;
}

Action CmdQuit(CommandContext& ctx) {
  ctx.w.OK();
  return Action::kClose;
}

Action CmdSelect(CommandContext& ctx) {
  int64_t db;
  if (!ParseInt64(ctx.args[1], &db)) {
    ctx.w.Error("ERR value is not an integer or out of range");
  } else if (db != 0) {
    ctx.w.Error("ERR DB index is out of range");
  } else {
    ctx.w.OK();
  }
  return Action::kNone;
}

void WriteHello(CommandContext& ctx) {
  ctx.w.Map(7);
  ctx.w.Bulk("server");
  ctx.w.Bulk("redhub");
  ctx.w.Bulk("version");
  ctx.w.Bulk(ctx.service.info().version);
  ctx.w.Bulk("proto");
  ctx.w.Int(ctx.conn.protocol());
  ctx.w.Bulk("id");
  ctx.w.Int(static_cast<int64_t>(ctx.conn.id()));
  ctx.w.Bulk("mode");
  ctx.w.Bulk("standalone");
  ctx.w.Bulk("role");
  ctx.w.Bulk("master");
  ctx.w.Bulk("modules");
  ctx.w.Array(0);
}

// CLIENT LIST prints one client per line, fields separated by spaces: a
// name with a space, a newline or a control byte could forge fields or
// whole lines. Redis's validateClientName, for CLIENT SETNAME and HELLO
// SETNAME alike.
constexpr std::string_view kErrClientName =
    "ERR Client names cannot contain spaces, newlines or special characters.";

bool ValidClientName(std::string_view name) {
  for (char ch : name) {
    if (ch < '!' || ch > '~') return false;
  }
  return true;
}

// As Redis 7.0's helloCommand: the options are checked in order, AUTH
// authenticated and SETNAME's name validated as each is met, and only when
// all pass are the name and the protocol set. An invalid name fails HELLO
// as a whole: no protocol switch, no name.
Action CmdHello(CommandContext& ctx) {
  int64_t proto = ctx.conn.protocol();
  size_t i = 1;
  if (ctx.args.size() >= 2) {
    if (!ParseInt64(ctx.args[1], &proto)) {
      ctx.w.Error("ERR Protocol version is not an integer or out of range");
      return Action::kNone;
    }
    if (proto < 2 || proto > 3) {
      ctx.w.Error("NOPROTO unsupported protocol version");
      return Action::kNone;
    }
    i = 2;
  }
  std::string_view name;
  bool set_name = false;
  for (; i < ctx.args.size(); i++) {
    bool more = i + 1 < ctx.args.size();
    if (EqualsNoCase(ctx.args[i], "AUTH") && i + 2 < ctx.args.size()) {
      // As Redis 7.0.15, each option in turn, AUTH too. No ACL users yet:
      // only the default user exists, with no password (nopass: any
      // password is accepted, as Redis's default user).
      if (ctx.args[i + 1] != "default") {
        ctx.w.Error("WRONGPASS invalid username-password pair or user is disabled.");
        return Action::kNone;
      }
      i += 2;
    } else if (EqualsNoCase(ctx.args[i], "SETNAME") && more) {
      name = ctx.args[++i];
      if (!ValidClientName(name)) {
        ctx.w.Error(kErrClientName);
        return Action::kNone;
      }
      set_name = true;
    } else {
      ctx.w.Error("ERR Syntax error in HELLO option '" + std::string(ctx.args[i]) + "'");
      return Action::kNone;
    }
  }
  if (set_name) ctx.conn.set_name(std::string(name));
  ctx.conn.set_protocol(static_cast<int>(proto));
  WriteHello(ctx);
  return Action::kNone;
}

void WriteClientInfo(std::string& out, const ClientInfo& info, const CommandService& svc,
                     std::string_view current_cmd) {
  const Conn& c = *info.conn;
  out += "id=" + std::to_string(c.id());
  out += " addr=" + c.remote_addr();
  out += " laddr=" + c.local_addr();
  out += " fd=" + std::to_string(c.fd());
  out += " name=" + c.name();
  out += " age=" + std::to_string(c.age_seconds());
  out += " idle=" + std::to_string(c.idle_seconds());
  out += " flags=N db=0 sub=0 psub=0 ssub=0 multi=-1";
  out += " qbuf=" + std::to_string(info.query_buffer);
  out += " qbuf-free=" + std::to_string(info.query_buffer_free);
  out += " obl=0 oll=0 omem=" + std::to_string(info.output_pending);
  out += " tot-mem=" + std::to_string(info.memory);
  out += " events=r";
  if (info.output_pending > 0) out += 'w';
  out += " cmd=" + std::string(current_cmd);
  out += " user=default redir=-1 resp=" + std::to_string(c.protocol());
  out += " worker=" + std::to_string(svc.info().worker_slot);
  out += " pid=" + std::to_string(getpid());
  out += '\n';
}

Action CmdClient(CommandContext& ctx) {
  std::string_view sub = ctx.args[1];
  Conn& conn = ctx.conn;
  if (EqualsNoCase(sub, "ID") && ctx.args.size() == 2) {
    ctx.w.Int(static_cast<int64_t>(conn.id()));
  } else if (EqualsNoCase(sub, "GETNAME") && ctx.args.size() == 2) {
    if (conn.name().empty()) {
      ctx.w.Null();
    } else {
      ctx.w.Bulk(conn.name());
    }
  } else if (EqualsNoCase(sub, "SETNAME") && ctx.args.size() == 3) {
    std::string_view name = ctx.args[2];
    if (!ValidClientName(name)) {
      ctx.w.Error(kErrClientName);
      return Action::kNone;
    }
    conn.set_name(std::string(name));
    ctx.w.OK();
  } else if (EqualsNoCase(sub, "INFO") && ctx.args.size() == 2) {
    std::string line;
    WriteClientInfo(line, conn.server().Describe(conn), ctx.service, "client|info");
    ctx.w.Verbatim("txt", line);
  } else if (EqualsNoCase(sub, "LIST") && ctx.args.size() == 2) {
    std::string text;
    conn.server().ForEachClient([&](const ClientInfo& c) {
      WriteClientInfo(text, c, ctx.service, c.conn == &conn ? "client|list" : "NULL");
    });
    ctx.w.Verbatim("txt", text);
  } else if (EqualsNoCase(sub, "ID") || EqualsNoCase(sub, "GETNAME") ||
             EqualsNoCase(sub, "SETNAME") || EqualsNoCase(sub, "INFO") ||
             EqualsNoCase(sub, "LIST")) {
    std::string name = "client|" + std::string(sub);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    WrongArity(ctx.w, name);
  } else {
    UnknownSubcommand(ctx.w, sub, "CLIENT");
  }
  return Action::kNone;
}

// ---- transactions ----
//
// Not supported yet. Running the commands between MULTI and EXEC one by one
// would apply some of them before the client learns that its transaction
// failed; instead MULTI is answered with an error and puts the connection
// in a state where Dispatch refuses every command unrun, until EXEC
// (EXECABORT, Redis's "discarded" error, so client libraries raise) or
// DISCARD ends it. QUIT still works inside, as in Redis (RESET is not
// supported). WATCH and UNWATCH answer an error, so nothing relies on them.

constexpr std::string_view kErrMultiUnsupported =
    "ERR MULTI is not supported yet: the commands until EXEC or DISCARD will not be run";
constexpr std::string_view kErrNotRunInMulti =
    "ERR command not run: MULTI is not supported yet, and this connection is in one until "
    "EXEC or DISCARD";

bool InMulti(const Conn& c) { return (c.session_flags() & kSessionInMulti) != 0; }

void EndMulti(Conn& c) { c.set_session_flags(c.session_flags() & ~kSessionInMulti); }

Action CmdMulti(CommandContext& ctx) {
  if (InMulti(ctx.conn)) {
    ctx.w.Error("ERR MULTI calls can not be nested");
    return Action::kNone;
  }
  ctx.conn.set_session_flags(ctx.conn.session_flags() | kSessionInMulti);
  ctx.w.Error(kErrMultiUnsupported);
  return Action::kNone;
}

Action CmdExec(CommandContext& ctx) {
  if (!InMulti(ctx.conn)) {
    ctx.w.Error("ERR EXEC without MULTI");
    return Action::kNone;
  }
  EndMulti(ctx.conn);
  ctx.w.Error("EXECABORT Transaction discarded because of previous errors.");
  return Action::kNone;
}

Action CmdDiscard(CommandContext& ctx) {
  if (!InMulti(ctx.conn)) {
    ctx.w.Error("ERR DISCARD without MULTI");
    return Action::kNone;
  }
  EndMulti(ctx.conn);
  ctx.w.Error("ERR MULTI is not supported yet: transaction discarded, none of its commands ran");
  return Action::kNone;
}

Action CmdWatch(CommandContext& ctx) {
  ctx.w.Error("ERR WATCH is not supported yet");
  return Action::kNone;
}

Action CmdUnwatch(CommandContext& ctx) {
  ctx.w.Error("ERR UNWATCH is not supported yet");
  return Action::kNone;
}

// ---- server ----

// Redis's bytesToHuman: "1.50M".
std::string HumanBytes(uint64_t n) {
  char buf[32];
  double d = static_cast<double>(n);
  if (n < 1024) {
    snprintf(buf, sizeof(buf), "%lluB", static_cast<unsigned long long>(n));
  } else if (n < 1024ull * 1024) {
    snprintf(buf, sizeof(buf), "%.2fK", d / 1024);
  } else if (n < 1024ull * 1024 * 1024) {
    snprintf(buf, sizeof(buf), "%.2fM", d / (1024 * 1024));
  } else {
    snprintf(buf, sizeof(buf), "%.2fG", d / (1024.0 * 1024 * 1024));
  }
  return buf;
}

Action CmdTime(CommandContext& ctx) {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  ctx.w.Array(2);
  ctx.w.BulkInt(tv.tv_sec);
  ctx.w.BulkInt(tv.tv_usec);
  return Action::kNone;
}

void WriteCommandInfo(resp::Writer& w, const CommandSpec& spec) {
  w.Array(10);
  w.Bulk(spec.name);
  w.Int(spec.arity);
  std::vector<const char*> flags;
  if (spec.flags & kWrite) flags.push_back("write");
  if (spec.flags & kReadOnly) flags.push_back("readonly");
  if (spec.flags & kFast) flags.push_back("fast");
  if (spec.flags & kLoading) flags.push_back("loading");
  w.Set(static_cast<int64_t>(flags.size()));
  for (const char* f : flags) w.String(f);
  w.Int(spec.first_key);
  w.Int(spec.last_key);
  w.Int(spec.key_step);
  w.Set(0);    // ACL categories
  w.Set(0);    // tips
  w.Array(0);  // key specs
  w.Array(0);  // subcommands
}

Action CmdCommand(CommandContext& ctx) {
  const auto& table = CommandService::Table();
  if (ctx.args.size() == 1) {
    ctx.w.Array(static_cast<int64_t>(table.size()));
    for (const auto& spec : table) WriteCommandInfo(ctx.w, spec);
    return Action::kNone;
  }
  std::string_view sub = ctx.args[1];
  if (EqualsNoCase(sub, "COUNT") && ctx.args.size() == 2) {
    ctx.w.Int(static_cast<int64_t>(table.size()));
  } else if (EqualsNoCase(sub, "INFO")) {
    if (ctx.args.size() == 2) {
      ctx.w.Array(static_cast<int64_t>(table.size()));
      for (const auto& spec : table) WriteCommandInfo(ctx.w, spec);
    } else {
      ctx.w.Array(static_cast<int64_t>(ctx.args.size() - 2));
      for (size_t i = 2; i < ctx.args.size(); i++) {
        const CommandSpec* spec = CommandService::Lookup(ctx.args[i]);
        if (spec == nullptr) {
          ctx.w.NullArray();
        } else {
          WriteCommandInfo(ctx.w, *spec);
        }
      }
    }
  } else if (EqualsNoCase(sub, "DOCS")) {
    // No documentation is shipped; clients such as redis-cli then simply
    // show no hints.
    ctx.w.Map(0);
  } else {
    UnknownSubcommand(ctx.w, sub, "COMMAND");
  }
  return Action::kNone;
}

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

// INFO's sections, in Redis 7.0's order (genRedisInfoString).
enum InfoSection : uint32_t {
  kInfoServer = 1 << 0,
  kInfoClients = 1 << 1,
  kInfoMemory = 1 << 2,
  kInfoPersistence = 1 << 3,
  kInfoStats = 1 << 4,
  kInfoReplication = 1 << 5,
  kInfoCpu = 1 << 6,
  kInfoModules = 1 << 7,
  kInfoCommandstats = 1 << 8,
  kInfoErrorstats = 1 << 9,
  kInfoLatencystats = 1 << 10,
  kInfoCluster = 1 << 11,
  kInfoKeyspace = 1 << 12,
};
constexpr uint32_t kInfoAll = (kInfoKeyspace << 1) - 1;
constexpr uint32_t kInfoDefault = kInfoAll & ~(kInfoCommandstats | kInfoLatencystats);

// As Redis 7.0's genInfoSectionDict: no argument means the default
// sections; each argument, case-insensitive, adds a section, "default",
// "all" or "everything" (all, and the modules' own sections: none here);
// an unknown one adds nothing, so INFO with only unknown names is empty.
uint32_t InfoSections(std::span<const std::string_view> args) {
  if (args.empty()) return kInfoDefault;
  static constexpr std::pair<std::string_view, uint32_t> kNames[] = {
      {"server", kInfoServer},
      {"clients", kInfoClients},
      {"memory", kInfoMemory},
      {"persistence", kInfoPersistence},
      {"stats", kInfoStats},
      {"replication", kInfoReplication},
      {"cpu", kInfoCpu},
      {"modules", kInfoModules},
      {"commandstats", kInfoCommandstats},
      {"errorstats", kInfoErrorstats},
      {"latencystats", kInfoLatencystats},
      {"cluster", kInfoCluster},
      {"keyspace", kInfoKeyspace},
      {"default", kInfoDefault},
      {"all", kInfoAll},
      {"everything", kInfoAll},
  };
  uint32_t wanted = 0;
  for (std::string_view arg : args) {
    for (const auto& [name, bits] : kNames) {
      if (EqualsNoCase(arg, name)) wanted |= bits;
    }
  }
  return wanted;
}

// Redis's "%ld.%06ld" seconds.
std::string Seconds(uint64_t us) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%llu.%06llu", static_cast<unsigned long long>(us / 1000000),
           static_cast<unsigned long long>(us % 1000000));
  return buf;
}

Action CmdInfo(CommandContext& ctx) {
  const uint32_t sections = InfoSections(ctx.args.subspan(1));
  auto wants = [&](InfoSection section) { return (sections & section) != 0; };
  const std::vector<uint64_t> t = ctx.service.Totals();
  auto total = [&](uint32_t slot) { return std::to_string(t[slot]); };
  const shm::Stats st = ctx.service.store().stats();
  const ServiceInfo& info = ctx.service.info();
  double now = ctx.conn.server().now();
  std::string text;
  auto line = [&](std::string_view k, const std::string& v) {
    text.append(k);
    text += ':';
    text += v;
    text += "\r\n";
  };
  if (wants(kInfoServer)) {
    text += "# Server\r\n";
    line("redis_version", "7.0.0");
    line("redhub_version", info.version);
    line("redis_mode", "standalone");
    line("os", "Linux");
    line("arch_bits", std::to_string(sizeof(void*) * 8));
    line("multiplexing_api", "epoll");
    line("process_id", std::to_string(getpid()));
    line("worker_slot", std::to_string(info.worker_slot));
    line("tcp_port", std::to_string(info.port));
    line("uptime_in_seconds", std::to_string(static_cast<int64_t>(now - ctx.service.started_at)));
    line("uptime_in_days",
         std::to_string(static_cast<int64_t>(now - ctx.service.started_at) / 86400));
    line("executable", info.executable);
    line("config_file", info.config_file);
    text += "\r\n";
  }
  if (wants(kInfoClients)) {
    text += "# Clients\r\n";
    line("connected_clients", total(shm::slots::kConnectedClients));
    line("maxclients", std::to_string(ctx.conn.server().options().max_clients));
    line("client_buffers_bytes", total(shm::slots::kClientBufferBytes));
    line("blocked_clients", "0");
    line("clients_paused_by_backpressure", total(shm::slots::kPausedClients));
    text += "\r\n";
  }
  if (wants(kInfoMemory)) {
    text += "# Memory\r\n";
    line("used_memory", std::to_string(st.used_bytes));
    line("used_memory_human", HumanBytes(st.used_bytes));
    line("maxmemory", std::to_string(st.maxmemory));
    line("maxmemory_human", HumanBytes(st.maxmemory));
    line("maxmemory_policy", std::string(shm::NameOf(st.policy)));
    line("shm_segment_bytes", std::to_string(st.segment_bytes));
    line("shm_stripes", std::to_string(st.stripes));
    line("shm_stripe_repairs", std::to_string(st.repairs));
    text += "\r\n";
  }
  // No persistence, no replicas, no cluster, no modules: these sections say
  // so in Redis's words, for the tools that read them (role:master...).
  if (wants(kInfoPersistence)) {
    text += "# Persistence\r\n";
    line("loading", "0");
    line("async_loading", "0");
    line("rdb_bgsave_in_progress", "0");
    line("rdb_last_bgsave_status", "ok");
    line("aof_enabled", "0");
    line("aof_rewrite_in_progress", "0");
    line("aof_last_bgrewrite_status", "ok");
    line("aof_last_write_status", "ok");
    text += "\r\n";
  }
  if (wants(kInfoStats)) {
    text += "# Stats\r\n";
    line("total_connections_received", total(shm::slots::kConnectionsReceived));
    line("total_commands_processed", total(shm::slots::kCommandsProcessed));
    line("total_net_input_bytes", total(shm::slots::kNetInputBytes));
    line("total_net_output_bytes", total(shm::slots::kNetOutputBytes));
    line("rejected_connections", total(shm::slots::kRejectedConnections));
    line("keyspace_hits", total(shm::slots::kKeyspaceHits));
    line("keyspace_misses", total(shm::slots::kKeyspaceMisses));
    line("expired_keys", std::to_string(st.expired));
    line("evicted_keys", std::to_string(st.evicted));
    line("total_error_replies", total(shm::slots::kErrorReplies));
    line("client_query_buffer_limit_disconnections", total(shm::slots::kQueryLimitDisconnects));
    line("client_output_buffer_limit_disconnections", total(shm::slots::kOutputLimitDisconnects));
    line("protocol_errors", total(shm::slots::kProtocolErrors));
    line("idle_timeout_disconnections", total(shm::slots::kIdleDisconnects));
    line("accept_errors", total(shm::slots::kAcceptErrors));
    text += "\r\n";
  }
  if (wants(kInfoReplication)) {
    text += "# Replication\r\n";
    line("role", "master");
    line("connected_slaves", "0");
    line("master_failover_state", "no-failover");
    line("master_repl_offset", "0");
    line("repl_backlog_active", "0");
    text += "\r\n";
  }
  if (wants(kInfoCpu)) {
    // Every process of the daemon, live or exited (daemon_cpu.h), so the
    // figures never go backwards when a worker dies or is replaced. Redis's
    // _children figures are its fork children (BGSAVE, AOF rewrite): the
    // daemon has none, its workers are the server itself and count above.
    const CpuTimes cpu = DaemonCpuTimes(info.master_pid);
    text += "# CPU\r\n";
    line("used_cpu_sys", Seconds(cpu.sys_us));
    line("used_cpu_user", Seconds(cpu.user_us));
    line("used_cpu_sys_children", Seconds(0));
    line("used_cpu_user_children", Seconds(0));
    text += "\r\n";
  }
  if (wants(kInfoModules)) text += "# Modules\r\n\r\n";
  if (wants(kInfoCommandstats)) {
    text += "# Commandstats\r\n";
    const auto& table = CommandService::Table();
    for (uint32_t c = 0; c < table.size() && c < shm::slots::kMaxCommands; c++) {
      uint64_t calls = t[shm::slots::CommandSlot(c, shm::slots::kCalls)];
      if (calls == 0) continue;
      uint64_t usec = t[shm::slots::CommandSlot(c, shm::slots::kMicros)];
      uint64_t failed = t[shm::slots::CommandSlot(c, shm::slots::kFailed)];
      char buf[256];
      snprintf(buf, sizeof(buf),
               "calls=%llu,usec=%llu,usec_per_call=%.2f,rejected_calls=0,failed_calls=%llu",
               static_cast<unsigned long long>(calls), static_cast<unsigned long long>(usec),
               static_cast<double>(usec) / static_cast<double>(calls),
               static_cast<unsigned long long>(failed));
      line("cmdstat_" + std::string(table[c].name), buf);
    }
    text += "\r\n";
  }
  if (wants(kInfoErrorstats)) {
    text += "# Errorstats\r\n";
    for (uint32_t i = 0; i <= shm::slots::kErrorKinds; i++) {
      uint64_t n = t[shm::slots::kErrorBase + i];
      if (n == 0) continue;
      std::string name = i < shm::slots::kErrorKinds ? shm::slots::kErrorNames[i] : "OTHER";
      line("errorstat_" + name, "count=" + std::to_string(n));
    }
    text += "\r\n";
  }
  // Per-command latency is in the admin's /metrics histograms; their
  // buckets are too coarse for Redis's percentiles, so none is given here.
  if (wants(kInfoLatencystats)) text += "# Latencystats\r\n\r\n";
  if (wants(kInfoCluster)) {
    text += "# Cluster\r\n";
    line("cluster_enabled", "0");
    text += "\r\n";
  }
  if (wants(kInfoKeyspace)) {
    text += "# Keyspace\r\n";
    if (st.keys > 0) {
      line("db0", "keys=" + std::to_string(st.keys) +
                      ",expires=" + std::to_string(st.keys_with_expiry) + ",avg_ttl=0");
    }
    text += "\r\n";
  }
  if (text.size() >= 2) text.resize(text.size() - 2);  // no blank line at the end
  ctx.w.Verbatim("txt", text);
  return Action::kNone;
}

// SLOWLOG over the log every worker shares (shm/counters.h).
Action CmdSlowlog(CommandContext& ctx) {
  std::string_view sub = ctx.args[1];
  shm::CounterArea* area = ctx.service.counter_area();
  if (EqualsNoCase(sub, "GET") && ctx.args.size() <= 3) {
    int64_t count = 10;
    if (ctx.args.size() == 3 && (!ParseInt64(ctx.args[2], &count) || count < -1)) {
      ctx.w.Error("ERR count should be greater than or equal to -1");
      return Action::kNone;
    }
    std::vector<shm::SlowLogEntry> entries;
    if (area != nullptr) entries = area->SlowLogGet(count < 0 ? SIZE_MAX : count);
    ctx.w.Array(static_cast<int64_t>(entries.size()));
    for (const auto& e : entries) {
      ctx.w.Array(6);
      ctx.w.Int(static_cast<int64_t>(e.id));
      ctx.w.Int(e.unix_time);
      ctx.w.Int(e.micros);
      ctx.w.Array(static_cast<int64_t>(e.args.size()));
      for (const auto& a : e.args) ctx.w.Bulk(a);
      ctx.w.Bulk(e.client_addr);
      ctx.w.Bulk(e.client_name);
    }
  } else if (EqualsNoCase(sub, "LEN") && ctx.args.size() == 2) {
    ctx.w.Int(area != nullptr ? static_cast<int64_t>(area->SlowLogLen()) : 0);
  } else if (EqualsNoCase(sub, "RESET") && ctx.args.size() == 2) {
    if (area != nullptr) area->SlowLogReset();
    ctx.w.OK();
  } else if (EqualsNoCase(sub, "HELP") && ctx.args.size() == 2) {
    const char* lines[] = {
        "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET [<count>]",
        "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
        "    Entries are made of:",
        "    id, timestamp, time in microseconds, arguments array, client IP and port,",
        "    client name",
        "LEN",
        "    Return the length of the slowlog.",
        "RESET",
        "    Reset the slowlog.",
        "HELP",
        "    Print this help."};
    ctx.w.Array(static_cast<int64_t>(std::size(lines)));
    for (const char* l : lines) ctx.w.String(l);
  } else if (EqualsNoCase(sub, "GET") || EqualsNoCase(sub, "LEN") || EqualsNoCase(sub, "RESET")) {
    std::string name = "slowlog|" + std::string(sub);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    WrongArity(ctx.w, name);
  } else {
    UnknownSubcommand(ctx.w, sub, "SLOWLOG");
  }
  return Action::kNone;
}

const CommandSpec kServerCommands[] = {
    // name, arity, flags, first key, last key, step, handler
    {"client", -2, kLoading, 0, 0, 0, CmdClient},
    {"command", -1, kLoading, 0, 0, 0, CmdCommand},
    {"config", -2, kLoading, 0, 0, 0, CmdConfig},
    {"echo", 2, kFast, 0, 0, 0, CmdEcho},
    {"hello", -1, kFast | kLoading, 0, 0, 0, CmdHello},
    {"info", -1, kLoading, 0, 0, 0, CmdInfo},
    {"ping", -1, kFast, 0, 0, 0, CmdPing},
    {"quit", -1, kFast | kLoading, 0, 0, 0, CmdQuit},
    {"select", 2, kFast | kLoading, 0, 0, 0, CmdSelect},
    {"slowlog", -2, kLoading, 0, 0, 0, CmdSlowlog},
    {"time", 1, kFast | kLoading, 0, 0, 0, CmdTime},
};

// Last in the table: a command's index is its slot in the counter blocks,
// which a binary upgrade keeps (and the old workers still write), so new
// rows go after the existing ones instead of shifting them.
const CommandSpec kTransactionCommands[] = {
    {"discard", 1, kNoScript | kLoading | kFast, 0, 0, 0, CmdDiscard},
    {"exec", 1, kNoScript | kLoading, 0, 0, 0, CmdExec},
    {"multi", 1, kNoScript | kLoading | kFast, 0, 0, 0, CmdMulti},
    {"unwatch", 1, kNoScript | kLoading | kFast, 0, 0, 0, CmdUnwatch},
    {"watch", -2, kNoScript | kLoading | kFast, 1, -1, 1, CmdWatch},
};

const std::vector<CommandSpec>& AllCommands() {
  static const std::vector<CommandSpec> table = [] {
    std::vector<CommandSpec> t;
    for (auto family : {ServerCommands(), StringCommands(), KeyspaceCommands(),
                        std::span<const CommandSpec>(kTransactionCommands)}) {
      t.insert(t.end(), family.begin(), family.end());
    }
    return t;
  }();
  return table;
}

// Command lookup runs once per request, so it is an open-addressing table
// keyed by an FNV-1a hash of the ASCII-lower-cased name, computed while
// lower-casing (no locale-aware tolower, no std::string, no allocation). A
// slot holds the name zero-padded to 24 bytes, so a probe compares three
// words instead of calling strncmp.
constexpr size_t kIndexSize = 512;  // a power of two, well above the table's size
constexpr size_t kMaxNameLen = 23;  // Redis's longest command name has 20 bytes

struct IndexSlot {
  uint64_t name[3];  // lower-case, zero-padded
  const CommandSpec* spec;
};

uint32_t NameHash(const char* lower, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ static_cast<unsigned char>(lower[i])) * 16777619u;
  return h;
}

const std::array<IndexSlot, kIndexSize>& Index() {
  static const auto* index = [] {
    auto* t = new std::array<IndexSlot, kIndexSize>{};
    for (const auto& spec : AllCommands()) {
      size_t n = strlen(spec.name);
      if (n > kMaxNameLen) abort();  // a table entry no lookup could find
      for (uint32_t i = NameHash(spec.name, n);; i++) {
        IndexSlot& slot = (*t)[i % kIndexSize];
        if (slot.spec == nullptr) {
          memcpy(slot.name, spec.name, n);
          slot.spec = &spec;
          break;
        }
      }
    }
    return t;
  }();
  return *index;
}

}  // namespace

std::span<const CommandSpec> ServerCommands() { return kServerCommands; }

void WrongArity(resp::Writer& w, std::string_view name) {
  w.Error("ERR wrong number of arguments for '" + std::string(name) + "' command");
}

void UnknownSubcommand(resp::Writer& w, std::string_view sub, std::string_view cmd) {
  w.Error("ERR unknown subcommand '" + std::string(sub.substr(0, 128)) + "'. Try " +
          std::string(cmd) + " HELP.");
}

CommandService::CommandService(ServiceInfo info, shm::Store* store)
    : info_(std::move(info)), store_(store), table_(Table().data()), lookup_get_(Lookup("get")) {}

const std::vector<CommandSpec>& CommandService::Table() { return AllCommands(); }

const CommandSpec* CommandService::Lookup(std::string_view name) {
  uint64_t words[3] = {0, 0, 0};
  if (name.size() > kMaxNameLen) return nullptr;
  auto* lower = reinterpret_cast<char*>(words);
  for (size_t i = 0; i < name.size(); i++) {
    char c = name[i];
    // A NUL byte would match a shorter name's padding.
    if (c == '\0') return nullptr;
    lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  }
  const auto& index = Index();
  for (uint32_t i = NameHash(lower, name.size());; i++) {
    const IndexSlot& slot = index[i % kIndexSize];
    if (slot.spec == nullptr) return nullptr;
    if (slot.name[0] == words[0] && slot.name[1] == words[1] && slot.name[2] == words[2]) {
      return slot.spec;
    }
  }
}

bool CommandService::RefuseInMulti(std::span<const std::string_view> args, resp::Writer& w) {
  std::string_view name = args[0];
  if (EqualsNoCase(name, "exec") || EqualsNoCase(name, "discard") || EqualsNoCase(name, "quit") ||
      EqualsNoCase(name, "multi")) {
    return false;  // run as usual: their handlers know the state
  }
  clock_batch_ = 0;  // the next command reads the clock itself
  w.Error(kErrNotRunInMulti);
  if (block_ != nullptr) CountError("ERR");
  return true;
}

// Commands that ran this long are logged (and are in SLOWLOG).
constexpr uint64_t kLongCommandMicros = 1000000;

Action CommandService::Dispatch(Conn& conn, const resp::Command& cmd, resp::Writer& w) {
  // A connection inside MULTI (see CmdMulti) has every command refused
  // unrun, checked before anything else, so that no path runs one. Outside
  // MULTI this is one well-predicted branch on a word of the connection.
  if (conn.session_flags() != 0) [[unlikely]] {
    if (RefuseInMulti(cmd.args, w)) return Action::kNone;
  }
  // Pipelines mostly repeat one command: the name as last received (any
  // case) maps to the same row without hashing it again.
  std::string_view name = cmd.args[0];
  const CommandSpec* spec;
  if (last_spec_ != nullptr && name.size() == last_name_len_ &&
      memcmp(name.data(), last_name_, name.size()) == 0) {
    spec = last_spec_;
  } else {
    spec = Lookup(name);
    if (spec != nullptr && name.size() <= sizeof(last_name_)) {
      memcpy(last_name_, name.data(), name.size());
      last_name_len_ = name.size();
      last_spec_ = spec;
    }
  }
  if (spec == nullptr) {
    clock_batch_ = 0;  // the next command reads the clock itself
    UnknownCommand(w, cmd.args);
    if (block_ != nullptr) {
      block_->Add(shm::slots::kUnknownCommands, 1);
      CountError("ERR");
    }
    return Action::kNone;
  }
  int argc = static_cast<int>(cmd.args.size());
  if ((spec->arity > 0 && argc != spec->arity) || (spec->arity < 0 && argc < -spec->arity)) {
    clock_batch_ = 0;
    WrongArity(w, spec->name);
    if (block_ != nullptr) CountError("ERR");
    return Action::kNone;
  }
  CommandContext ctx{conn, cmd.args, w, *this};
  // Expiry is judged by the time this request's batch was read (see
  // Store::set_now_ms), and reset after so nothing else sees a stale time.
  // In a batch (the event loop's handlers) that is done once per batch.
  struct NowScope {
    shm::Store* store;
    bool active;
    ~NowScope() {
      if (active) store->set_now_ms(0);
    }
  } now_scope{store_, !store_->in_batch()};
  if (now_scope.active) store_->set_now_ms(static_cast<int64_t>(conn.server().now() * 1000));
  if (block_ == nullptr) return spec->handler(ctx);
  // Per-command figures for INFO commandstats and the metrics, written
  // straight into this worker's block. In a pipelined batch the clock read
  // that ends one command starts the next (a read costs ~10 ns on a VM, a
  // GET ~100), so a command's time includes parsing it; the first command
  // of a batch starts its own.
  auto c = static_cast<uint32_t>(spec - table_);
  size_t reply_at = w.buffer().size();
  const uint64_t batch = conn.server().batch();
  uint64_t t0 = batch != 0 && batch == clock_batch_ ? clock_mark_ : clock_.Now();
  Action action = spec->handler(ctx);
  uint64_t t1 = clock_.Now();
  clock_mark_ = t1;
  clock_batch_ = batch;
  batch_ticks_ += t1 - t0;
  batch_cmds_++;
  if (c < shm::slots::kMaxCommands) {
    auto ns = static_cast<int64_t>(clock_.Nanos(t1 - t0));
    block_->Add(shm::slots::CommandSlot(c, shm::slots::kCalls), 1);
    block_->Add(shm::slots::CommandSlot(c, shm::slots::kMicros), static_cast<uint64_t>(ns / 1000));
    uint64_t us = static_cast<uint64_t>(ns / 1000);
    if (int64_t slower = area_->SlowLogThreshold();
        slower >= 0 && static_cast<int64_t>(us) >= slower) {
      LogSlow(conn, cmd.args, static_cast<int64_t>(us));
    }
    // A command this long kept every other client of this worker waiting
    // (the watchdog lets it run: it made progress). Operators see it here
    // as well as in SLOWLOG.
    if (us >= kLongCommandMicros) {
      LOG_WARNING("Long command: %s ran for %.2f s (client id=%llu addr=%s)", spec->name,
                  static_cast<double>(us) / 1e6, static_cast<unsigned long long>(conn.id()),
                  conn.remote_addr().c_str());
    }
    uint32_t b = 0;
    while (b < shm::slots::kBuckets && us > shm::slots::kBucketMicros[b]) b++;
    if (b < shm::slots::kBuckets) block_->Add(shm::slots::HistogramSlot(c, b), 1);
    if (w.buffer().size() > reply_at && w.buffer()[reply_at] == '-') {
      block_->Add(shm::slots::CommandSlot(c, shm::slots::kFailed), 1);
      CountError(std::string_view(w.buffer()).substr(reply_at + 1));
    }
  }
  return action;
}

void CommandService::LogSlow(Conn& conn, std::span<const std::string_view> args, int64_t us) {
  // As Redis's slowlogCreateEntry: at most 32 arguments (the last one says
  // how many more), each cut at 128 bytes.
  shm::SlowLogEntry e;
  e.unix_time = time(nullptr);
  e.micros = us;
  e.client_addr = conn.remote_addr();
  e.client_name = conn.name();
  size_t argc = std::min<size_t>(args.size(), 32);
  for (size_t i = 0; i < argc; i++) {
    if (argc != args.size() && i == argc - 1) {
      e.args.push_back("... (" + std::to_string(args.size() - argc + 1) + " more arguments)");
    } else if (args[i].size() > 128) {
      e.args.push_back(std::string(args[i].substr(0, 128)) + "... (" +
                       std::to_string(args[i].size() - 128) + " more bytes)");
    } else {
      e.args.emplace_back(args[i]);
    }
  }
  area_->SlowLogAdd(e);
}

void CommandService::CountError(std::string_view reply) {
  namespace s = shm::slots;
  block_->Add(s::kErrorReplies, 1);
  std::string_view word = reply.substr(0, reply.find_first_of(" \r"));
  for (uint32_t i = 0; i < s::kErrorKinds; i++) {
    if (word == s::kErrorNames[i]) {
      block_->Add(s::kErrorBase + i, 1);
      return;
    }
  }
  block_->Add(s::kErrorOther, 1);
}

void CommandService::PublishLoopStats() {
  if (block_ == nullptr || server_ == nullptr) return;
  namespace s = shm::slots;
  const ServerStats st = server_->stats();
  block_->Set(s::kConnectedClients, st.connected_clients);
  block_->Set(s::kPausedClients, st.blocked_reading);
  block_->Set(s::kClientBufferBytes, server_->client_buffer_bytes());
  block_->Set(s::kConnectionsReceived, st.connections_received);
  block_->Set(s::kRejectedConnections, st.rejected_connections);
  block_->Set(s::kCommandsProcessed, st.commands_processed);
  block_->Set(s::kNetInputBytes, st.net_input_bytes);
  block_->Set(s::kNetOutputBytes, st.net_output_bytes);
  block_->Set(s::kProtocolErrors, st.protocol_errors);
  block_->Set(s::kOutputLimitDisconnects, st.output_limit_disconnects);
  block_->Set(s::kQueryLimitDisconnects, st.query_limit_disconnects);
  block_->Set(s::kIdleDisconnects, st.idle_disconnects);
  block_->Set(s::kAcceptErrors, st.accept_errors);
  block_->Set(s::kKeyspaceHits, stats.keyspace_hits);
  block_->Set(s::kKeyspaceMisses, stats.keyspace_misses);
}

std::vector<uint64_t> CommandService::Totals() {
  namespace s = shm::slots;
  if (area_ != nullptr && block_ != nullptr) {
    PublishLoopStats();
    return area_->Sum();
  }
  std::vector<uint64_t> t(s::kSlots, 0);
  if (server_ != nullptr) {
    const ServerStats st = server_->stats();
    t[s::kConnectedClients] = st.connected_clients;
    t[s::kPausedClients] = st.blocked_reading;
    t[s::kClientBufferBytes] = server_->client_buffer_bytes();
    t[s::kConnectionsReceived] = st.connections_received;
    t[s::kRejectedConnections] = st.rejected_connections;
    t[s::kCommandsProcessed] = st.commands_processed;
    t[s::kNetInputBytes] = st.net_input_bytes;
    t[s::kNetOutputBytes] = st.net_output_bytes;
    t[s::kProtocolErrors] = st.protocol_errors;
    t[s::kOutputLimitDisconnects] = st.output_limit_disconnects;
    t[s::kQueryLimitDisconnects] = st.query_limit_disconnects;
    t[s::kIdleDisconnects] = st.idle_disconnects;
    t[s::kAcceptErrors] = st.accept_errors;
  }
  t[s::kKeyspaceHits] = stats.keyspace_hits;
  t[s::kKeyspaceMisses] = stats.keyspace_misses;
  return t;
}

void CommandService::LabelCounters(shm::CounterArea* area) {
  const auto& table = Table();
  for (uint32_t c = 0; c < table.size() && c < shm::slots::kMaxCommands; c++) {
    area->SetLabel(shm::slots::CommandSlot(c, shm::slots::kCalls), table[c].name);
  }
}

// A pipeline of GETs over a large store spends most of its time waiting
// for memory: two dependent misses per key (its bucket, then its entry).
// Parsing ahead and prefetching every key's bucket, then every entry, lets
// those misses overlap. Only batches that start with GET (first request),
// and only multibulk requests (their arguments are views into `requests`):
// writes would prefetch lines other workers are writing. Returns whether
// the batch is such a GET pipeline; prefetches only if prefetch_ says so.
bool CommandService::PrefetchBatch(std::string_view requests) {
  constexpr size_t kMaxAhead = 512;
  std::string_view keys[kMaxAhead];
  size_t n = 0;
  size_t off = 0;
  lookahead_.Reset();
  while (n < kMaxAhead && off < requests.size()) {
    resp::Command cmd;
    size_t used = 0;
    if (lookahead_.Parse(requests.data() + off, requests.size() - off, &cmd, &used) !=
            resp::ParseStatus::kComplete ||
        cmd.kind != resp::Kind::kMultibulk || cmd.args.size() != 2 ||
        Lookup(cmd.args[0]) != lookup_get_) {
      break;
    }
    if (!prefetch_) {
      n = 1;  // a GET pipeline: measure it without prefetching
      break;
    }
    keys[n++] = cmd.args[1];
    off += used;
  }
  lookahead_.Reset();
  if (!prefetch_) return n != 0;
  for (size_t i = 0; i < n; i++) store_->Prefetch(keys[i], 0);
  for (size_t i = 0; i < n; i++) store_->Prefetch(keys[i], 1);
  return n != 0;
}

// Prefetching pays when lookups miss the cache (random keys over a large
// store) and costs a second parse of each request when they hit (one hot
// key). Which one a load is can change at any time, so it is measured: in
// each window of 64 GET pipelines, 2 run with the other setting (exploring
// costs ~3% of the loser's overhead), and the setting with the lower time
// per command (the prefetch pass included) is kept for the next window.
void CommandService::ChoosePrefetch() {
  constexpr uint32_t kWindow = 64, kTrial = 2, kMinCommands = 16;
  if (batch_reads_ && batch_cmds_ >= kMinCommands) {
    ticks_[prefetch_] += batch_ticks_;
    cmds_[prefetch_] += batch_cmds_;
    if (++window_batches_ == kWindow) {
      if (cmds_[0] != 0 && cmds_[1] != 0) {
        // ticks_[1] / cmds_[1] < ticks_[0] / cmds_[0], without division.
        prefetch_best_ = static_cast<unsigned __int128>(ticks_[1]) * cmds_[0] <
                         static_cast<unsigned __int128>(ticks_[0]) * cmds_[1];
      }
      window_batches_ = 0;
      ticks_[0] = ticks_[1] = cmds_[0] = cmds_[1] = 0;
    }
  }
  batch_ticks_ = 0;
  batch_cmds_ = 0;
  prefetch_ = window_batches_ < kTrial ? !prefetch_best_ : prefetch_best_;
}

Handlers CommandService::MakeHandlers() {
  Handlers h;
  // A connection's pipelined requests are one store batch: consecutive
  // commands on one stripe (a hot key) lock it once (Store::BeginBatch).
  h.on_command = [this](Conn& conn, const resp::Command& cmd, resp::Writer& w) {
    if (!store_->in_batch()) {
      store_->BeginBatch();
      // The batch was read at the loop's time: every command of it judges
      // expiry by that (Store::set_now_ms).
      if (server_ != nullptr) {
        store_->set_now_ms(static_cast<int64_t>(server_->now() * 1000));
      }
    }
    return Dispatch(conn, cmd, w);
  };
  h.on_start = [this](const ServerView& server) {
    server_ = &server;
    started_at = server.now();
  };
  h.on_batch_begin = [this](std::string_view requests) {
    // The watchdog's sign of life (progress.h), once per read: a command
    // that runs long reports from inside its loops.
    shm::ReportProgress();
    // A few requests (no pipelining) have nothing to overlap.
    batch_reads_ = false;
    if (requests.size() < 512) return;
    uint64_t t0 = clock_.Now();
    batch_reads_ = PrefetchBatch(requests);
    batch_ticks_ += clock_.Now() - t0;
  };
  h.on_batch_end = [this] {
    if (store_->in_batch()) {
      store_->EndBatch();
      store_->set_now_ms(0);
    }
    ChoosePrefetch();
  };
  // Active expiry, as Redis's serverCron does ten times a second: every
  // worker runs a short cycle, so expired keys go even if nobody reads them
  // and even if some workers are idle or dead. The budget bounds the latency
  // it adds to this worker's clients.
  h.on_tick = [this] {
    store_->ExpireCycle(shm::Store::NowMs(), std::chrono::microseconds(1000));
    PublishLoopStats();
    return Tick{std::chrono::milliseconds(100), Action::kNone};
  };
  return h;
}

}  // namespace redhub::worker
