// Crash tests: child processes write and erase at full speed and log every
// operation; the parent SIGKILLs them at random instants, or they kill
// themselves at a named crash point. After every death the parent locks every
// stripe under a watchdog (no deadlock), audits every invariant (no torn
// entry, no leak), and checks that every acknowledged write is there with its
// value (an operation in flight at the kill may show its old or new state).
//
// The log is a shared-memory array rather than a pipe: a record is two stores
// instead of a write(2), so the children spend their time inside the store,
// which is where the kills have to land.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cinttypes>
#include <random>
#include <thread>
#include <vector>

#include "shm_test_util.h"
#include "store.h"

namespace redhub::shm {
namespace {

using testing::WithWatchdog;

constexpr uint64_t kMB = 1 << 20;
constexpr int kChildren = 2;
constexpr uint32_t kKeysPerChild = 1500;
constexpr uint32_t kMaxRecords = 1 << 18;
constexpr int64_t kFarFuture = int64_t{4102444800000};  // 2100-01-01, in ms

enum Op : uint32_t { kPut = 1, kErase = 2 };

struct Record {
  uint64_t seq;
  uint32_t key;
  uint32_t op;
  uint32_t len;
  uint32_t has_ttl;
  std::atomic<uint32_t> acked;
};

struct ChildLog {
  std::atomic<uint64_t> count;
  Record records[kMaxRecords];
};

std::string KeyName(uint32_t key) { return testing::Name("key:", key); }

// The value of (key, seq) is a deterministic function of both, so the parent
// can tell exactly which write a stored value came from.
void FillValue(uint32_t key, uint64_t seq, uint32_t len, char* dst) {
  uint64_t x = (uint64_t{key} << 40) ^ seq ^ 0x9E3779B97F4A7C15ULL;
  uint32_t i = 0;
  for (; i + 8 <= len; i += 8) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    memcpy(dst + i, &x, 8);
  }
  x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  for (; i < len; i++) dst[i] = static_cast<char>(x >> (8 * (i & 7)));
}

bool ValueIs(std::string_view v, uint32_t key, uint64_t seq, uint32_t len) {
  if (v.size() != len) return false;
  std::string expect(len, '\0');
  FillValue(key, seq, len, expect.data());
  return v == expect;
}

// One possible state of a key.
struct KeyState {
  bool present = false;
  uint64_t seq = 0;
  uint32_t len = 0;
  bool has_ttl = false;
};

struct ChildPlan {
  std::string name;
  uint32_t first_key = 0;
  uint32_t keys = kKeysPerChild;
  uint64_t seed = 1;
  uint64_t first_seq = 1;
  uint64_t max_ops = ~uint64_t{0};
  uint64_t phase_ops = 400;   // ops per growth or shrink phase
  uint32_t put_percent = 75;  // in a growth phase; 100 - this in a shrink phase
  CrashPoint crash = CrashPoint::kNone;
  uint32_t crash_nth = 1;
};

// The child: random puts (sizes from 0 bytes to 70 KB, some with an expire
// time) and erases, alternating growth and shrink phases so that stripes
// rehash both ways, sometimes several keys under one multi-stripe Txn.
int RunChild(const ChildPlan& plan, ChildLog* log) {
  std::string error;
  auto store = Store::Attach(plan.name, &error);
  if (!store) {
    fprintf(stderr, "child: %s\n", error.c_str());
    return 2;
  }
  if (plan.crash != CrashPoint::kNone) ArmCrashPointForTesting(plan.crash, plan.crash_nth);
  std::mt19937_64 rng(plan.seed);
  uint64_t seq = plan.first_seq;
  uint64_t n = 0;
  bool grow = true;
  std::vector<std::string> names;
  for (uint64_t op = 0; op < plan.max_ops && n + 8 < kMaxRecords; op++) {
    if (op % plan.phase_ops == 0) grow = !grow;
    int batch = rng() % 16 == 0 ? 1 + static_cast<int>(rng() % 4) : 1;
    std::vector<uint32_t> keys;
    names.clear();
    for (int b = 0; b < batch; b++) {
      uint32_t key = plan.first_key + static_cast<uint32_t>(rng() % plan.keys);
      if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
      keys.push_back(key);
      names.push_back(KeyName(key));
    }
    std::vector<std::string_view> views(names.begin(), names.end());
    // A multi-key Txn's writes are acknowledged when it ends (store.h):
    // until then they are all in flight.
    const bool multi = views.size() > 1;
    const uint64_t batch_first = n;
    Store::Txn txn = multi ? store->LockKeys(views) : store->Lock(views[0]);
    for (size_t b = 0; b < keys.size(); b++) {
      Record& r = log->records[n];
      r.seq = seq++;
      r.key = keys[b];
      r.op = rng() % 100 < (grow ? plan.put_percent : 100 - plan.put_percent) ? kPut : kErase;
      uint32_t size_class = static_cast<uint32_t>(rng() % 100);
      r.len = size_class < 90   ? static_cast<uint32_t>(rng() % 120)
              : size_class < 98 ? 120 + static_cast<uint32_t>(rng() % 20000)
                                : 20000 + static_cast<uint32_t>(rng() % 50000);
      r.has_ttl = rng() % 4 == 0;
      r.acked.store(0, std::memory_order_relaxed);
      log->count.store(++n, std::memory_order_release);
      if (r.op == kPut) {
        Status s = txn.PutWith(names[b], r.len, r.has_ttl ? kFarFuture + int64_t(r.seq) : 0,
                               [&](char* dst) { FillValue(r.key, r.seq, r.len, dst); });
        if (s != Status::kOk) {
          fprintf(stderr, "child: Put failed: %d\n", static_cast<int>(s));
          return 3;
        }
      } else {
        txn.Erase(names[b]);
      }
      if (!multi) r.acked.store(1, std::memory_order_release);
    }
    txn.Unlock();
    if (multi) {
      for (uint64_t i = batch_first; i < n; i++) {
        log->records[i].acked.store(1, std::memory_order_release);
      }
    }
    if (op % 512 == 511) store->ExpireCycle(Store::NowMs(), std::chrono::microseconds(200));
  }
  return 0;
}

class CrashTest : public ::testing::Test {
 protected:
  void SetUpStore(uint64_t data_bytes, uint32_t stripes, uint64_t maxmemory, Policy policy) {
    StoreOptions o = testing::Options(data_bytes, stripes);
    o.maxmemory = maxmemory;
    o.policy = policy;
    evicting_ = maxmemory != 0;
    store_ = std::make_unique<testing::TestStore>(o);
    ASSERT_TRUE(store_->get());
    possible_.assign(kChildren * kKeysPerChild, {KeyState{}});
    initial_free_pages_ = (*store_)->stats().pages_free;
    ASSERT_EQ(initial_free_pages_, (*store_)->stats().pages_total);
    for (int c = 0; c < kChildren; c++) {
      void* p = mmap(nullptr, sizeof(ChildLog), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                     -1, 0);
      ASSERT_NE(p, MAP_FAILED);
      logs_[c] = static_cast<ChildLog*>(p);
    }
  }

  void TearDown() override {
    for (ChildLog* log : logs_) {
      if (log != nullptr) munmap(log, sizeof(ChildLog));
    }
  }

  Store& store() { return **store_; }

  pid_t Spawn(int slot, ChildPlan plan) {
    plan.name = store_->name();
    plan.seed = rng_();
    plan.first_seq = next_seq_;
    next_seq_ += kMaxRecords;
    logs_[slot]->count.store(0);
    pending_logs_.push_back(slot);
    ChildLog* log = logs_[slot];
    return testing::ForkChild([plan, log] { return RunChild(plan, log); });
  }

  // Folds the logs of the children that ran since the last check into the
  // set of states each key may be in, in the order the children ran.
  void ApplyLogs() {
    for (int slot : pending_logs_) {
      ChildLog* log = logs_[slot];
      uint64_t n = log->count.load(std::memory_order_acquire);
      for (uint64_t i = 0; i < n; i++) {
        const Record& r = log->records[i];
        KeyState s;
        s.present = r.op == kPut;
        s.seq = r.seq;
        s.len = r.len;
        s.has_ttl = r.has_ttl;
        auto& states = possible_[r.key];
        if (r.acked.load(std::memory_order_acquire)) {
          states = {s};
        } else {
          states.push_back(s);  // in flight when the child died: old or new
        }
      }
      kills_in_flight_ += n > 0 && !log->records[n - 1].acked.load();
    }
    pending_logs_.clear();
  }

  // After every death: every stripe can be locked (the watchdog turns a
  // deadlock into a failure), every invariant holds, every key is in one of
  // its possible states. Returns false after reporting a failure.
  bool CheckEverything(const std::string& when) {
    ApplyLogs();
    std::vector<std::string> errors;
    std::string mismatch;
    WithWatchdog("locking every stripe " + when, std::chrono::seconds(5), [&] {
      errors = store().Audit();
      for (uint32_t k = 0; k < possible_.size() && mismatch.empty(); k++) {
        std::string name = KeyName(k);
        Store::Txn txn = store().Lock(name);
        auto e = txn.Find(name);
        KeyState actual;
        bool matched = false;
        for (const KeyState& s : possible_[k]) {
          if (!s.present && !e) {
            matched = true;
          } else if (s.present && e && ValueIs(e->value, k, s.seq, s.len) &&
                     e->expire_ms == (s.has_ttl ? kFarFuture + int64_t(s.seq) : 0)) {
            matched = true;
          }
          if (matched) {
            actual = s;
            break;
          }
        }
        if (!matched && !e && evicting_) {  // evicted: allowed, but never an old value
          matched = true;
          actual = KeyState{};
        }
        if (!matched) {
          mismatch = name + ": stored " +
                     (e ? testing::Name("a value of ", e->value.size()) + " bytes" : "nothing") +
                     ", acknowledged state: " +
                     (possible_[k][0].present ? testing::Name("seq ", possible_[k][0].seq) +
                                                    " len " + std::to_string(possible_[k][0].len)
                                              : "absent") +
                     testing::Name(" (+", possible_[k].size() - 1) + " in flight)";
        }
        possible_[k] = {actual};
      }
    });
    if (!errors.empty()) {
      ADD_FAILURE() << when << ": audit found:\n" << testing::JoinErrors(errors);
      return false;
    }
    if (!mismatch.empty()) {
      ADD_FAILURE() << when << ": lost or torn write: " << mismatch;
      return false;
    }
    if (store().stats().validation_errors != 0) {
      ADD_FAILURE() << when << ": a repair found corrupt entries";
      return false;
    }
    return true;
  }

  void ExpectEverythingErasable() {
    store().Flush();
    Stats st = store().stats();
    EXPECT_EQ(st.keys, 0u);
    EXPECT_EQ(st.used_bytes, 0u);
    EXPECT_EQ(st.pages_free, initial_free_pages_) << "pages leaked";
    auto errors = store().Audit();
    EXPECT_TRUE(errors.empty()) << testing::JoinErrors(errors);
    EXPECT_EQ(store().stats().validation_errors, 0u);
  }

  // Kills children at random instants, `iterations` times.
  void RandomKills(int iterations) {
    std::uniform_int_distribution<int> delay_us(200, 12000);
    for (int i = 0; i < iterations; i++) {
      pid_t pids[kChildren];
      for (int c = 0; c < kChildren; c++) {
        ChildPlan plan;
        plan.first_key = c * kKeysPerChild;
        pids[c] = Spawn(c, plan);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng_)));
      // Usually both at once (one may die while repairing after the other).
      int victim = rng_() % 3;
      for (int c = 0; c < kChildren; c++) {
        if (victim == 2 || victim == c) kill(pids[c], SIGKILL);
      }
      if (victim != 2) {
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng_) / 4));
        kill(pids[1 - victim], SIGKILL);
      }
      for (pid_t pid : pids) {
        int status = testing::WaitChild(pid);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
          ADD_FAILURE() << "child ended with status " << status << " before the kill";
          return;
        }
      }
      if (!CheckEverything(testing::Name("after random kill ", i))) return;
    }
  }

  // Runs one child armed with `point`; returns whether it died there.
  bool CrashAt(CrashPoint point, uint32_t nth, int slot = 0) {
    ChildPlan plan;
    // Long phases fill and empty the stripes: many grow and shrink rehashes.
    if (point == CrashPoint::kRehashMove || point == CrashPoint::kRehashFinish) {
      plan.phase_ops = 4000;
      plan.put_percent = 97;
    }
    plan.first_key = slot * kKeysPerChild;
    plan.crash = point;
    plan.crash_nth = nth;
    plan.max_ops = 40000;
    pid_t pid = Spawn(slot, plan);
    int status = testing::WaitChild(pid, std::chrono::seconds(10));
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return true;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
    return false;
  }

  std::unique_ptr<testing::TestStore> store_;
  ChildLog* logs_[kChildren] = {};
  std::vector<int> pending_logs_;
  std::vector<std::vector<KeyState>> possible_;
  // SHM_CRASH_SEED=n varies the kill instants and workloads (soak runs).
  std::mt19937_64 rng_{getenv("SHM_CRASH_SEED") ? strtoull(getenv("SHM_CRASH_SEED"), nullptr, 10)
                                                : 12345};
  uint64_t next_seq_ = 1;
  uint64_t initial_free_pages_ = 0;
  int kills_in_flight_ = 0;
  bool evicting_ = false;
};

TEST_F(CrashTest, RandomKillsLoseNoAcknowledgedWrite) {
  SetUpStore(64 * kMB, 8, 0, Policy::kNoEviction);
  int iterations = getenv("SHM_CRASH_KILLS") ? atoi(getenv("SHM_CRASH_KILLS")) : 200;
  RandomKills(iterations);
  Stats st = store().stats();
  printf("random kills: %d iterations, %" PRIu64 " stripe repairs, %" PRIu64
         " pool repairs, %d kills with an operation in flight\n",
         iterations, st.repairs, st.pool_repairs, kills_in_flight_);
  EXPECT_GT(st.repairs, 0u);
  ExpectEverythingErasable();
}

TEST_F(CrashTest, KillsAtEveryCrashPoint) {
  SetUpStore(64 * kMB, 8, 0, Policy::kNoEviction);
  const CrashPoint points[] = {
      CrashPoint::kPoolAlloc,   CrashPoint::kPoolFree,      CrashPoint::kSlabAlloc,
      CrashPoint::kSlabFree,    CrashPoint::kBeforePublish, CrashPoint::kAfterPublish,
      CrashPoint::kAfterUnlink, CrashPoint::kRehashMove,    CrashPoint::kRehashFinish,
  };
  for (CrashPoint point : points) {
    int reached = 0;
    for (int rep = 0; rep < 8; rep++) {
      uint32_t nth =
          1 + static_cast<uint32_t>(rng_() % (point == CrashPoint::kRehashFinish ? 20 : 200));
      reached += CrashAt(point, nth);
      ASSERT_TRUE(CheckEverything(std::string("after a kill at ") + CrashPointName(point)));
    }
    printf("crash point %-15s reached %d/8\n", CrashPointName(point), reached);
    EXPECT_GT(reached, 0) << CrashPointName(point) << " never reached";
  }
  // A death during a repair: the next locker repairs again.
  for (int rep = 0; rep < 6; rep++) {
    bool pool = rep % 2 == 1;
    ASSERT_TRUE(CrashAt(pool ? CrashPoint::kPoolAlloc : CrashPoint::kAfterPublish,
                        1 + static_cast<uint32_t>(rng_() % 50)));
    uint64_t repairs = store().stats().repairs;
    // Another child (its own log and keys; with 8 stripes it soon locks the
    // dead one's stripe) dies in the middle of the repair.
    bool died = CrashAt(pool ? CrashPoint::kRepairPool : CrashPoint::kRepairStripe, 1, 1);
    EXPECT_TRUE(died) << "the second child did not die repairing";
    EXPECT_EQ(store().stats().repairs, repairs) << "a repair that died was counted";
    ASSERT_TRUE(CheckEverything("after a death during a repair"));
  }
  EXPECT_GT(store().stats().repairs, 0u);
  EXPECT_GT(store().stats().pool_repairs, 0u);
  ExpectEverythingErasable();
}

TEST_F(CrashTest, KillsWhileEvictingUnderMaxmemory) {
  SetUpStore(16 * kMB, 8, 2 * kMB, Policy::kAllKeysLru);
  int reached = 0;
  for (int rep = 0; rep < 16; rep++) {
    uint64_t repairs = store().stats().repairs;
    // A child that dies there dies holding the evicted entry's stripe(s):
    // checking locks every stripe, which repairs them.
    bool died =
        CrashAt(CrashPoint::kEvict, 1 + static_cast<uint32_t>(rng_() % 300), rep % kChildren);
    reached += died;
    ASSERT_TRUE(CheckEverything("after a kill while evicting"));
    if (died) {
      EXPECT_GT(store().stats().repairs, repairs) << "rep " << rep << ": no repair";
    }
    EXPECT_LE(store().stats().used_bytes, 2 * kMB + 80 * 1024);
  }
  printf("crash point evict reached %d/16\n", reached);
  // Each child writes far past 2 MB, evicting on almost every write once
  // the store is full (the first child may finish filling it first).
  EXPECT_GE(reached, 12) << "the eviction crash point was seldom reached";
  RandomKills(40);
  EXPECT_GT(store().stats().evicted, 0u);
  ExpectEverythingErasable();
}

}  // namespace
}  // namespace redhub::shm
