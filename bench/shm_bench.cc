// Micro-benchmarks of the shared-memory store (one process, one thread), and
// its memory per key: BM_MemoryPerKey loads 1M keys of 16 bytes with 16-byte
// values (Redis needs ~129 bytes per such key) and reports
//   used_B/key     entries (rounded to size classes) and bucket arrays
//   pages_B/key    pool pages in use (adds partly filled slabs)
//   segment_B/key  the whole segment, sized just for this load: header,
//                  stripes, page tables and pool
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "store.h"

namespace redhub::shm {
namespace {

std::string Key16(uint64_t i) {
  char buf[32];
  snprintf(buf, sizeof(buf), "key:%012llu", static_cast<unsigned long long>(i));
  return buf;
}

class BenchStore {
 public:
  BenchStore(uint64_t data_bytes, uint32_t stripes = 1024) {
    options_.name = "/redhub-shm-bench-" + std::to_string(getpid());
    options_.data_bytes = data_bytes;
    options_.stripes = stripes;
    options_.if_exists = IfExists::kReplace;
    std::string error;
    store_ = Store::Create(options_, &error);
    if (!store_) fprintf(stderr, "Store::Create: %s\n", error.c_str());
  }
  ~BenchStore() {
    store_.reset();
    Store::Remove(options_.name);
  }
  Store* get() { return store_.get(); }

 private:
  StoreOptions options_;
  std::unique_ptr<Store> store_;
};

void Load(Store& store, uint64_t keys, const std::string& value) {
  for (uint64_t i = 0; i < keys; i++) {
    std::string key = Key16(i);
    Store::Txn txn = store.Lock(key);
    if (txn.Put(key, value) != Status::kOk) {
      fprintf(stderr, "Put failed at key %llu\n", static_cast<unsigned long long>(i));
      return;
    }
  }
}

void BM_MemoryPerKey(benchmark::State& state) {
  constexpr uint64_t kKeys = 1000000;
  const uint64_t data_bytes = static_cast<uint64_t>(state.range(0)) << 20;
  for (auto _ : state) {
    BenchStore bench(data_bytes);
    if (!bench.get()) return state.SkipWithError("Create failed");
    Load(*bench.get(), kKeys, std::string(16, 'v'));
    Stats st = bench.get()->stats();
    if (st.keys != kKeys) return state.SkipWithError("the segment is too small for 1M keys");
    state.counters["used_B/key"] = static_cast<double>(st.used_bytes) / kKeys;
    state.counters["pages_B/key"] =
        static_cast<double>((st.pages_total - st.pages_free) * st.page_size) / kKeys;
    state.counters["segment_B/key"] = static_cast<double>(st.segment_bytes) / kKeys;
    state.counters["segment_MB"] = static_cast<double>(st.segment_bytes) / (1 << 20);
  }
}
// The pool size in MB: the smallest that holds the load, and a roomy one.
BENCHMARK(BM_MemoryPerKey)->Arg(70)->Arg(128)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_Get(benchmark::State& state) {
  const uint64_t keys = static_cast<uint64_t>(state.range(0));
  BenchStore bench(256 << 20);
  Load(*bench.get(), keys, std::string(16, 'v'));
  std::vector<std::string> names;
  for (uint64_t i = 0; i < 4096; i++) names.push_back(Key16((i * 7919) % keys));
  size_t n = 0, bytes = 0;
  for (auto _ : state) {
    const std::string& key = names[n++ & 4095];
    Store::Txn txn = bench.get()->Lock(key);
    auto e = txn.Find(key);
    bytes += e->value.size();
  }
  benchmark::DoNotOptimize(bytes);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Get)->Arg(1000)->Arg(1000000);

void BM_SetReplace(benchmark::State& state) {
  const uint64_t keys = static_cast<uint64_t>(state.range(0));
  BenchStore bench(256 << 20);
  std::string value(static_cast<size_t>(state.range(1)), 'v');
  Load(*bench.get(), keys, value);
  std::vector<std::string> names;
  for (uint64_t i = 0; i < 4096; i++) names.push_back(Key16((i * 7919) % keys));
  size_t n = 0;
  for (auto _ : state) {
    const std::string& key = names[n++ & 4095];
    Store::Txn txn = bench.get()->Lock(key);
    benchmark::DoNotOptimize(txn.Put(key, value));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SetReplace)->Args({1000000, 16})->Args({100000, 1024})->Args({1000, 65536});

void BM_SetNewThenErase(benchmark::State& state) {
  BenchStore bench(64 << 20);
  std::string value(16, 'v');
  uint64_t i = 0;
  for (auto _ : state) {
    std::string key = Key16(i++ % 100000);
    Store::Txn txn = bench.get()->Lock(key);
    if (!txn.Erase(key)) benchmark::DoNotOptimize(txn.Put(key, value));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SetNewThenErase);

void BM_MultiKeyLock(benchmark::State& state) {
  BenchStore bench(64 << 20);
  std::vector<std::string> names;
  for (int i = 0; i < state.range(0); i++) names.push_back(Key16(i));
  std::vector<std::string_view> keys(names.begin(), names.end());
  for (auto _ : state) {
    Store::Txn txn = bench.get()->LockKeys(keys);
    benchmark::DoNotOptimize(txn.now_ms());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MultiKeyLock)->Arg(2)->Arg(16);

void BM_ExpireCycleIdle(benchmark::State& state) {
  BenchStore bench(64 << 20);
  Load(*bench.get(), 100000, std::string(16, 'v'));
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        bench.get()->ExpireCycle(Store::NowMs(), std::chrono::microseconds(1000)));
  }
}
BENCHMARK(BM_ExpireCycleIdle);

}  // namespace
}  // namespace redhub::shm
