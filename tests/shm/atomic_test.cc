// Multi-key Txns are all or nothing across a death. A child process runs
// multi-stripe Txns (MSET of 2..16 keys on distinct stripes, RENAME as
// Find(src) -> Put(dst, view of src) -> Erase(src), MSETNX, and mixes of
// Put/Erase/SetExpire, some on the same key twice) and reports each one over
// a pipe after its Txn's destructor returned. It is SIGKILLed at random
// instants or kills itself at a named crash point. Then a fresh process
// attaches, reads every key in a random order (each lock may repair its
// stripe), audits the store, and compares: the keyspace must be exactly the
// acknowledged Txns' result, or that plus the whole of the one Txn that was
// in flight.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "shm_test_util.h"
#include "store.h"

namespace redhub::shm {
namespace {

using testing::WithWatchdog;

constexpr uint64_t kMB = 1 << 20;
constexpr uint32_t kStripes = 32;
constexpr uint32_t kKeys = 256;
constexpr int64_t kFarFuture = int64_t{4102444800000};  // 2100-01-01, in ms

std::string KeyName(uint32_t k) { return testing::Name("a:", k); }

// ---------------------------------------------------------------------------
// Txn plans: a deterministic function of (seed, txn id), so the parent can
// replay what the child did.

// kCrowded: every key of two stripes (~16), more than a stripe header's
// inline redo log holds, so the log spills into a chunk.
enum class Mode { kMixed, kMset, kRename, kCrowded };
enum StepKind { kPut, kErase, kExpire, kRename };

struct Step {
  StepKind kind;
  uint32_t key;
  uint32_t key2;  // rename: destination
  uint32_t len;
  int64_t expire;
};

struct Plan {
  bool msetnx = false;  // the Puts happen only if no key exists
  std::vector<Step> steps;
  std::vector<uint32_t> keys;  // to lock
};

std::string ValueOf(uint64_t id, size_t step, uint32_t key, uint32_t len) {
  std::string v = testing::Name("t", id) + testing::Name("/", step) + testing::Name("/", key) + ":";
  uint64_t x = id * 0x9E3779B97F4A7C15ULL ^ key;
  while (v.size() < len) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    v.push_back(static_cast<char>('a' + (x >> 59)));
  }
  return v;
}

// `stripe_of` maps a key to its stripe (the plan wants distinct stripes).
template <typename StripeOf>
Plan MakePlan(uint64_t seed, uint64_t id, Mode mode, const StripeOf& stripe_of) {
  std::mt19937_64 rng(seed ^ (id * 0xD1B54A32D192ED03ULL));
  auto len = [&] {
    return rng() % 10 == 0 ? 200 + static_cast<uint32_t>(rng() % 20000)
                           : 20 + static_cast<uint32_t>(rng() % 100);
  };
  auto expire = [&] { return rng() % 3 == 0 ? kFarFuture + static_cast<int64_t>(id) : 0; };
  // n keys on distinct stripes (fewer if unlucky).
  auto distinct = [&](size_t n) {
    std::vector<uint32_t> keys;
    std::vector<uint32_t> used;
    for (int tries = 0; keys.size() < n && tries < 400; tries++) {
      uint32_t k = static_cast<uint32_t>(rng() % kKeys);
      uint32_t s = stripe_of(k);
      if (std::find(used.begin(), used.end(), s) != used.end()) continue;
      used.push_back(s);
      keys.push_back(k);
    }
    return keys;
  };
  Plan p;
  if (mode == Mode::kCrowded) {
    uint32_t s1 = static_cast<uint32_t>(rng() % kStripes), s2 = (s1 + 1) % kStripes;
    for (uint32_t k = 0; k < kKeys; k++) {
      if (stripe_of(k) == s1 || stripe_of(k) == s2) p.keys.push_back(k);
    }
    for (uint32_t k : p.keys) {
      uint64_t d = rng() % 10;
      if (d < 6) {
        p.steps.push_back(Step{kPut, k, 0, len(), expire()});
      } else if (d < 8) {
        p.steps.push_back(Step{kErase, k, 0, 0, 0});
      } else {
        p.steps.push_back(Step{kExpire, k, 0, 0, expire()});
      }
    }
    return p;
  }
  uint64_t dice = mode == Mode::kMset ? 0 : mode == Mode::kRename ? 1 : rng() % 4;
  if (dice == 0 || dice == 3) {  // MSET of 2..16 keys, or MSETNX of 2..5
    p.msetnx = dice == 3;
    p.keys = distinct(p.msetnx ? 2 + rng() % 4 : 2 + rng() % 15);
    for (uint32_t k : p.keys) p.steps.push_back(Step{kPut, k, 0, len(), expire()});
  } else if (dice == 1) {  // RENAME src dst, on two stripes
    p.keys = distinct(2);
    p.steps.push_back(Step{kRename, p.keys[0], p.keys[1], 0, 0});
  } else {  // a mix, some keys written twice
    p.keys = distinct(2 + rng() % 5);
    for (size_t i = 0, n = p.keys.size() + rng() % 4; i < n; i++) {
      uint32_t k = p.keys[rng() % p.keys.size()];
      switch (rng() % 6) {
        case 0:
        case 1:
        case 2:
          p.steps.push_back(Step{kPut, k, 0, len(), rng() % 4 == 0 ? kKeepTtl : expire()});
          break;
        case 3:
          p.steps.push_back(Step{kErase, k, 0, 0, 0});
          break;
        case 4:
          p.steps.push_back(Step{kExpire, k, 0, 0, expire()});
          break;
        default: {
          uint32_t d = p.keys[rng() % p.keys.size()];
          if (d != k) p.steps.push_back(Step{kRename, k, d, 0, 0});
        }
      }
    }
  }
  return p;
}

// ---------------------------------------------------------------------------
// The model: what the keyspace holds.

struct Value {
  std::string value;
  int64_t expire = 0;
  bool operator==(const Value&) const = default;
};
using Model = std::map<uint32_t, Value>;

void ApplyToModel(const Plan& p, uint64_t id, Model& m) {
  if (p.msetnx) {
    for (uint32_t k : p.keys) {
      if (m.count(k)) return;
    }
  }
  for (size_t i = 0; i < p.steps.size(); i++) {
    const Step& s = p.steps[i];
    switch (s.kind) {
      case kPut: {
        int64_t expire = s.expire;
        if (expire == kKeepTtl) expire = m.count(s.key) ? m[s.key].expire : 0;
        m[s.key] = Value{ValueOf(id, i, s.key, s.len), expire};
        break;
      }
      case kErase:
        m.erase(s.key);
        break;
      case kExpire:
        if (m.count(s.key)) m[s.key].expire = s.expire;
        break;
      case kRename:
        if (m.count(s.key)) {
          Value v = m[s.key];
          m[s.key2] = v;
          m.erase(s.key);
        }
        break;
    }
  }
}

// The child's side: runs the plan through one Txn and checks that the Txn
// reads its own writes. Returns an error, empty if none.
std::string ApplyToStore(Store& store, const Plan& p, uint64_t id) {
  std::vector<std::string> names;
  for (uint32_t k : p.keys) names.push_back(KeyName(k));
  std::vector<std::string_view> views(names.begin(), names.end());
  Store::Txn txn = store.LockKeys(views);
  if (p.msetnx) {
    for (const std::string& n : names) {
      if (txn.Peek(n)) return "";
    }
  }
  for (size_t i = 0; i < p.steps.size(); i++) {
    const Step& s = p.steps[i];
    std::string key = KeyName(s.key);
    switch (s.kind) {
      case kPut: {
        std::string value = ValueOf(id, i, s.key, s.len);
        if (txn.Put(key, value, s.expire) != Status::kOk) return "Put failed";
        auto e = txn.Find(key);
        if (!e || e->value != value) return "a Find after a Put did not see it";
        break;
      }
      case kErase:
        txn.Erase(key);
        if (txn.Find(key)) return "a Find after an Erase saw the key";
        break;
      case kExpire:
        if (txn.SetExpire(key, s.expire)) {
          auto e = txn.Peek(key);
          if (!e || e->expire_ms != s.expire) return "a Peek after SetExpire did not see it";
        }
        break;
      case kRename: {  // as worker/ does RENAME
        std::string dst = KeyName(s.key2);
        auto e = txn.Find(key);
        if (!e) break;
        if (txn.Put(dst, e->value, e->expire_ms) != Status::kOk) return "rename Put failed";
        txn.Erase(key);
        auto d = txn.Find(dst);
        if (txn.Find(key) || !d) return "rename not visible inside its Txn";
        break;
      }
    }
  }
  return "";
}

// ---------------------------------------------------------------------------

struct ChildPlan {
  std::string name;
  uint64_t seed = 1;
  uint64_t first_id = 0;
  uint64_t max_txns = ~uint64_t{0};
  Mode mode = Mode::kMixed;
  CrashPoint crash = CrashPoint::kNone;
  uint32_t crash_nth = 1;
};

int RunChild(const ChildPlan& plan, int ack_fd) {
  std::string error;
  auto store = Store::Attach(plan.name, &error);
  if (!store) {
    fprintf(stderr, "child: %s\n", error.c_str());
    return 2;
  }
  if (plan.crash != CrashPoint::kNone) ArmCrashPointForTesting(plan.crash, plan.crash_nth);
  auto stripe_of = [&](uint32_t k) { return store->StripeOf(KeyName(k)); };
  for (uint64_t id = plan.first_id; id < plan.first_id + plan.max_txns; id++) {
    Plan p = MakePlan(plan.seed, id, plan.mode, stripe_of);
    std::string err = ApplyToStore(*store, p, id);  // the Txn ends inside
    if (!err.empty()) {
      fprintf(stderr, "child: txn %llu: %s\n", static_cast<unsigned long long>(id), err.c_str());
      return 3;
    }
    if (write(ack_fd, &id, sizeof(id)) != sizeof(id)) return 4;
  }
  return 0;
}

class AtomicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<testing::TestStore>(testing::Options(32 * kMB, kStripes));
    ASSERT_TRUE(store_->get());
    initial_free_pages_ = store().stats().pages_free;
  }

  Store& store() { return **store_; }
  Plan PlanOf(uint64_t id, Mode mode) {
    return MakePlan(seed_, id, mode, [&](uint32_t k) { return store().StripeOf(KeyName(k)); });
  }

  // Starts a child running Txns from next_id_; returns its pid, the read end
  // of its acknowledgement pipe in *ack_fd.
  pid_t Spawn(Mode mode, CrashPoint crash, uint32_t nth, uint64_t max_txns, int* ack_fd) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    ChildPlan plan;
    plan.name = store_->name();
    plan.seed = seed_;
    plan.first_id = next_id_;
    plan.max_txns = max_txns;
    plan.mode = mode;
    plan.crash = crash;
    plan.crash_nth = nth;
    int write_fd = fds[1];
    int read_fd = fds[0];
    pid_t pid = testing::ForkChild([plan, write_fd, read_fd] {
      close(read_fd);
      return RunChild(plan, write_fd);
    });
    close(write_fd);
    *ack_fd = read_fd;
    return pid;
  }

  // After the child is gone: folds the acknowledged Txns into the model and
  // returns the id of the one that may have been in flight.
  uint64_t ReadAcks(int ack_fd, Mode mode) {
    uint64_t id;
    while (read(ack_fd, &id, sizeof(id)) == sizeof(id)) {
      EXPECT_EQ(id, next_id_) << "acknowledgements out of order";
      ApplyToModel(PlanOf(id, mode), id, model_);
      next_id_ = id + 1;
    }
    close(ack_fd);
    return next_id_;
  }

  // A fresh process attaches, reads every key in a random order (repairing
  // stripes as it locks them), audits, and compares with the model before
  // and after the in-flight Txn. Returns 0 (none of it), 1 (all of it),
  // 2 (both: the Txn changed nothing), or -1 after reporting a failure.
  // in_flight ~0: none.
  int Verify(const std::string& when, uint64_t in_flight, Mode mode) {
    Model before = model_;
    Model after = model_;
    if (in_flight != ~uint64_t{0}) ApplyToModel(PlanOf(in_flight, mode), in_flight, after);
    std::string name = store_->name();
    int fds[2];
    if (pipe(fds) != 0) return -1;
    uint64_t order_seed = rng_();
    pid_t pid = testing::ForkChild([&] {
      close(fds[0]);
      std::string error;
      auto other = Store::Attach(name, &error);
      std::string report;
      int rc = 0;
      if (!other) {
        report = "attach: " + error;
        rc = 5;
      } else {
        std::vector<uint32_t> order(kKeys);
        for (uint32_t k = 0; k < kKeys; k++) order[k] = k;
        std::shuffle(order.begin(), order.end(), std::mt19937_64(order_seed));
        Model seen;
        for (uint32_t k : order) {
          std::string key = KeyName(k);
          Store::Txn txn = other->Lock(key);
          if (auto e = txn.Find(key)) seen[k] = Value{std::string(e->value), e->expire_ms};
        }
        auto errors = other->Audit();
        if (!errors.empty()) {
          report = "audit:\n" + testing::JoinErrors(errors);
          rc = 6;
        } else if (other->stats().validation_errors != 0) {
          report = "a repair found corrupt entries";
          rc = 7;
        } else if (seen == before && seen == after) {
          rc = 2;
        } else if (seen == before) {
          rc = 0;
        } else if (seen == after) {
          rc = 1;
        } else {
          // Say which keys differ from each candidate.
          auto diff = [&](const Model& m) {
            std::string out;
            for (uint32_t k = 0; k < kKeys; k++) {
              bool a = seen.count(k), b = m.count(k);
              if (a != b || (a && !(seen.at(k) == m.at(k)))) {
                out += " " + KeyName(k) + (a ? "(present)" : "(absent)");
              }
            }
            return out;
          };
          report = "torn: differs from the acknowledged state at" + diff(before) +
                   "; from it plus the in-flight txn at" + diff(after);
          rc = 8;
        }
      }
      if (!report.empty()) (void)!write(fds[1], report.data(), report.size());
      close(fds[1]);
      return rc;
    });
    close(fds[1]);
    int status = 0;
    WithWatchdog("verifying " + when, std::chrono::seconds(10),
                 [&] { status = testing::WaitChild(pid, std::chrono::seconds(9)); });
    std::string report;
    char buf[4096];
    for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) report.append(buf, n);
    close(fds[0]);
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 2) {
      ADD_FAILURE() << when << ": verifier status " << status << ": " << report;
      return -1;
    }
    int outcome = WEXITSTATUS(status);
    if (outcome == 1) model_ = after;  // the in-flight Txn is part of the state now
    // Applied or not, it is never run again.
    if (in_flight != ~uint64_t{0}) next_id_ = in_flight + 1;
    return outcome;
  }

  // Runs a child armed at `point`; returns whether it died there, and the
  // verified outcome in *outcome.
  bool CrashAt(CrashPoint point, uint32_t nth, Mode mode, int* outcome) {
    int ack_fd;
    pid_t pid = Spawn(mode, point, nth, 300, &ack_fd);
    int status = testing::WaitChild(pid, std::chrono::seconds(10));
    bool died = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    EXPECT_TRUE(died || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
        << "child status " << status;
    uint64_t in_flight = ReadAcks(ack_fd, mode);
    *outcome = Verify(std::string("after a kill at ") + CrashPointName(point), in_flight, mode);
    return died;
  }

  // Fills the keyspace with a child's MSETs, run to completion.
  void Prefill(uint64_t txns) {
    int ack_fd;
    pid_t pid = Spawn(Mode::kMset, CrashPoint::kNone, 1, txns, &ack_fd);
    int status = testing::WaitChild(pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    uint64_t next = ReadAcks(ack_fd, Mode::kMset);
    ASSERT_EQ(Verify("after the prefill", next, Mode::kMset), 0);
  }

  void ExpectNoLeak() {
    store().Flush();
    Stats st = store().stats();
    EXPECT_EQ(st.keys, 0u);
    EXPECT_EQ(st.used_bytes, 0u);
    EXPECT_EQ(st.pages_free, initial_free_pages_) << "pages leaked";
    auto errors = store().Audit();
    EXPECT_TRUE(errors.empty()) << testing::JoinErrors(errors);
  }

  std::unique_ptr<testing::TestStore> store_;
  Model model_;
  uint64_t next_id_ = 0;
  uint64_t initial_free_pages_ = 0;
  uint64_t seed_ =
      getenv("SHM_CRASH_SEED") ? strtoull(getenv("SHM_CRASH_SEED"), nullptr, 10) : 20261125;
  std::mt19937_64 rng_{seed_};
};

// No death: a multi-key Txn reads its own writes, and its writes appear
// together at its end.
TEST_F(AtomicTest, ReadsItsOwnWritesAndPublishesAtTheEnd) {
  std::vector<std::string> names;
  for (int i = 0; i < 8; i++) names.push_back(testing::Name("k", i));
  std::vector<std::string_view> keys(names.begin(), names.end());
  {
    Store::Txn txn = store().LockKeys(keys);
    ASSERT_EQ(txn.Put("k0", "src", kFarFuture), Status::kOk);
    ASSERT_EQ(txn.Put("k1", "old"), Status::kOk);
  }
  std::string name = store_->name();
  auto visible_elsewhere = [&](const std::string& key) {
    pid_t pid = testing::ForkChild([&] {
      std::string error;
      auto other = Store::Attach(name, &error);
      Store::Txn txn = other->Lock(key);
      return txn.Find(key) ? 1 : 0;
    });
    int status = testing::WaitChild(pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 1;
  };
  {
    Store::Txn txn = store().LockKeys(keys);
    // RENAME k0 k2 as worker/ does it.
    auto src = txn.Find("k0");
    ASSERT_TRUE(src);
    ASSERT_EQ(txn.Put("k2", src->value, src->expire_ms), Status::kOk);
    EXPECT_TRUE(txn.Erase("k0"));
    EXPECT_EQ(src->value, "src");  // the view of the erased value stays valid
    EXPECT_FALSE(txn.Find("k0"));
    EXPECT_FALSE(txn.Erase("k0"));
    auto dst = txn.Find("k2");
    ASSERT_TRUE(dst);
    EXPECT_EQ(dst->value, "src");
    EXPECT_EQ(dst->expire_ms, kFarFuture);
    // Put twice, KEEPTTL over a staged value, SetExpire on a staged value.
    ASSERT_EQ(txn.Put("k3", "a", kFarFuture + 1), Status::kOk);
    ASSERT_EQ(txn.Put("k3", "bb", kKeepTtl), Status::kOk);
    EXPECT_EQ(txn.Peek("k3")->value, "bb");
    EXPECT_EQ(txn.Peek("k3")->expire_ms, kFarFuture + 1);
    EXPECT_TRUE(txn.SetExpire("k3", 0));
    EXPECT_EQ(txn.Peek("k3")->expire_ms, 0);
    // Put then Erase of a new key: nothing at all.
    ASSERT_EQ(txn.Put("k4", "gone"), Status::kOk);
    EXPECT_TRUE(txn.Erase("k4"));
    EXPECT_FALSE(txn.Find("k4"));
    // Erase then Put of an existing key; SetExpire of an existing key.
    EXPECT_TRUE(txn.Erase("k1"));
    EXPECT_FALSE(txn.SetExpire("k1", 5));
    ASSERT_EQ(txn.Put("k1", "new", kKeepTtl), Status::kOk);
    EXPECT_EQ(txn.Find("k1")->expire_ms, 0);
    EXPECT_TRUE(txn.SetExpire("k1", kFarFuture + 2));
    EXPECT_EQ(txn.Find("k1")->expire_ms, kFarFuture + 2);
    // PutWith reading the staged value it replaces (APPEND).
    auto old = txn.Find("k1");
    ASSERT_EQ(txn.PutWith("k1", old->value.size() + 1, kKeepTtl,
                          [&](char* dst) {
                            memcpy(dst, old->value.data(), old->value.size());
                            dst[old->value.size()] = '!';
                          }),
              Status::kOk);
    EXPECT_EQ(txn.Find("k1")->value, "new!");
    // Nothing is visible to another process before the Txn ends (it would
    // need the locks): checked after it ends instead, below.
  }
  EXPECT_FALSE(visible_elsewhere("k0"));
  EXPECT_TRUE(visible_elsewhere("k2"));
  EXPECT_FALSE(visible_elsewhere("k4"));
  Store::Txn txn = store().LockKeys(keys);
  EXPECT_EQ(txn.Find("k1")->value, "new!");
  EXPECT_EQ(txn.Find("k1")->expire_ms, kFarFuture + 2);
  EXPECT_EQ(txn.Find("k3")->value, "bb");
  EXPECT_EQ(txn.Find("k2")->value, "src");
  txn.Unlock();
  EXPECT_EQ(store().stats().keys, 3u);
  EXPECT_EQ(store().stats().keys_with_expiry, 2u);
  auto errors = store().Audit();
  EXPECT_TRUE(errors.empty()) << testing::JoinErrors(errors);
  ExpectNoLeak();
}

// Abort. The keys: every key of one stripe (more than its inline redo log
// holds, so the log spills into a chunk), and six of six other stripes; the
// even ones of the crowded stripe and the first three others exist before the
// Txn (some with an expire time), the last three others' stripes are empty.
struct AbortKeys {
  std::vector<uint32_t> all, existing;
};

AbortKeys PickAbortKeys(Store& store) {
  AbortKeys a;
  auto stripe_of = [&](uint32_t k) { return store.StripeOf(KeyName(k)); };
  // The stripe holding the most keys: the hash seed is random per segment,
  // so a fixed key's stripe may hold too few to spill the inline log.
  std::map<uint32_t, int> per_stripe;
  for (uint32_t k = 0; k < kKeys; k++) per_stripe[stripe_of(k)]++;
  uint32_t crowded = stripe_of(0);
  for (const auto& [stripe, count] : per_stripe) {
    if (count > per_stripe[crowded]) crowded = stripe;
  }
  std::vector<uint32_t> used = {crowded};
  size_t n = 0;
  for (uint32_t k = 0; k < kKeys; k++) {
    if (stripe_of(k) == crowded) {
      a.all.push_back(k);
      if (n++ % 2 == 0) a.existing.push_back(k);
    }
  }
  size_t others = 0;
  for (uint32_t k = 0; k < kKeys && others < 6; k++) {
    if (std::find(used.begin(), used.end(), stripe_of(k)) != used.end()) continue;
    used.push_back(stripe_of(k));
    a.all.push_back(k);
    if (others++ < 3) a.existing.push_back(k);
  }
  return a;
}

// Stages, in one Txn over all the keys: a Put of every new key (one twice,
// some large), and for the existing ones an Erase, a SetExpire or a Put.
// Returns an error, empty if the Txn read its own writes.
std::string StageAbortWrites(Store::Txn& txn, const AbortKeys& a) {
  for (size_t i = 0; i < a.all.size(); i++) {
    uint32_t k = a.all[i];
    std::string key = KeyName(k);
    bool existing = std::find(a.existing.begin(), a.existing.end(), k) != a.existing.end();
    if (existing && i % 3 == 0) {
      if (!txn.Erase(key) || txn.Find(key)) return "erase of " + key;
    } else if (existing && i % 3 == 1) {
      if (!txn.SetExpire(key, kFarFuture + 7) || txn.Find(key)->expire_ms != kFarFuture + 7) {
        return "set expire of " + key;
      }
    } else {
      std::string value = ValueOf(1000, i, k, i % 4 == 0 ? 20000 : 50);
      if (txn.Put(key, "first") != Status::kOk) return "put of " + key;
      if (txn.Put(key, value, i % 2 ? kFarFuture + 9 : 0) != Status::kOk) return "put of " + key;
      auto e = txn.Find(key);
      if (!e || e->value != value) return "read back of " + key;
    }
  }
  return "";
}

// A multi-key Txn's Abort drops every staged write: old values, expire times
// and absences are intact, nothing leaked, and the locks are free.
TEST_F(AtomicTest, AbortLeavesEveryKeyAsBefore) {
  AbortKeys a = PickAbortKeys(store());
  ASSERT_GE(a.all.size(), 12u);
  for (size_t i = 0; i < a.existing.size(); i++) {
    std::string key = KeyName(a.existing[i]);
    Store::Txn txn = store().Lock(key);
    Value v{ValueOf(7, i, a.existing[i], 30), i % 2 ? kFarFuture : 0};
    ASSERT_EQ(txn.Put(key, v.value, v.expire), Status::kOk);
    model_[a.existing[i]] = v;
  }
  // Finish the rehashes those Puts started: a Txn's writes step them on,
  // which frees old tables, and would blur the comparison below.
  for (int i = 0; i < 3; i++) store().ExpireCycle(Store::NowMs(), std::chrono::milliseconds(50));
  const Stats before = store().stats();
  std::vector<std::string> names;
  for (uint32_t k : a.all) names.push_back(KeyName(k));
  std::vector<std::string_view> keys(names.begin(), names.end());
  for (int round = 0; round < 3; round++) {  // the recycled Staging, again
    Store::Txn txn = store().LockKeys(keys);
    ASSERT_EQ(StageAbortWrites(txn, a), "");
    txn.Abort();
    txn.Abort();  // ended: nothing more
  }
  const Stats after = store().stats();
  EXPECT_EQ(after.keys, before.keys);
  EXPECT_EQ(after.keys_with_expiry, before.keys_with_expiry);
  EXPECT_EQ(after.used_bytes, before.used_bytes);
  EXPECT_EQ(after.pages_free, before.pages_free) << "pages leaked";
  auto errors = store().Audit();
  EXPECT_TRUE(errors.empty()) << testing::JoinErrors(errors);
  // Another process sees exactly the state before (and gets the locks).
  ASSERT_EQ(Verify("after an abort", ~uint64_t{0}, Mode::kMset), 2);
  EXPECT_EQ(store().stats().repairs, 0u);

  // A Txn that does not stage: Abort is Unlock before any write, a
  // programming error after one.
  {
    std::string key = KeyName(a.all.back());
    Store::Txn txn = store().Lock(key);
    EXPECT_FALSE(txn.Erase(key));
    txn.Abort();
    EXPECT_DEATH(
        {
          Store::Txn t = store().LockKeys(std::span<const std::string_view>(&keys[0], 1));
          (void)t.Put(keys[0], "x");
          t.Abort();
        },
        "does not stage");
  }
  ExpectNoLeak();
}

// A death inside Abort is a death before the commit: a fresh process sees the
// state before the Txn, and nothing leaks.
TEST_F(AtomicTest, ADeathDuringAbortLeavesTheStateBefore) {
  AbortKeys a = PickAbortKeys(store());
  for (size_t i = 0; i < a.existing.size(); i++) {
    std::string key = KeyName(a.existing[i]);
    Store::Txn txn = store().Lock(key);
    Value v{ValueOf(8, i, a.existing[i], 40), i % 2 ? kFarFuture : 0};
    ASSERT_EQ(txn.Put(key, v.value, v.expire), Status::kOk);
    model_[a.existing[i]] = v;
  }
  std::string name = store_->name();
  for (uint32_t nth : {1u, 3u}) {
    pid_t pid = testing::ForkChild([&] {
      std::string error;
      auto other = Store::Attach(name, &error);
      if (!other) return 2;
      std::vector<std::string> names;
      for (uint32_t k : a.all) names.push_back(KeyName(k));
      std::vector<std::string_view> keys(names.begin(), names.end());
      Store::Txn txn = other->LockKeys(keys);
      if (!StageAbortWrites(txn, a).empty()) return 3;
      ArmCrashPointForTesting(CrashPoint::kTxnAbort, nth);
      txn.Abort();
      return 4;  // not reached
    });
    int status = testing::WaitChild(pid, std::chrono::seconds(10));
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    ASSERT_EQ(Verify(testing::Name("after a kill in abort, nth ", nth), ~uint64_t{0}, Mode::kMset),
              2);
  }
  EXPECT_GT(store().stats().repairs, 0u);
  ExpectNoLeak();
}

TEST_F(AtomicTest, KillsAtEveryTxnCrashPoint) {
  struct Case {
    CrashPoint point;
    int expect;  // 0: none of the in-flight Txn, 1: all of it
  };
  const Case cases[] = {
      {CrashPoint::kTxnPending, 0}, {CrashPoint::kTxnCommit, 0},  {CrashPoint::kTxnCommitted, 1},
      {CrashPoint::kTxnApply, 1},   {CrashPoint::kTxnApplied, 1},
  };
  const Mode modes[] = {Mode::kMset, Mode::kRename, Mode::kMixed, Mode::kCrowded};
  Prefill(80);
  for (const Case& c : cases) {
    int reached = 0;
    for (int rep = 0; rep < 12; rep++) {
      Mode mode = modes[rep % 4];
      int outcome;
      bool died = CrashAt(c.point, 1 + static_cast<uint32_t>(rng_() % 40), mode, &outcome);
      ASSERT_GE(outcome, 0);
      if (died) {
        reached++;
        if (outcome != 2) {
          EXPECT_EQ(outcome, c.expect)
              << "killed at " << CrashPointName(c.point) << ", mode " << static_cast<int>(mode);
        }
      }
    }
    printf("crash point %-13s reached %d/12\n", CrashPointName(c.point), reached);
    EXPECT_GT(reached, 0) << CrashPointName(c.point) << " never reached";
  }
  EXPECT_GT(store().stats().repairs, 0u);
  ExpectNoLeak();
}

// A death while rolling a committed Txn forward: the next locker does it again.
TEST_F(AtomicTest, ADeathDuringTheRollForwardIsRepairedAgain) {
  Prefill(80);
  int died_in_repair = 0;
  const Mode modes[] = {Mode::kMset, Mode::kRename, Mode::kCrowded, Mode::kMixed};
  for (int rep = 0; rep < 8; rep++) {
    Mode mode = modes[rep % 4];
    int ack_fd;
    pid_t pid = Spawn(mode, rep % 3 == 0 ? CrashPoint::kTxnCommitted : CrashPoint::kTxnApply,
                      1 + static_cast<uint32_t>(rng_() % 20), 300, &ack_fd);
    int status = testing::WaitChild(pid, std::chrono::seconds(10));
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    uint64_t in_flight = ReadAcks(ack_fd, mode);
    // Another process locks every key's stripe and dies repairing.
    std::string name = store_->name();
    pid = testing::ForkChild([&] {
      std::string error;
      auto other = Store::Attach(name, &error);
      if (!other) return 2;
      ArmCrashPointForTesting(CrashPoint::kRepairTxn, 1);
      for (uint32_t k = 0; k < kKeys; k++) {
        std::string key = KeyName(kKeys - 1 - k);
        Store::Txn txn = other->Lock(key);
      }
      return 0;
    });
    status = testing::WaitChild(pid, std::chrono::seconds(10));
    died_in_repair += WIFSIGNALED(status);
    int outcome = Verify("after a death during a txn roll-forward", in_flight, mode);
    ASSERT_GE(outcome, 0);
    if (outcome != 2) {
      EXPECT_EQ(outcome, 1);
    }
  }
  printf("died while rolling forward: %d/8\n", died_in_repair);
  EXPECT_GT(died_in_repair, 0);
  ExpectNoLeak();
}

// The home stripe (the lowest a Txn holds) keeps the commit word. After a
// death past the commit, a process that locks the home first repairs it and
// then commits a Txn of its own there, before the dead Txn's other stripes
// are repaired: they must still roll forward (the home's repair wrote the
// decision into them).
TEST_F(AtomicTest, AHomeReusedBeforeTheOtherStripesAreRepaired) {
  Prefill(80);
  int reused = 0;
  for (int rep = 0; rep < 10; rep++) {
    int ack_fd;
    pid_t pid = Spawn(Mode::kMset, CrashPoint::kTxnCommitted,
                      1 + static_cast<uint32_t>(rng_() % 20), 300, &ack_fd);
    int status = testing::WaitChild(pid, std::chrono::seconds(10));
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    uint64_t in_flight = ReadAcks(ack_fd, Mode::kMset);
    Plan dead = PlanOf(in_flight, Mode::kMset);
    // A key of the home stripe, and one of a higher stripe the dead Txn does
    // not hold, so that the new Txn's home is the same stripe.
    std::vector<uint32_t> stripes;
    for (uint32_t k : dead.keys) stripes.push_back(store().StripeOf(KeyName(k)));
    uint32_t home = *std::min_element(stripes.begin(), stripes.end());
    uint32_t home_key =
        dead.keys[std::min_element(stripes.begin(), stripes.end()) - stripes.begin()];
    std::optional<uint32_t> other;
    for (uint32_t k = 0; k < kKeys && !other; k++) {
      uint32_t s = store().StripeOf(KeyName(k));
      if (s > home && std::find(stripes.begin(), stripes.end(), s) == stripes.end()) other = k;
    }
    if (!other) {
      ASSERT_EQ(Verify("after a kill (no stripe to reuse the home with)", in_flight, Mode::kMset),
                1);
      continue;
    }
    std::string name = store_->name();
    pid = testing::ForkChild([&] {
      std::string error;
      auto p = Store::Attach(name, &error);
      if (!p) return 2;
      std::string a = KeyName(home_key), b = KeyName(*other);
      std::vector<std::string_view> keys = {a, b};
      Store::Txn txn = p->LockKeys(keys);
      if (txn.Put(a, "reused-home") != Status::kOk || txn.Put(b, "other") != Status::kOk) return 3;
      return 0;
    });
    status = testing::WaitChild(pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    reused++;
    ApplyToModel(dead, in_flight, model_);
    model_[home_key] = Value{"reused-home", 0};
    model_[*other] = Value{"other", 0};
    next_id_ = in_flight + 1;
    ASSERT_EQ(Verify("after reusing the home of a dead txn", ~uint64_t{0}, Mode::kMset), 2);
  }
  printf("home reused before repair: %d/10\n", reused);
  EXPECT_GT(reused, 0);
  ExpectNoLeak();
}

TEST_F(AtomicTest, RandomKillsNeverTearATxn) {
  int iterations = getenv("SHM_CRASH_KILLS") ? atoi(getenv("SHM_CRASH_KILLS")) : 100;
  std::uniform_int_distribution<int> delay_us(300, 6000);
  int in_flight_applied = 0, in_flight_dropped = 0;
  const Mode modes[] = {Mode::kMixed, Mode::kMset, Mode::kRename, Mode::kCrowded};
  Prefill(80);
  for (int i = 0; i < iterations; i++) {
    Mode mode = modes[i % 4];
    int ack_fd;
    pid_t pid = Spawn(mode, CrashPoint::kNone, 1, ~uint64_t{0} / 2, &ack_fd);
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng_)));
    kill(pid, SIGKILL);
    int status = testing::WaitChild(pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    uint64_t in_flight = ReadAcks(ack_fd, mode);
    int outcome = Verify(testing::Name("after random kill ", i), in_flight, mode);
    ASSERT_GE(outcome, 0);
    in_flight_applied += outcome == 1;
    in_flight_dropped += outcome == 0;
  }
  printf("random kills: %d, in-flight txn applied %d, dropped %d, %llu txns\n", iterations,
         in_flight_applied, in_flight_dropped, static_cast<unsigned long long>(next_id_));
  ExpectNoLeak();
}

}  // namespace
}  // namespace redhub::shm
