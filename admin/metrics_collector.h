// /metrics: the Prometheus families built at scrape time from the counter
// area's totals and the store's statistics. Nothing is cached between
// scrapes, so a worker's death or a reload never makes a counter go back
// (the area folds dead workers' counters into its retired totals).
//
// Names and labels follow oliver006/redis_exporter (redis_*), so its
// dashboards work unchanged; what Redis has no equivalent for is redhub_*.
// BuildFamilies is a pure function of a Snapshot, for tests; the collector
// takes the snapshot from shared memory.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace redhub::shm {
class CounterArea;
class Store;
}  // namespace redhub::shm

namespace redhub::admin {

// What one scrape reads. `totals` is indexed by shm::slots (worker_counters.h).
struct Snapshot {
  std::vector<uint64_t> totals;
  std::vector<std::string> command_names;  // by command index; "" = unnamed
  // The store's figures (shm::Stats), copied so this header needs no shm one.
  uint64_t keys = 0;
  uint64_t keys_with_expiry = 0;
  uint64_t used_bytes = 0;
  uint64_t maxmemory = 0;
  uint64_t expired = 0;
  uint64_t evicted = 0;
  uint64_t stripe_repairs = 0;
  uint64_t pool_repairs = 0;
  // The admin process's own counters (AdminCounters).
  uint64_t auth_missing = 0;
  uint64_t auth_invalid = 0;
  double now_unix = 0;
};

// What only the admin process counts, hence not in shared memory: they
// start at 0 when it (re)starts, a reset Prometheus's rate() handles.
struct AdminCounters {
  std::atomic<uint64_t> auth_missing{0};  // /metrics requests without credentials
  std::atomic<uint64_t> auth_invalid{0};  // with wrong ones
};

// Fixed for the life of the admin process.
struct StaticInfo {
  std::string version;
  double started_at_unix = 0;
  int max_clients = 0;
};

std::vector<prometheus::MetricFamily> BuildFamilies(const Snapshot& snapshot,
                                                    const StaticInfo& info);

// Reads the segments at each Collect(); safe to call from several HTTP
// threads at once (the area's lock serialises the sums).
class MetricsCollector : public prometheus::Collectable {
 public:
  // All three must outlive the collector; own may be null (counted as 0).
  MetricsCollector(shm::CounterArea* counters, const shm::Store* store, StaticInfo info,
                   const AdminCounters* own = nullptr);
  Snapshot TakeSnapshot() const;
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  shm::CounterArea* counters_;
  const shm::Store* store_;
  StaticInfo info_;
  const AdminCounters* own_;
};

}  // namespace redhub::admin
