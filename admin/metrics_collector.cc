#include "metrics_collector.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <deque>
#include <utility>

#include "counters.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::admin {
namespace {

namespace slots = shm::slots;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

// Appends families in exposition order; families that end up without a
// sample (no errors yet, no restarts) are dropped by Take(). A deque, so
// that the reference Add returns stays valid while more families are added.
class FamilyList {
 public:
  MetricFamily& Add(std::string name, std::string help, MetricType type) {
    families_.push_back(MetricFamily{std::move(name), std::move(help), type, {}});
    return families_.back();
  }
  void Gauge(const char* name, const char* help, double v, Labels labels = {}) {
    AddSample(Add(name, help, MetricType::Gauge), v, std::move(labels));
  }
  void Counter(const char* name, const char* help, double v, Labels labels = {}) {
    AddSample(Add(name, help, MetricType::Counter), v, std::move(labels));
  }
  static void AddSample(MetricFamily& f, double v, Labels labels = {}) {
    ClientMetric m;
    m.label = std::move(labels);
    if (f.type == MetricType::Counter) {
      m.counter.value = v;
    } else {
      m.gauge.value = v;
    }
    f.metric.push_back(std::move(m));
  }
  std::vector<MetricFamily> Take() {
    std::vector<MetricFamily> out;
    for (MetricFamily& f : families_) {
      if (!f.metric.empty()) out.push_back(std::move(f));
    }
    return out;
  }

 private:
  std::deque<MetricFamily> families_;
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A row of REDHUB_WORKER_COUNTERS: its slot summed, or the figure it names.
double CounterValue(const slots::CounterRow& row, const Snapshot& s, const StaticInfo& info) {
  switch (row.slot) {
    case slots::kFigureMaxClients:
      return info.max_clients;
    case slots::kFigureBlockedClients:
      return 0;
    case slots::kFigureExpiredKeys:
      return static_cast<double>(s.expired);
    case slots::kFigureEvictedKeys:
      return static_cast<double>(s.evicted);
    default:
      return row.slot < s.totals.size() ? static_cast<double>(s.totals[row.slot]) : 0.0;
  }
}

// A slot of the summed counters, 0 past the end (a block area of an older
// layout).
uint64_t Raw(const Snapshot& s, uint32_t i) { return i < s.totals.size() ? s.totals[i] : 0; }
double Total(const Snapshot& s, uint32_t i) { return static_cast<double>(Raw(s, i)); }

// Server, clients and stats: the rows of shm/worker_counters.h with a
// Prometheus name, in the table's order (after redis_up and uptime); then
// memory and keyspace.
void AddServerFamilies(FamilyList& out, const Snapshot& s, const StaticInfo& info) {
  out.Gauge("redis_up", "Information about the Redis instance", 1);
  out.Gauge("redis_uptime_in_seconds", "uptime_in_seconds metric",
            std::max(0.0, s.now_unix - info.started_at_unix));
  for (const slots::CounterRow& row : slots::kCounterRows) {
    if (row.prometheus_name[0] == '\0') continue;
    const double v = CounterValue(row, s, info);
    if (row.type == slots::MetricType::kGauge) {
      out.Gauge(row.prometheus_name, row.help, v);
    } else {
      out.Counter(row.prometheus_name, row.help, v);
    }
  }
  out.Gauge("redis_memory_used_bytes", "used_memory metric", static_cast<double>(s.used_bytes));
  out.Gauge("redis_memory_max_bytes", "maxmemory metric", static_cast<double>(s.maxmemory));
  out.Gauge("redis_db_keys", "Total number of keys by DB", static_cast<double>(s.keys),
            {{"db", "db0"}});
  out.Gauge("redis_db_keys_expiring", "Total number of expiring keys by DB",
            static_cast<double>(s.keys_with_expiry), {{"db", "db0"}});
}

// The slots count each latency bucket alone; Prometheus wants each bucket
// to include the ones below it. Workers write calls and buckets with
// separate stores, so a scrape can see a bucket ahead of the calls: +Inf is
// never below the last finite bucket.
ClientMetric LatencyHistogram(const Snapshot& s, uint32_t c, uint64_t calls, double sum_seconds,
                              const Labels& labels) {
  ClientMetric m;
  m.label = labels;
  uint64_t cumulative = 0;
  for (uint32_t b = 0; b < slots::kBuckets; b++) {
    cumulative += Raw(s, slots::HistogramSlot(c, b));
    m.histogram.bucket.push_back({cumulative, slots::kBucketMicros[b] / 1e6});
  }
  m.histogram.sample_count = std::max(calls, cumulative);
  m.histogram.sample_sum = sum_seconds;
  return m;
}

// Commandstats: only commands called at least once, as INFO shows them;
// then errorstats by the error's first word, the rest as OTHER.
void AddCommandFamilies(FamilyList& out, const Snapshot& s) {
  MetricFamily& calls =
      out.Add("redis_commands_total", "Total number of calls per command", MetricType::Counter);
  MetricFamily& seconds =
      out.Add("redis_commands_duration_seconds_total",
              "Total amount of time in seconds spent per command", MetricType::Counter);
  MetricFamily& failed =
      out.Add("redis_commands_failed_calls_total",
              "Total number of errors within command execution", MetricType::Counter);
  MetricFamily& latency =
      out.Add("redis_commands_latency_seconds",
              "Latency of calls per command, summed over all workers", MetricType::Histogram);
  for (uint32_t c = 0; c < slots::kMaxCommands; c++) {
    uint64_t n = Raw(s, slots::CommandSlot(c, slots::kCalls));
    if (n == 0) continue;
    std::string name = c < s.command_names.size() ? Lower(s.command_names[c]) : "";
    if (name.empty()) name = "command_" + std::to_string(c);
    const Labels labels = {{"cmd", name}};
    double sum_seconds = Total(s, slots::CommandSlot(c, slots::kMicros)) / 1e6;
    FamilyList::AddSample(calls, static_cast<double>(n), labels);
    FamilyList::AddSample(seconds, sum_seconds, labels);
    FamilyList::AddSample(failed, Total(s, slots::CommandSlot(c, slots::kFailed)), labels);
    latency.metric.push_back(LatencyHistogram(s, c, n, sum_seconds, labels));
  }
  MetricFamily& errors =
      out.Add("redis_errors_total", "Total number of errors per error type", MetricType::Counter);
  for (uint32_t i = 0; i <= slots::kErrorKinds; i++) {
    uint64_t n = Raw(s, slots::kErrorBase + i);
    if (n == 0) continue;
    FamilyList::AddSample(errors, static_cast<double>(n),
                          {{"err", i < slots::kErrorKinds ? slots::kErrorNames[i] : "OTHER"}});
  }
}

// redhub's own: the master's supervision and the store's crash repairs.
void AddRedhubFamilies(FamilyList& out, const Snapshot& s, const StaticInfo& info) {
  MetricFamily& workers =
      out.Add("redhub_workers", "Worker slots configured, and slots whose worker is serving",
              MetricType::Gauge);
  FamilyList::AddSample(workers, Total(s, slots::kConfiguredSlots), {{"state", "configured"}});
  FamilyList::AddSample(workers, Total(s, slots::kServingSlots), {{"state", "serving"}});
  MetricFamily& restarts =
      out.Add("redhub_worker_restarts_total",
              "Workers replaced by the master, by worker slot and reason", MetricType::Counter);
  for (uint32_t slot = 0; slot < slots::kMaxTrackedSlots; slot++) {
    for (uint32_t r = 0; r < slots::kRestartReasons; r++) {
      uint64_t n = Raw(s, slots::RestartSlot(slot, r));
      if (n == 0) continue;
      FamilyList::AddSample(
          restarts, static_cast<double>(n),
          {{"slot", std::to_string(slot)}, {"reason", slots::kRestartReasonNames[r]}});
    }
  }
  MetricFamily& reloads = out.Add("redhub_reloads_total",
                                  "Configuration reloads (SIGHUP) by result", MetricType::Counter);
  FamilyList::AddSample(reloads, Total(s, slots::kReloadsOk), {{"result", "ok"}});
  FamilyList::AddSample(reloads, Total(s, slots::kReloadsFailed), {{"result", "failed"}});
  MetricFamily& upgrades = out.Add(
      "redhub_upgrades_total", "Binary upgrades in place (SIGUSR2) by result", MetricType::Counter);
  FamilyList::AddSample(upgrades, Total(s, slots::kUpgradesOk), {{"result", "ok"}});
  FamilyList::AddSample(upgrades, Total(s, slots::kUpgradesFailed), {{"result", "failed"}});
  out.Counter("redhub_store_stripe_repairs_total",
              "Store stripes repaired after their lock holder died",
              static_cast<double>(s.stripe_repairs));
  out.Counter("redhub_store_pool_repairs_total", "Page pool repairs after its lock holder died",
              static_cast<double>(s.pool_repairs));
  MetricFamily& auth = out.Add("redhub_admin_auth_failures_total",
                               "/metrics requests refused with 401, by reason: no credentials "
                               "(missing) or wrong ones (invalid); since the admin process started",
                               MetricType::Counter);
  FamilyList::AddSample(auth, static_cast<double>(s.auth_missing), {{"reason", "missing"}});
  FamilyList::AddSample(auth, static_cast<double>(s.auth_invalid), {{"reason", "invalid"}});
  out.Gauge("redhub_build_info", "redhubd's version", 1, {{"version", info.version}});
}

}  // namespace

std::vector<MetricFamily> BuildFamilies(const Snapshot& s, const StaticInfo& info) {
  FamilyList out;
  AddServerFamilies(out, s, info);
  AddCommandFamilies(out, s);
  AddRedhubFamilies(out, s, info);
  return out.Take();
}

MetricsCollector::MetricsCollector(shm::CounterArea* counters, const shm::Store* store,
                                   StaticInfo info, const AdminCounters* own)
    : counters_(counters), store_(store), info_(std::move(info)), own_(own) {}

Snapshot MetricsCollector::TakeSnapshot() const {
  Snapshot s;
  s.totals = counters_->Sum();
  // Names only for the commands that will be shown: a label is a copy.
  s.command_names.resize(slots::kMaxCommands);
  for (uint32_t c = 0; c < slots::kMaxCommands; c++) {
    uint32_t i = slots::CommandSlot(c, slots::kCalls);
    if (i < s.totals.size() && s.totals[i] != 0) s.command_names[c] = counters_->Label(i);
  }
  const shm::Stats st = store_->stats();
  s.keys = st.keys;
  s.keys_with_expiry = st.keys_with_expiry;
  s.used_bytes = st.used_bytes;
  s.maxmemory = st.maxmemory;
  s.expired = st.expired;
  s.evicted = st.evicted;
  s.stripe_repairs = st.repairs;
  s.pool_repairs = st.pool_repairs;
  if (own_ != nullptr) {
    s.auth_missing = own_->auth_missing.load(std::memory_order_relaxed);
    s.auth_invalid = own_->auth_invalid.load(std::memory_order_relaxed);
  }
  s.now_unix =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return s;
}

std::vector<MetricFamily> MetricsCollector::Collect() const {
  return BuildFamilies(TakeSnapshot(), info_);
}

}  // namespace redhub::admin
