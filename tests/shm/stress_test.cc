// Several processes at once: three writers, each with its own key range and
// an exact model of it, checked on every read and in full at the end, while a
// fourth process scans, runs the expire cycle, draws random keys and reads
// statistics over the whole store.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <random>
#include <unordered_map>

#include "shm_test_util.h"
#include "store.h"

namespace redhub::shm {
namespace {

constexpr uint64_t kMB = 1 << 20;
constexpr int kWriters = 3;
constexpr int kKeysPerWriter = 4000;

struct Expected {
  std::string value;
  int64_t expire_ms = 0;
};

class Writer {
 public:
  Writer(Store& store, int id, uint64_t seed) : store_(store), id_(id), rng_(seed) {}

  // Returns an error message, empty if every read matched the model.
  std::string Run(std::chrono::milliseconds duration) {
    auto end = std::chrono::steady_clock::now() + duration;
    uint64_t ops = 0;
    while (error_.empty()) {
      if (++ops % 256 == 0 && std::chrono::steady_clock::now() > end) break;
      int dice = static_cast<int>(rng_() % 100);
      if (dice < 35) {
        OpPut();
      } else if (dice < 55) {
        OpErase();
      } else if (dice < 75) {
        OpFind(Key());
      } else if (dice < 87) {
        OpMulti();
      } else if (dice < 94) {
        OpExpire();
      } else {
        OpAppend();
      }
    }
    for (int i = 0; i < kKeysPerWriter && error_.empty(); i++) OpFind(KeyName(i));
    ops_ = ops;
    return error_;
  }

 private:
  std::string KeyName(int i) const { return testing::Name("w", id_) + testing::Name(":", i); }
  std::string Key() { return KeyName(static_cast<int>(rng_() % kKeysPerWriter)); }
  std::string Value() {
    size_t len = rng_() % 50 == 0 ? 16384 + rng_() % 30000 : rng_() % 300;
    std::string v(len, '\0');
    for (size_t i = 0; i < len; i++) v[i] = static_cast<char>(rng_());
    return v;
  }
  int64_t Expire(int64_t now) {
    switch (rng_() % 6) {
      case 0:
        return now + 3600000;  // far future
      case 1:
        return now + 20 + static_cast<int64_t>(rng_() % 200);  // expires during the run
      default:
        return 0;
    }
  }
  void Fail(const std::string& what) {
    if (error_.empty()) error_ = testing::Name("writer ", id_) + ": " + what;
  }

  // The model's view of `key` at the Txn's time; nullptr if absent or expired.
  const Expected* Model(const std::string& key, int64_t now) {
    auto it = model_.find(key);
    if (it == model_.end()) return nullptr;
    if (it->second.expire_ms != 0 && it->second.expire_ms <= now) {
      model_.erase(it);
      return nullptr;
    }
    return &it->second;
  }

  void Check(Store::Txn& txn, const std::string& key) {
    const Expected* want = Model(key, txn.now_ms());
    auto got = txn.Find(key);
    if (!want && got) Fail(key + " present, model says absent");
    if (want && !got) Fail(key + " absent, model says present");
    if (want && got && (got->value != want->value || got->expire_ms != want->expire_ms)) {
      Fail(key + " has the wrong value or expire time");
    }
  }

  void OpFind(const std::string& key) {
    Store::Txn txn = store_.Lock(key);
    Check(txn, key);
  }

  void OpPut() {
    std::string key = Key(), value = Value();
    Store::Txn txn = store_.Lock(key);
    int64_t expire = Expire(txn.now_ms());
    bool keep = rng_() % 10 == 0;
    const Expected* old = Model(key, txn.now_ms());
    if (txn.Put(key, value, keep ? kKeepTtl : expire) != Status::kOk) return Fail("Put failed");
    model_[key] = Expected{value, keep ? (old ? old->expire_ms : 0) : expire};
    Check(txn, key);
  }

  void OpErase() {
    std::string key = Key();
    Store::Txn txn = store_.Lock(key);
    bool want = Model(key, txn.now_ms()) != nullptr;
    if (txn.Erase(key) != want) Fail("Erase(" + key + ") disagrees with the model");
    model_.erase(key);
  }

  void OpMulti() {  // MSET-like, several stripes under one Txn
    std::vector<std::string> keys;
    for (int i = 0, n = 2 + static_cast<int>(rng_() % 6); i < n; i++) keys.push_back(Key());
    std::vector<std::string_view> views(keys.begin(), keys.end());
    Store::Txn txn = store_.LockKeys(views);
    for (const std::string& key : keys) {
      std::string value = Value();
      if (txn.Put(key, value) != Status::kOk) return Fail("multi-key Put failed");
      model_[key] = Expected{value, 0};
    }
    for (const std::string& key : keys) Check(txn, key);
  }

  void OpExpire() {
    std::string key = Key();
    Store::Txn txn = store_.Lock(key);
    int64_t expire = rng_() % 2 ? 0 : Expire(txn.now_ms());
    bool want = Model(key, txn.now_ms()) != nullptr;
    if (txn.SetExpire(key, expire) != want) Fail("SetExpire(" + key + ") disagrees with the model");
    if (want) model_[key].expire_ms = expire;
    Check(txn, key);
  }

  void OpAppend() {
    std::string key = Key();
    std::string suffix = Value().substr(0, 40);
    Store::Txn txn = store_.Lock(key);
    auto old = txn.Find(key);
    std::string_view base = old ? old->value : std::string_view();
    Status s = txn.PutWith(key, base.size() + suffix.size(), kKeepTtl, [&](char* dst) {
      memcpy(dst, base.data(), base.size());
      memcpy(dst + base.size(), suffix.data(), suffix.size());
    });
    if (s != Status::kOk) return Fail("append failed");
    const Expected* prev = Model(key, txn.now_ms());
    model_[key] = Expected{(prev ? prev->value : "") + suffix, prev ? prev->expire_ms : 0};
    Check(txn, key);
  }

  Store& store_;
  int id_;
  std::mt19937_64 rng_;
  std::unordered_map<std::string, Expected> model_;
  std::string error_;

 public:
  uint64_t ops_ = 0;
};

int RunWriter(const std::string& name, int id) {
  std::string error;
  auto store = Store::Attach(name, &error);
  if (!store) {
    fprintf(stderr, "writer %d: %s\n", id, error.c_str());
    return 2;
  }
  Writer writer(*store, id, 1000 + id);
  std::string failure = writer.Run(std::chrono::milliseconds(2500));
  printf("writer %d: %llu operations checked against its model\n", id,
         static_cast<unsigned long long>(writer.ops_));
  if (!failure.empty()) {
    fprintf(stderr, "%s\n", failure.c_str());
    return 1;
  }
  return 0;
}

int RunObserver(const std::string& name, std::atomic<int>* stop) {
  std::string error;
  auto store = Store::Attach(name, &error);
  if (!store) return 2;
  uint64_t scans = 0;
  while (stop->load() == 0) {
    uint64_t cursor = 0;
    bool bad = false;
    do {
      cursor = store->Scan(cursor, 100, [&](std::string_view key, const EntryView&) {
        if (key.empty() || key[0] != 'w') bad = true;
      });
      store->ExpireCycle(Store::NowMs(), std::chrono::microseconds(500));
    } while (cursor != 0 && stop->load() == 0);
    if (bad) {
      fprintf(stderr, "observer: scan returned a malformed key\n");
      return 1;
    }
    if (auto key = store->RandomKey(); key && (*key)[0] != 'w') return 1;
    store->stats();
    scans++;
  }
  return scans > 0 ? 0 : 3;
}

TEST(StressTest, ConcurrentWritersAndAnObserverAgreeWithTheirModels) {
  StoreOptions o = testing::Options(128 * kMB, 64);
  testing::TestStore store(o);
  ASSERT_TRUE(store.get());
  auto* stop = static_cast<std::atomic<int>*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(stop, MAP_FAILED);
  stop->store(0);
  std::string name = store.name();
  std::vector<pid_t> writers;
  for (int id = 0; id < kWriters; id++) {
    writers.push_back(testing::ForkChild([&] { return RunWriter(name, id); }));
  }
  pid_t observer = testing::ForkChild([&] { return RunObserver(name, stop); });
  for (pid_t pid : writers) {
    int status = testing::WaitChild(pid, std::chrono::seconds(30));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer status " << status;
  }
  stop->store(1);
  int status = testing::WaitChild(observer, std::chrono::seconds(30));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "observer status " << status;
  munmap(stop, 4096);

  std::vector<std::string> errors;
  testing::WithWatchdog("auditing after the stress run", std::chrono::seconds(10),
                        [&] { errors = store->Audit(); });
  EXPECT_TRUE(errors.empty()) << testing::JoinErrors(errors);
  Stats st = store->stats();
  EXPECT_GT(st.keys, 1000u);
  EXPECT_GT(st.expired, 0u);
  EXPECT_EQ(st.repairs, 0u);
  store->Flush();
  EXPECT_EQ(store->stats().used_bytes, 0u);
  EXPECT_EQ(store->stats().pages_free, store->stats().pages_total);
}

}  // namespace
}  // namespace redhub::shm
