// INFO: Redis 7.0's sections (genRedisInfoString), one writer each, over
// every worker's counter blocks summed (CommandService::Totals). The lines
// of INFO clients and stats that come from counters are the rows of
// shm/worker_counters.h (REDHUB_WORKER_COUNTERS), in its order.
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "command_util.h"
#include "counters.h"
#include "daemon_cpu.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::worker {
namespace {

namespace slots = shm::slots;

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

// Redis's "%ld.%06ld" seconds.
std::string Seconds(uint64_t us) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%llu.%06llu", static_cast<unsigned long long>(us / 1000000),
           static_cast<unsigned long long>(us % 1000000));
  return buf;
}

// What the section writers read: taken once per INFO.
struct InfoInput {
  CommandContext& ctx;
  std::vector<uint64_t> totals;  // CommandService::Totals
  shm::Stats store;
  double now;
};

// Appends "name:value\r\n" lines, sections ending in a blank line.
class InfoText {
 public:
  void Begin(const char* title) {
    text_ += "# ";
    text_ += title;
    text_ += "\r\n";
  }
  void Line(std::string_view name, const std::string& value) {
    text_.append(name);
    text_ += ':';
    text_ += value;
    text_ += "\r\n";
  }
  void End() { text_ += "\r\n"; }
  // Without the blank line after the last section.
  std::string_view Text() const {
    std::string_view t = text_;
    if (t.size() >= 2) t.remove_suffix(2);
    return t;
  }

 private:
  std::string text_;
};

// A row of REDHUB_WORKER_COUNTERS: its slot summed, or the figure it names.
std::string CounterValue(const InfoInput& in, const slots::CounterRow& row) {
  switch (row.slot) {
    case slots::kFigureMaxClients:
      return std::to_string(in.ctx.conn.server().options().max_clients);
    case slots::kFigureBlockedClients:
      return "0";
    case slots::kFigureExpiredKeys:
      return std::to_string(in.store.expired);
    case slots::kFigureEvictedKeys:
      return std::to_string(in.store.evicted);
    default:
      return std::to_string(in.totals[row.slot]);
  }
}

void WriteCounterLines(InfoText& out, const InfoInput& in, slots::InfoSection section) {
  for (const slots::CounterRow& row : slots::kCounterRows) {
    if (row.info_section == section) out.Line(row.info_name, CounterValue(in, row));
  }
}

void WriteServer(InfoText& out, const InfoInput& in) {
  const ServiceInfo& info = in.ctx.service.info();
  const auto uptime = static_cast<int64_t>(in.now - in.ctx.service.started_at);
  out.Begin("Server");
  out.Line("redis_version", "7.0.0");
  out.Line("redhub_version", info.version);
  out.Line("redis_mode", "standalone");
  out.Line("os", "Linux");
  out.Line("arch_bits", std::to_string(sizeof(void*) * 8));
  out.Line("multiplexing_api", "epoll");
  out.Line("process_id", std::to_string(getpid()));
  out.Line("worker_slot", std::to_string(info.worker_slot));
  out.Line("tcp_port", std::to_string(info.port));
  out.Line("uptime_in_seconds", std::to_string(uptime));
  out.Line("uptime_in_days", std::to_string(uptime / 86400));
  out.Line("executable", info.executable);
  out.Line("config_file", info.config_file);
  out.End();
}

void WriteClients(InfoText& out, const InfoInput& in) {
  out.Begin("Clients");
  WriteCounterLines(out, in, slots::InfoSection::kClients);
  out.End();
}

void WriteMemory(InfoText& out, const InfoInput& in) {
  const shm::Stats& st = in.store;
  out.Begin("Memory");
  out.Line("used_memory", std::to_string(st.used_bytes));
  out.Line("used_memory_human", HumanBytes(st.used_bytes));
  out.Line("maxmemory", std::to_string(st.maxmemory));
  out.Line("maxmemory_human", HumanBytes(st.maxmemory));
  out.Line("maxmemory_policy", std::string(shm::NameOf(st.policy)));
  out.Line("shm_segment_bytes", std::to_string(st.segment_bytes));
  out.Line("shm_stripes", std::to_string(st.stripes));
  out.Line("shm_stripe_repairs", std::to_string(st.repairs));
  out.End();
}

void WriteStats(InfoText& out, const InfoInput& in) {
  out.Begin("Stats");
  WriteCounterLines(out, in, slots::InfoSection::kStats);
  out.End();
}

// Every process of the daemon, live or exited (daemon_cpu.h), so the
// figures never go backwards when a worker dies or is replaced. Redis's
// _children figures are its fork children (BGSAVE, AOF rewrite): the daemon
// has none, its workers are the server itself and count above.
void WriteCpu(InfoText& out, const InfoInput& in) {
  const CpuTimes cpu = DaemonCpuTimes(in.ctx.service.info().master_pid);
  out.Begin("CPU");
  out.Line("used_cpu_sys", Seconds(cpu.sys_us));
  out.Line("used_cpu_user", Seconds(cpu.user_us));
  out.Line("used_cpu_sys_children", Seconds(0));
  out.Line("used_cpu_user_children", Seconds(0));
  out.End();
}

void WriteCommandstats(InfoText& out, const InfoInput& in) {
  out.Begin("Commandstats");
  const auto& table = CommandService::Table();
  for (uint32_t c = 0; c < table.size() && c < slots::kMaxCommands; c++) {
    uint64_t calls = in.totals[slots::CommandSlot(c, slots::kCalls)];
    if (calls == 0) continue;
    uint64_t usec = in.totals[slots::CommandSlot(c, slots::kMicros)];
    uint64_t failed = in.totals[slots::CommandSlot(c, slots::kFailed)];
    char buf[256];
    snprintf(buf, sizeof(buf),
             "calls=%llu,usec=%llu,usec_per_call=%.2f,rejected_calls=0,failed_calls=%llu",
             static_cast<unsigned long long>(calls), static_cast<unsigned long long>(usec),
             static_cast<double>(usec) / static_cast<double>(calls),
             static_cast<unsigned long long>(failed));
    out.Line("cmdstat_" + std::string(table[c].name), buf);
  }
  out.End();
}

void WriteErrorstats(InfoText& out, const InfoInput& in) {
  out.Begin("Errorstats");
  for (uint32_t i = 0; i <= slots::kErrorKinds; i++) {
    uint64_t n = in.totals[slots::kErrorBase + i];
    if (n == 0) continue;
    std::string name = i < slots::kErrorKinds ? slots::kErrorNames[i] : "OTHER";
    out.Line("errorstat_" + name, "count=" + std::to_string(n));
  }
  out.End();
}

// Sections whose lines never change. No persistence, no replicas, no
// cluster, no modules: these say so in Redis's words, for the tools that
// read them (role:master...). Per-command latency is in the admin's /metrics
// histograms; their buckets are too coarse for Redis's percentiles, so
// Latencystats is empty.
struct FixedLine {
  const char* name;
  const char* value;
};
template <const char* kTitle, const auto& kLines>
void WriteFixed(InfoText& out, const InfoInput&) {
  out.Begin(kTitle);
  for (const FixedLine& l : kLines) out.Line(l.name, l.value);
  out.End();
}
constexpr char kPersistence[] = "Persistence";
constexpr FixedLine kPersistenceLines[] = {
    {"loading", "0"},
    {"async_loading", "0"},
    {"rdb_bgsave_in_progress", "0"},
    {"rdb_last_bgsave_status", "ok"},
    {"aof_enabled", "0"},
    {"aof_rewrite_in_progress", "0"},
    {"aof_last_bgrewrite_status", "ok"},
    {"aof_last_write_status", "ok"},
};
constexpr char kReplication[] = "Replication";
constexpr FixedLine kReplicationLines[] = {
    {"role", "master"},
    {"connected_slaves", "0"},
    {"master_failover_state", "no-failover"},
    {"master_repl_offset", "0"},
    {"repl_backlog_active", "0"},
};
constexpr char kCluster[] = "Cluster";
constexpr FixedLine kClusterLines[] = {{"cluster_enabled", "0"}};
constexpr char kModules[] = "Modules";
constexpr char kLatencystats[] = "Latencystats";
constexpr std::array<FixedLine, 0> kNoLines{};

void WriteKeyspace(InfoText& out, const InfoInput& in) {
  const shm::Stats& st = in.store;
  out.Begin("Keyspace");
  if (st.keys > 0) {
    out.Line("db0", "keys=" + std::to_string(st.keys) +
                        ",expires=" + std::to_string(st.keys_with_expiry) + ",avg_ttl=0");
  }
  out.End();
}

// The sections in Redis's order, each with its writer.
struct SectionWriter {
  InfoSection section;
  void (*write)(InfoText& out, const InfoInput& in);
};
constexpr SectionWriter kSectionWriters[] = {
    {kInfoServer, WriteServer},
    {kInfoClients, WriteClients},
    {kInfoMemory, WriteMemory},
    {kInfoPersistence, WriteFixed<kPersistence, kPersistenceLines>},
    {kInfoStats, WriteStats},
    {kInfoReplication, WriteFixed<kReplication, kReplicationLines>},
    {kInfoCpu, WriteCpu},
    {kInfoModules, WriteFixed<kModules, kNoLines>},
    {kInfoCommandstats, WriteCommandstats},
    {kInfoErrorstats, WriteErrorstats},
    {kInfoLatencystats, WriteFixed<kLatencystats, kNoLines>},
    {kInfoCluster, WriteFixed<kCluster, kClusterLines>},
    {kInfoKeyspace, WriteKeyspace},
};

Action CmdInfo(CommandContext& ctx) {
  const uint32_t sections = InfoSections(ctx.args.subspan(1));
  const InfoInput in{ctx, ctx.service.Totals(), ctx.service.store().stats(),
                     ctx.conn.server().now()};
  InfoText out;
  for (const SectionWriter& s : kSectionWriters) {
    if (sections & s.section) s.write(out, in);
  }
  ctx.w.Verbatim("txt", out.Text());
  return Action::kNone;
}

const CommandSpec kInfoCommands[] = {
    // name, arity, flags, ACL categories, first key, last key, step, handler, slot
    {"info", -1, kLoading | kStale, kAclDangerous, 0, 0, 0, CmdInfo, 5},
};

}  // namespace

std::span<const CommandSpec> InfoCommands() { return kInfoCommands; }

}  // namespace redhub::worker
