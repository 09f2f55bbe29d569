// Google Benchmark of the command path a worker runs per request, without
// the network: command lookup, then GET / SET / PING through the real
// command table on a real shared-memory store, with and without the
// per-worker counter block (commandstats, histogram, slowlog threshold).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "counters.h"
#include "detached_conn.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::worker {
namespace {

// Handlers see a Conn and the loop that serves it; the benchmark has no
// socket and no loop behind them: one batch, as a pipeline.
const DetachedServer& BenchServer() {
  static DetachedServer* server = [] {
    auto* s = new DetachedServer;
    s->set_batch(1);
    return s;
  }();
  return *server;
}

class BenchConn : public DetachedConn {
 public:
  BenchConn() : DetachedConn(&BenchServer()) {}
};

struct Fixture {
  explicit Fixture(bool counted) {
    std::string error;
    name = "/redhub-dispatch-bench-" + std::to_string(getpid());
    shm::StoreOptions o;
    o.name = name;
    o.maxmemory = 256ull << 20;
    o.if_exists = shm::IfExists::kReplace;
    store = shm::Store::Create(o, &error);
    if (!store) {
      fprintf(stderr, "store: %s\n", error.c_str());
      abort();
    }
    service = std::make_unique<CommandService>(ServiceInfo{}, store.get());
    if (counted) {
      shm::CounterAreaOptions co;
      co.counters = shm::slots::kSlots;
      co.gauges = shm::slots::kGauges;
      area = shm::CounterArea::Create(name + "-stats", co, &error);
      service->set_counters(area.get(), area->Claim(getpid()));
    }
    for (int i = 0; i < 100000; i++) {
      auto txn = store->Lock(Key(i));
      txn.Put(Key(i), std::string(16, 'v'));
    }
  }
  ~Fixture() {
    service.reset();
    store.reset();
    shm::Store::Remove(name);
    if (area) {
      area.reset();
      shm::CounterArea::Remove(name + "-stats");
    }
  }
  static std::string Key(int i) {
    char buf[32];
    snprintf(buf, sizeof(buf), "key:%012d", i);
    return buf;
  }

  std::string name;
  std::unique_ptr<shm::Store> store;
  std::unique_ptr<shm::CounterArea> area;
  std::unique_ptr<CommandService> service;
};

void RunCommands(benchmark::State& state, const char* command, bool with_value) {
  Fixture f(state.range(0) != 0);
  BenchConn conn;
  std::string out;
  resp::Writer w(out);
  std::vector<std::string> keys;
  for (int i = 0; i < 1024; i++) keys.push_back(Fixture::Key((i * 7919) % 100000));
  const std::string value(16, 'w');
  std::vector<std::string_view> argv(with_value ? 3 : 2);
  argv[0] = command;
  size_t i = 0;
  for (auto _ : state) {
    argv[1] = keys[i++ & 1023];
    if (with_value) argv[2] = value;
    resp::Command cmd;
    cmd.args = argv;
    f.service->Dispatch(conn, cmd, w);
    if (out.size() > (1 << 20)) out.clear();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_DispatchGet(benchmark::State& state) { RunCommands(state, "GET", false); }
void BM_DispatchSet(benchmark::State& state) { RunCommands(state, "SET", true); }

void BM_DispatchPing(benchmark::State& state) {
  Fixture f(state.range(0) != 0);
  BenchConn conn;
  std::string out;
  resp::Writer w(out);
  std::string_view argv[] = {"PING"};
  for (auto _ : state) {
    resp::Command cmd;
    cmd.args = argv;
    f.service->Dispatch(conn, cmd, w);
    if (out.size() > (1 << 20)) out.clear();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Lookup(benchmark::State& state) {
  const char* names[] = {"GET", "set", "Ping", "INCRBY", "expire", "unknowncmd"};
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(CommandService::Lookup(names[i++ % 6]));
  state.SetItemsProcessed(state.iterations());
}

// Arg 0: no counter block; 1: the daemon's per-command accounting.
BENCHMARK(BM_DispatchGet)->Arg(0)->Arg(1);
BENCHMARK(BM_DispatchSet)->Arg(0)->Arg(1);
BENCHMARK(BM_DispatchPing)->Arg(0)->Arg(1);
BENCHMARK(BM_Lookup);

}  // namespace
}  // namespace redhub::worker
