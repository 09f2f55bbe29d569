// Store::Scope (EXEC and scripts): while a scope is set, Lock and LockKeys
// return Txns borrowed from the scope's one Txn (LockKeys kStaged or
// LockAll), whose writes stay staged until that Txn ends, and whose Abort
// takes back only its own writes (a savepoint); in a LockAll scope the
// whole-store walks (Scan, ScanStripe, Flush, RandomKey, KeyCount) see and
// stage through it. Proved here: read-your-writes through borrowed Txns and
// nothing visible to another process before the end; savepoint rollback
// against a model over thousands of random sequences (with the staging's
// hash index and a spilled redo log, Audit clean and no leak after each);
// the walks of a LockAll scope; all or nothing across a SIGKILL at every
// txn-* crash point, at random instants and inside a savepoint; and no
// deadlock between LockAll scopes and LockKeys / batches of another process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "shm_test_util.h"
#include "store.h"

namespace redhub::shm {
namespace {

using testing::WithWatchdog;
using Writes = Store::Writes;

constexpr uint64_t kMB = 1 << 20;
constexpr uint32_t kStripes = 32;
constexpr int64_t kFarFuture = int64_t{4102444800000};  // 2100-01-01, in ms
constexpr int64_t kPast = 1000;                         // 1970: expired at once

uint64_t Seed() {
  return getenv("SHM_CRASH_SEED") ? strtoull(getenv("SHM_CRASH_SEED"), nullptr, 10) : 20261202;
}

// ---------------------------------------------------------------------------
// The model: what the keyspace holds (expired keys are absent).

struct Value {
  std::string value;
  int64_t expire = 0;
  bool operator==(const Value&) const = default;
};
using Model = std::map<std::string, Value>;

std::string Diff(const Model& seen, const Model& want) {
  std::string out;
  for (const auto& [k, v] : want) {
    auto it = seen.find(k);
    if (it == seen.end()) {
      out += " " + k + "(missing)";
    } else if (!(it->second == v)) {
      out += " " + k + "(differs: " + it->second.value.substr(0, 24) + "@" +
             std::to_string(it->second.expire) + ", want " + v.value.substr(0, 24) + "@" +
             std::to_string(v.expire) + ")";
    }
  }
  for (const auto& [k, v] : seen) {
    if (!want.count(k)) out += " " + k + "(unexpected)";
  }
  return out;
}

enum OpKind { kOpPut, kOpAppend, kOpErase, kOpExpire, kOpFlush };

struct Op {
  OpKind kind;
  std::string key;
  std::string value;  // put: the value; append: the suffix
  int64_t expire = 0;
};

bool Expired(int64_t expire) { return expire != 0 && expire <= Store::NowMs(); }

// Applies `op` to the model; returns what Erase / SetExpire answer.
bool ApplyOp(const Op& op, Model& m) {
  auto it = m.find(op.key);
  const bool exists = it != m.end();
  switch (op.kind) {
    case kOpPut: {
      int64_t expire = op.expire == kKeepTtl ? (exists ? it->second.expire : 0) : op.expire;
      if (Expired(expire)) {
        m.erase(op.key);
      } else {
        m[op.key] = Value{op.value, expire};
      }
      return true;
    }
    case kOpAppend: {
      Value v = exists ? it->second : Value{};
      v.value += op.value;
      m[op.key] = v;
      return true;
    }
    case kOpErase:
      m.erase(op.key);
      return exists;
    case kOpExpire:
      if (!exists) return false;
      if (op.expire == kKeepTtl) return true;
      if (Expired(op.expire)) {
        m.erase(op.key);
      } else {
        it->second.expire = op.expire;
      }
      return true;
    case kOpFlush:
      m.clear();
      return true;
  }
  return false;
}

// Applies `op` through `txn` (Flush: through the store, which in a LockAll
// scope goes to the scope's Txn). Returns what Erase / SetExpire answered,
// or for a write whether it returned kOk.
bool DoOp(Store& store, Store::Txn& txn, const Op& op) {
  switch (op.kind) {
    case kOpPut:
      return txn.Put(op.key, op.value, op.expire) == Status::kOk;
    case kOpAppend: {  // APPEND: the old value's view is read by fill
      auto old = txn.Find(op.key);
      std::string_view before = old ? old->value : std::string_view();
      return txn.PutWith(op.key, before.size() + op.value.size(), kKeepTtl, [&](char* dst) {
        if (!before.empty()) memcpy(dst, before.data(), before.size());
        memcpy(dst + before.size(), op.value.data(), op.value.size());
      }) == Status::kOk;
    }
    case kOpErase:
      return txn.Erase(op.key);
    case kOpExpire:
      return txn.SetExpire(op.key, op.expire);
    case kOpFlush:
      store.Flush();
      return true;
  }
  return false;
}

// What `txn` shows for `key` differs from the model: the difference, else "".
std::string CheckKey(Store::Txn& txn, const std::string& key, const Model& m) {
  auto e = txn.Peek(key);
  auto it = m.find(key);
  if (!e && it == m.end()) return "";
  if (!e) return key + ": absent, want " + it->second.value.substr(0, 24);
  if (it == m.end())
    return key + ": present (" + std::string(e->value.substr(0, 24)) + "), want absent";
  if (e->value != it->second.value || e->expire_ms != it->second.expire) {
    return key + ": " + std::string(e->value.substr(0, 24)) + "@" + std::to_string(e->expire_ms) +
           ", want " + it->second.value.substr(0, 24) + "@" + std::to_string(it->second.expire);
  }
  return "";
}

std::string RandomValue(std::mt19937_64& rng, std::string_view tag) {
  size_t len = rng() % 16 == 0 ? 3000 + rng() % 18000 : 1 + rng() % 120;
  std::string v(tag);
  v += ":";
  while (v.size() < len) v.push_back(static_cast<char>('a' + rng() % 26));
  return v;
}

// Reads `keys` through Txns from Lock in this process.
Model ReadAll(Store& store, const std::vector<std::string>& keys) {
  Model m;
  for (const std::string& k : keys) {
    Store::Txn txn = store.Lock(k);
    if (auto e = txn.Find(k)) m[k] = Value{std::string(e->value), e->expire_ms};
  }
  return m;
}

bool WriteAll(int fd, const std::string& s) {
  for (size_t off = 0; off < s.size();) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string ReadToEnd(int fd) {
  std::string out;
  char buf[8192];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, static_cast<size_t>(n));
  return out;
}

// "key\tvalue\texpire\n" lines; lines starting with '!' are errors.
std::string Serialize(const Model& m) {
  std::string out;
  for (const auto& [k, v] : m) out += k + "\t" + v.value + "\t" + std::to_string(v.expire) + "\n";
  return out;
}

Model Parse(const std::string& text, std::string* errors) {
  Model m;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    if (line[0] == '!') {
      *errors += line + "\n";
      continue;
    }
    size_t t1 = line.find('\t'), t2 = line.rfind('\t');
    m[line.substr(0, t1)] =
        Value{line.substr(t1 + 1, t2 - t1 - 1), std::stoll(line.substr(t2 + 1))};
  }
  return m;
}

// A fresh process attaches, reads every key of `keys` in an order drawn from
// `order_seed` (each Lock may repair a stripe a dead holder left), audits,
// and reports what it saw. Errors (audit, validation, attach, a hang) go to
// *errors.
Model ReadInFreshProcess(const std::string& name, const std::vector<std::string>& keys,
                         uint64_t order_seed, std::string* errors) {
  int fds[2];
  if (pipe(fds) != 0) {
    *errors = "pipe";
    return {};
  }
  pid_t pid = testing::ForkChild([&] {
    close(fds[0]);
    std::string error;
    auto other = Store::Attach(name, &error);
    std::string out;
    if (!other) {
      out = "!attach: " + error + "\n";
    } else {
      std::vector<std::string> order = keys;
      std::shuffle(order.begin(), order.end(), std::mt19937_64(order_seed));
      Model seen;
      for (const std::string& k : order) {
        Store::Txn txn = other->Lock(k);
        if (auto e = txn.Find(k)) seen[k] = Value{std::string(e->value), e->expire_ms};
      }
      out = Serialize(seen);
      for (const std::string& line : other->Audit()) out += "!audit: " + line + "\n";
      if (other->stats().validation_errors != 0) out += "!a repair found corrupt entries\n";
    }
    WriteAll(fds[1], out);
    close(fds[1]);
    return 0;
  });
  close(fds[1]);
  std::string text;
  int status = 0;
  WithWatchdog("reading every key in a fresh process", std::chrono::seconds(10), [&] {
    text = ReadToEnd(fds[0]);
    status = testing::WaitChild(pid, std::chrono::seconds(9));
  });
  close(fds[0]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *errors += "!reader status " + std::to_string(status) + "\n";
  }
  return Parse(text, errors);
}

// Names "<prefix><i>", grouped by stripe.
std::map<uint32_t, std::vector<std::string>> ByStripe(Store& store, std::string_view prefix,
                                                      uint32_t n) {
  std::map<uint32_t, std::vector<std::string>> by;
  for (uint32_t i = 0; i < n; i++) {
    std::string k = testing::Name(prefix, i);
    by[store.StripeOf(k)].push_back(k);
  }
  return by;
}

// `crowded` keys of one stripe (a spilled redo log past 4), then `others`
// keys of other stripes.
std::vector<std::string> PickKeys(Store& store, std::string_view prefix, size_t crowded,
                                  size_t others, uint32_t* crowded_stripe = nullptr) {
  auto by = ByStripe(store, prefix, 4000);
  uint32_t best = by.begin()->first;
  for (const auto& [s, keys] : by) {
    if (keys.size() > by[best].size()) best = s;
  }
  if (crowded_stripe) *crowded_stripe = best;
  std::vector<std::string> out(by[best].begin(), by[best].begin() + crowded);
  for (size_t round = 0; out.size() < crowded + others; round++) {
    for (const auto& [s, keys] : by) {
      if (s != best && round < keys.size() && out.size() < crowded + others) {
        out.push_back(keys[round]);
      }
    }
  }
  return out;
}

class ScopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<testing::TestStore>(testing::Options(32 * kMB, kStripes));
    ASSERT_TRUE(store_->get());
    initial_free_pages_ = store().stats().pages_free;
  }
  Store& store() { return **store_; }
  const std::string& name() { return store_->name(); }

  void Fill(const Model& m) {
    for (const auto& [k, v] : m) {
      Store::Txn txn = store().Lock(k);
      ASSERT_EQ(txn.Put(k, v.value, v.expire), Status::kOk);
    }
  }

  void ExpectNoLeak(const std::string& when) {
    store().Flush();
    Stats st = store().stats();
    EXPECT_EQ(st.keys, 0u) << when;
    EXPECT_EQ(st.used_bytes, 0u) << when << ": bytes leaked";
    EXPECT_EQ(st.pages_free, initial_free_pages_) << when << ": pages leaked";
    auto errors = store().Audit();
    EXPECT_TRUE(errors.empty()) << when << ":\n" << testing::JoinErrors(errors);
  }

  std::unique_ptr<testing::TestStore> store_;
  uint64_t initial_free_pages_ = 0;
};

// ---------------------------------------------------------------------------
// 1. Semantics

// Borrowed Txns read the scope's staged writes (Put, Erase, SetExpire,
// PutWith with kKeepTtl), and so does the next borrowed Txn; nothing reaches
// another process before the scope's Txn ends (its unlocked reads retry, its
// locked read blocks), and everything does after.
TEST_F(ScopeTest, BorrowedTxnsSeeStagedWritesThatNoOtherProcessSeesBeforeTheEnd) {
  const std::vector<std::string> keys = PickKeys(store(), "s:", 2, 3);  // a, b same stripe
  const std::string &a = keys[0], &b = keys[1], &c = keys[2], &d = keys[3], &out = keys[4];
  Model before = {
      {a, {"old-a", 0}}, {b, {"old-b", kFarFuture}}, {d, {"old-d", 0}}, {out, {"outside", 0}}};
  Fill(before);
  Model after = before;
  after[a] = {"new-a", 0};
  after[b] = {"new-b", kFarFuture + 5};
  after[c] = {"new-c!", 0};
  after.erase(d);
  const std::vector<std::string> scoped = {a, b, c, d};
  std::vector<std::string_view> views(scoped.begin(), scoped.end());

  int ready[2], report[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(report), 0);
  pid_t child = -1;
  {
    Store::Txn txn = store().LockKeys(views, Writes::kStaged);
    Store::Scope scope(store(), txn);
    EXPECT_TRUE(store().in_scope());
    {
      Store::Txn t = store().Lock(a);  // borrowed
      ASSERT_EQ(t.Put(a, "new-a"), Status::kOk);
      EXPECT_EQ(t.Find(a)->value, "new-a");
      EXPECT_TRUE(t.Erase(d));
      EXPECT_FALSE(t.Find(d));
      EXPECT_FALSE(t.Erase(d));
      EXPECT_FALSE(t.SetExpire(d, kFarFuture));
      ASSERT_EQ(t.Put(c, "new-c", kFarFuture + 1), Status::kOk);
    }
    {
      std::vector<std::string_view> bc = {b, c};
      Store::Txn t = store().LockKeys(bc);   // borrowed too
      EXPECT_EQ(t.Find(a)->value, "new-a");  // the previous borrowed Txn's write
      EXPECT_FALSE(t.Find(d));
      EXPECT_TRUE(t.SetExpire(b, kFarFuture + 5));
      EXPECT_EQ(t.Peek(b)->value, "old-b");
      EXPECT_EQ(t.Peek(b)->expire_ms, kFarFuture + 5);
      auto old = t.Find(c);
      ASSERT_TRUE(old);
      EXPECT_EQ(old->expire_ms, kFarFuture + 1);
      ASSERT_EQ(t.PutWith(c, old->value.size() + 1, kKeepTtl,
                          [&](char* dst) {
                            memcpy(dst, old->value.data(), old->value.size());
                            dst[old->value.size()] = '!';
                          }),
                Status::kOk);
      EXPECT_EQ(t.Peek(c)->value, "new-c!");
      EXPECT_EQ(t.Peek(c)->expire_ms, kFarFuture + 1);  // kept
      EXPECT_TRUE(t.SetExpire(c, 0));
      EXPECT_EQ(t.Peek(c)->expire_ms, 0);
      ASSERT_EQ(t.Put(b, "new-b", kKeepTtl), Status::kOk);
      EXPECT_EQ(t.Peek(b)->expire_ms, kFarFuture + 5);
    }
    // This process's unlocked reads go to the locked path, which borrows.
    EXPECT_EQ(store().ReadUnlocked(a, [](const EntryView&) {}), Store::ReadResult::kRetry);
    EXPECT_EQ(store().ReadUnlocked(out, [](const EntryView&) {}), Store::ReadResult::kRetry);
    {
      Store::Txn t = store().Lock(a);
      EXPECT_EQ(CheckKey(t, a, after) + CheckKey(t, b, after) + CheckKey(t, c, after) +
                    CheckKey(t, d, after),
                "");
    }

    // Another process: an unlocked read of a held stripe retries (or would
    // see the old value), one of another stripe sees its value; then a
    // locked read of all four keys blocks until the Txn has ended, and sees
    // all of its writes.
    const std::string seg = name();
    child = testing::ForkChild([&] {
      close(ready[0]);
      close(report[0]);
      std::string error;
      auto other = Store::Attach(seg, &error);
      if (!other) return 2;
      std::string bad;
      for (const std::string& k : scoped) {
        std::string got;
        auto r = other->ReadUnlocked(k, [&](const EntryView& v) { got = std::string(v.value); });
        if (r == Store::ReadResult::kAbsent && before.count(k)) bad += k + " absent; ";
        if (r == Store::ReadResult::kFound && (!before.count(k) || got != before.at(k).value)) {
          bad += k + " read " + got + "; ";
        }
      }
      std::string got;
      if (other->ReadUnlocked(out, [&](const EntryView& v) { got = std::string(v.value); }) ==
              Store::ReadResult::kFound &&
          got != "outside") {
        bad += "outside key read " + got;
      }
      WriteAll(ready[1], bad.empty() ? std::string("R") : "!" + bad);
      close(ready[1]);
      Model seen;
      {
        Store::Txn txn = other->LockKeys(views);
        for (const std::string& k : scoped) {
          if (auto e = txn.Find(k)) seen[k] = Value{std::string(e->value), e->expire_ms};
        }
      }
      WriteAll(report[1], Serialize(seen));
      close(report[1]);
      return 0;
    });
    close(ready[1]);
    close(report[1]);
    std::string first;
    WithWatchdog("the child's unlocked reads", std::chrono::seconds(10),
                 [&] { first = ReadToEnd(ready[0]); });
    close(ready[0]);
    EXPECT_EQ(first, "R") << "unlocked reads in another process during the scope";
    // The child is now on its way to (or blocked in) LockKeys: it cannot
    // have read anything yet.
    pollfd p{report[0], POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 0), 0) << "another process got the locks of a live scope";
    // The scope's Txn ends here: its writes appear together.
  }
  EXPECT_FALSE(store().in_scope());
  std::string text;
  int status = 0;
  WithWatchdog("the child's locked read", std::chrono::seconds(10), [&] {
    text = ReadToEnd(report[0]);
    status = testing::WaitChild(child, std::chrono::seconds(9));
  });
  close(report[0]);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::string errors;
  Model seen = Parse(text, &errors);
  Model want = after;
  want.erase(out);
  EXPECT_EQ(Diff(seen, want), "") << "the other process's locked read";
  EXPECT_EQ(ReadAll(store(), keys), after);
  // No scope any more: Lock is a plain Txn again, unlocked reads work.
  EXPECT_EQ(store().ReadUnlocked(a, [](const EntryView&) {}), Store::ReadResult::kFound);
  auto audit = store().Audit();
  EXPECT_TRUE(audit.empty()) << testing::JoinErrors(audit);
  ExpectNoLeak("after the scope");
}

// A LockAll scope: another process's unlocked reads of any stripe retry,
// its locks wait, and a single-key kStaged scope also shows nothing before
// its end.
TEST_F(ScopeTest, ALockAllScopeHidesEveryStripeFromOtherProcesses) {
  Model m;
  for (int i = 0; i < 64; i++) m[testing::Name("h:", i)] = Value{testing::Name("v", i), 0};
  Fill(m);
  std::vector<std::string> keys;
  for (const auto& [k, v] : m) keys.push_back(k);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = -1;
  {
    Store::Txn txn = store().LockAll();
    Store::Scope scope(store(), txn);
    {
      Store::Txn t = store().Lock("h:0");
      for (const std::string& k : keys) ASSERT_EQ(t.Put(k, "changed"), Status::kOk);
    }
    const std::string seg = name();
    child = testing::ForkChild([&] {
      close(fds[0]);
      std::string error;
      auto other = Store::Attach(seg, &error);
      if (!other) return 2;
      int found = 0;
      for (const std::string& k : keys) {
        std::string got;
        auto r = other->ReadUnlocked(k, [&](const EntryView& v) { got = std::string(v.value); });
        if (r != Store::ReadResult::kRetry) {
          found++;
          fprintf(stderr, "child: unlocked read of %s during a LockAll scope: %s (%s)\n", k.c_str(),
                  r == Store::ReadResult::kFound ? "found" : "absent", got.c_str());
        }
      }
      if (found != 0) return 3;
      if (write(fds[1], "R", 1) != 1) return 5;
      close(fds[1]);
      // A locked read of any key waits for the end, then sees every change.
      int changed = 0;
      for (const std::string& k : keys) {
        Store::Txn t = other->Lock(k);
        changed += t.Find(k)->value == "changed";
      }
      return changed == static_cast<int>(keys.size()) ? 0 : 4;
    });
    close(fds[1]);
    // The child's unlocked reads are done before the scope's Txn ends.
    std::string ready;
    WithWatchdog("unlocked reads during a LockAll scope", std::chrono::seconds(10),
                 [&] { ready = ReadToEnd(fds[0]); });
    EXPECT_EQ(ready, "R");
  }
  int status = 0;
  WithWatchdog("a reader of a LockAll scope", std::chrono::seconds(10),
               [&] { status = testing::WaitChild(child, std::chrono::seconds(9)); });
  close(fds[0]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ExpectNoLeak("after a LockAll scope");
}

// Programming errors end the process with a message.
TEST_F(ScopeTest, MisuseIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<std::string> two = PickKeys(store(), "m:", 1, 1);
  std::vector<std::string_view> one = {two[0]};
  EXPECT_DEATH(
      {
        Store::Txn t = store().LockKeys(one);  // kAuto, one key: does not stage
        Store::Scope s(store(), t);
      },
      "staging Txn");
  EXPECT_DEATH(
      {
        Store::Txn t = store().LockKeys(one, Writes::kStaged);
        Store::Scope s(store(), t);
        Store::Scope s2(store(), t);
      },
      "scope inside a scope");
  EXPECT_DEATH(
      {
        Store::Txn t = store().LockKeys(one, Writes::kStaged);
        Store::Scope s(store(), t);
        (void)store().LockAll();
      },
      "LockAll inside a scope");
  EXPECT_DEATH(
      {
        Store::Txn t = store().LockKeys(one, Writes::kStaged);
        Store::Scope s(store(), t);
        (void)store().KeyCount();
      },
      "whole-store operation");
  EXPECT_DEATH(
      {
        Store::Txn t = store().LockKeys(one, Writes::kStaged);
        Store::Scope s(store(), t);
        Store::Txn b = store().Lock(two[1]);
        (void)b.Put(two[1], "x");
      },
      "does not hold it");
  EXPECT_DEATH(
      {
        Store::Txn t = store().LockAll();
        Store::Scope s(store(), t);
        Store::Txn b1 = store().Lock(two[0]);
        Store::Txn b2 = store().Lock(two[1]);
      },
      "two Txns borrowed");
}

// ---------------------------------------------------------------------------
// 2. Savepoints, against a model

// Combinations of (op, the key's history) the random sequences must cover,
// each both in a borrowed Txn that ends and in one that aborts.
enum Combo {
  kPutNew,            // a key absent before the scope and not yet staged
  kPutOverStaged,     // a key a previous (kept) borrowed Txn staged
  kEraseStagedNew,    // a key staged new by a previous borrowed Txn (base 0)
  kEraseExisting,     // a key that existed before the scope, not yet staged
  kExpireStagedPut,   // SetExpire on a key a previous borrowed Txn Put
  kExpireExisting,    // SetExpire on a key that existed before, not yet staged
  kPutAfterErase,     // a Put of a key erased earlier in the scope
  kIndexed,           // more than 16 keys staged: the hash index
  kSpilled,           // more than 4 writes on the crowded stripe: a log chunk
  kAppendStaged,      // PutWith kKeepTtl over a staged value
  kFlushInSavepoint,  // Flush inside a borrowed Txn (LockAll)
  kComboCount,
};
const char* const kComboNames[] = {"put-new",         "put-over-staged",   "erase-staged-new",
                                   "erase-existing",  "expire-staged-put", "expire-existing",
                                   "put-after-erase", "indexed",           "spilled",
                                   "append-staged",   "flush-in-savepoint"};

TEST_F(ScopeTest, SavepointsTakeBackExactlyTheAbortedBorrowedTxns) {
  uint32_t crowded = 0;
  const std::vector<std::string> keys = PickKeys(store(), "p:", 8, 20, &crowded);
  std::mt19937_64 rng(Seed());
  const int sequences = getenv("SCOPE_SEQUENCES") ? atoi(getenv("SCOPE_SEQUENCES")) : 2500;
  uint64_t hits[kComboCount][2] = {};
  int outer_aborts = 0;
  for (int seq = 0; seq < sequences; seq++) {
    // The store before the scope: a random subset of the keys.
    Model base;
    for (const std::string& k : keys) {
      if (rng() % 2) base[k] = Value{RandomValue(rng, "b"), rng() % 3 == 0 ? kFarFuture : 0};
    }
    Fill(base);
    const bool all = seq % 2 == 1;
    std::vector<std::string_view> views(keys.begin(), keys.end());
    Store::Txn txn = all ? store().LockAll() : store().LockKeys(views, Writes::kStaged);
    std::optional<Store::Scope> scope;
    scope.emplace(store(), txn);
    Model kept = base;             // as the borrowed Txns that ended left it
    std::set<std::string> staged;  // keys written by borrowed Txns that ended
    std::set<std::string> erased;  // keys erased in the scope (kept or current)
    size_t crowded_writes = 0;
    std::string failure;
    const int subs = 1 + static_cast<int>(rng() % 6);
    for (int sub = 0; sub < subs && failure.empty(); sub++) {
      const bool abort = rng() % 3 == 0;
      Model cur = kept;
      std::set<std::string> here;
      std::set<std::string> erased_here = erased;
      size_t crowded_here = crowded_writes;
      // (A default-constructed Txn cannot be named outside shm/.)
      std::optional<Store::Txn> borrowed;
      switch (rng() % 3) {
        case 0:
          borrowed.emplace(store().Lock(keys[rng() % keys.size()]));
          break;
        case 1:
          borrowed.emplace(store().LockKeys(views));
          break;
        default:
          borrowed.emplace(store().LockKeys(views, Writes::kStaged));
      }
      Store::Txn& b = *borrowed;
      const int ops = 1 + static_cast<int>(rng() % 12);
      for (int i = 0; i < ops && failure.empty(); i++) {
        Op op;
        op.key = keys[rng() % keys.size()];
        const uint64_t dice = rng() % 40;
        if (all && dice == 0) {
          op.kind = kOpFlush;
        } else if (dice < 16) {
          op.kind = kOpPut;
          op.value = RandomValue(rng, testing::Name("s", seq));
          uint64_t e = rng() % 8;
          op.expire = e < 4   ? 0
                      : e < 6 ? kFarFuture + static_cast<int64_t>(rng() % 1000)
                      : e < 7 ? kKeepTtl
                              : kPast;
        } else if (dice < 20) {
          op.kind = kOpAppend;
          op.value = testing::Name("+", i);
        } else if (dice < 30) {
          op.kind = kOpErase;
        } else {
          op.kind = kOpExpire;
          uint64_t e = rng() % 6;
          op.expire = e < 2   ? 0
                      : e < 4 ? kFarFuture + static_cast<int64_t>(rng() % 1000)
                      : e < 5 ? kKeepTtl
                              : kPast;
        }
        // Which case of the key's history this is.
        const bool pre = base.count(op.key) != 0;
        const bool was_staged = staged.count(op.key) != 0 && !here.count(op.key);
        auto hit = [&](Combo c) { hits[c][abort]++; };
        switch (op.kind) {
          case kOpPut:
            if (!pre && !staged.count(op.key) && !here.count(op.key)) hit(kPutNew);
            if (was_staged) hit(kPutOverStaged);
            if (erased_here.count(op.key)) hit(kPutAfterErase);
            break;
          case kOpAppend:
            if (was_staged && kept.count(op.key)) hit(kAppendStaged);
            break;
          case kOpErase:
            if (!pre && was_staged && kept.count(op.key)) hit(kEraseStagedNew);
            if (pre && !staged.count(op.key) && !here.count(op.key)) hit(kEraseExisting);
            break;
          case kOpExpire:
            if (was_staged && kept.count(op.key)) hit(kExpireStagedPut);
            if (pre && !staged.count(op.key) && !here.count(op.key)) hit(kExpireExisting);
            break;
          case kOpFlush:
            hit(kFlushInSavepoint);
            break;
        }
        const bool want = ApplyOp(op, cur);
        const bool got = DoOp(store(), b, op);
        if (op.kind == kOpFlush) {
          for (const std::string& k : keys) here.insert(k);
          erased_here.insert(keys.begin(), keys.end());
        } else {
          here.insert(op.key);
          if (op.kind == kOpErase || op.kind == kOpExpire) erased_here.insert(op.key);
          if (store().StripeOf(op.key) == crowded) crowded_here++;
        }
        if (want != got) {
          failure = "op " + std::to_string(op.kind) + " on " + op.key + " answered " +
                    std::to_string(got) + ", the model " + std::to_string(want);
        }
        // Read-your-writes: the key, and now and then every key.
        std::string diff = CheckKey(b, op.key, cur);
        if (diff.empty() && rng() % 4 == 0) {
          for (const std::string& k : keys) diff += CheckKey(b, k, cur);
        }
        if (!diff.empty() && failure.empty()) failure = "inside a borrowed Txn: " + diff;
      }
      std::set<std::string> all_staged = staged;
      all_staged.insert(here.begin(), here.end());
      if (all_staged.size() > 16) hits[kIndexed][abort]++;
      if (crowded_here > 4) hits[kSpilled][abort]++;
      if (abort) {
        b.Abort();
        b.Abort();  // ended: nothing more
      } else {
        b.Unlock();
        kept = cur;
        staged = all_staged;
        erased = erased_here;
        crowded_writes = crowded_here;
      }
      // What the scope's Txn shows now, through the next borrowed Txn.
      if (failure.empty()) {
        Store::Txn check = store().Lock(keys[0]);
        std::string diff;
        for (const std::string& k : keys) diff += CheckKey(check, k, kept);
        if (!diff.empty()) {
          failure =
              std::string("after a borrowed Txn ") + (abort ? "aborted" : "ended") + ": " + diff;
        }
        if (all && failure.empty() && store().KeyCount() < kept.size()) {
          failure = "KeyCount " + std::to_string(store().KeyCount()) + " < " +
                    std::to_string(kept.size());
        }
      }
    }
    const bool outer_abort = rng() % 8 == 0;
    if (outer_abort) {
      outer_aborts++;
      txn.Abort();
      scope.reset();
      kept = base;
    } else {
      scope.reset();
      txn.Unlock();
    }
    ASSERT_EQ(failure, "") << "sequence " << seq << (all ? " (LockAll)" : " (LockKeys)");
    Model seen = ReadAll(store(), keys);
    ASSERT_EQ(Diff(seen, kept), "")
        << "sequence " << seq << " after the scope's Txn " << (outer_abort ? "aborted" : "ended");
    EXPECT_EQ(store().stats().keys, kept.size()) << "sequence " << seq;
    if (seq % 10 == 0 || seq == sequences - 1) {
      auto errors = store().Audit();
      ASSERT_TRUE(errors.empty()) << "sequence " << seq << ":\n" << testing::JoinErrors(errors);
    }
    store().Flush();
    Stats st = store().stats();
    ASSERT_EQ(st.used_bytes, 0u) << "sequence " << seq << ": bytes leaked";
    ASSERT_EQ(st.pages_free, initial_free_pages_) << "sequence " << seq << ": pages leaked";
  }
  printf("%d sequences, %d outer aborts; cases hit (ended/aborted):", sequences, outer_aborts);
  for (int c = 0; c < kComboCount; c++) {
    printf(" %s %llu/%llu", kComboNames[c], static_cast<unsigned long long>(hits[c][0]),
           static_cast<unsigned long long>(hits[c][1]));
  }
  printf("\n");
  for (int c = 0; c < kComboCount; c++) {
    EXPECT_GT(hits[c][0], 0u) << kComboNames[c] << " never in a borrowed Txn that ended";
    EXPECT_GT(hits[c][1], 0u) << kComboNames[c] << " never in a borrowed Txn that aborted";
  }
  EXPECT_GT(outer_aborts, 0);
  EXPECT_EQ(store().stats().repairs, 0u);
  ExpectNoLeak("after the sequences");
}

// ---------------------------------------------------------------------------
// 3. The whole-store walks in a LockAll scope

// Every key of the view once: Scan with `count`, to the end.
std::multiset<std::string> ScanAll(Store& store, size_t count) {
  std::multiset<std::string> seen;
  uint64_t cursor = 0;
  int calls = 0;
  do {
    cursor =
        store.Scan(cursor, count, [&](std::string_view k, const EntryView&) { seen.emplace(k); });
  } while (cursor != 0 && ++calls < 100000);
  return seen;
}

std::multiset<std::string> KeysOf(const Model& m) {
  std::multiset<std::string> out;
  for (const auto& [k, v] : m) out.insert(k);
  return out;
}

// The walks through a LockAll scope see exactly the view: staged keys
// included, erased ones not, each once; and what a borrowed Abort or the
// outer Abort takes back.
TEST_F(ScopeTest, WalksInALockAllScopeSeeItsView) {
  Model m;
  for (int i = 0; i < 200; i++) {
    m[testing::Name("w:", i)] = Value{testing::Name("old", i), i % 7 == 0 ? kFarFuture : 0};
  }
  Fill(m);
  const Model original = m;
  std::vector<std::string> universe;
  for (int i = 0; i < 200; i++) universe.push_back(testing::Name("w:", i));
  for (int i = 0; i < 40; i++) universe.push_back(testing::Name("n:", i));
  universe.push_back("only");

  auto check_view = [&](const Model& want, const std::string& when) {
    SCOPED_TRACE(when);
    EXPECT_EQ(store().KeyCount(), want.size());
    for (size_t count : {1, 3, 50}) {
      // The values too, for the smallest count.
      std::multiset<std::string> seen;
      std::string bad;
      uint64_t cursor = 0;
      do {
        cursor = store().Scan(cursor, count, [&](std::string_view k, const EntryView& v) {
          seen.emplace(k);
          auto it = want.find(std::string(k));
          if (it == want.end() || it->second.value != v.value || it->second.expire != v.expire_ms) {
            bad += std::string(k) + " ";
          }
        });
      } while (cursor != 0);
      EXPECT_EQ(seen, KeysOf(want)) << "Scan count " << count;
      EXPECT_EQ(bad, "") << "Scan count " << count << ": wrong values";
    }
    std::multiset<std::string> by_stripe;
    std::string wrong;
    for (uint32_t s = 0; s < store().stripe_count(); s++) {
      store().ScanStripe(s, [&](std::string_view k, const EntryView&) {
        by_stripe.emplace(k);
        if (store().StripeOf(k) != s) wrong += std::string(k) + " ";
      });
    }
    store().ScanStripe(store().stripe_count(), [&](std::string_view k, const EntryView&) {
      wrong += "past the last stripe: " + std::string(k);
    });
    EXPECT_EQ(by_stripe, KeysOf(want)) << "ScanStripe";
    EXPECT_EQ(wrong, "") << "ScanStripe: keys of another stripe";
    std::set<std::string> picked;
    for (int i = 0; i < 200; i++) {
      auto k = store().RandomKey();
      if (want.empty()) {
        EXPECT_FALSE(k) << "RandomKey of an empty view: " << *k;
        break;
      }
      ASSERT_TRUE(k);
      EXPECT_TRUE(want.count(*k)) << "RandomKey returned " << *k << ", not in the view";
      picked.insert(*k);
    }
    if (want.size() > 1) {
      EXPECT_GT(picked.size(), 1u) << "RandomKey always returns one key";
    }
  };

  {
    Store::Txn txn = store().LockAll();
    Store::Scope scope(store(), txn);
    check_view(m, "before any write");
    {
      Store::Txn b = store().Lock("w:0");
      for (int i = 0; i < 50; i++) ASSERT_TRUE(b.Erase(testing::Name("w:", i)));
      for (int i = 0; i < 30; i++) {
        ASSERT_EQ(b.Put(testing::Name("n:", i), testing::Name("new", i)), Status::kOk);
      }
      for (int i = 50; i < 60; i++) {
        ASSERT_EQ(b.Put(testing::Name("w:", i), testing::Name("over", i), kKeepTtl), Status::kOk);
      }
      ASSERT_TRUE(b.SetExpire("w:60", kFarFuture + 60));
      ASSERT_EQ(b.Put("w:0", "back"), Status::kOk);  // a Put after an Erase
      // While the borrowed Txn is alive the walks see its writes.
      Model now = m;
      for (int i = 0; i < 50; i++) now.erase(testing::Name("w:", i));
      for (int i = 0; i < 30; i++) now[testing::Name("n:", i)] = Value{testing::Name("new", i), 0};
      for (int i = 50; i < 60; i++) {
        now[testing::Name("w:", i)] =
            Value{testing::Name("over", i), m[testing::Name("w:", i)].expire};
      }
      now["w:60"].expire = kFarFuture + 60;
      now["w:0"] = Value{"back", 0};
      check_view(now, "inside the first borrowed Txn");
      m = now;
    }
    check_view(m, "after the first borrowed Txn");
    {
      Store::Txn b = store().Lock("w:1");
      ASSERT_EQ(b.Put("n:35", "aborted"), Status::kOk);
      ASSERT_TRUE(b.Erase("w:100"));
      ASSERT_TRUE(b.Erase("n:3"));  // staged new by the first one
      Model now = m;
      now["n:35"] = Value{"aborted", 0};
      now.erase("w:100");
      now.erase("n:3");
      check_view(now, "inside a borrowed Txn that aborts");
      b.Abort();
    }
    check_view(m, "after a borrowed Abort");
    {
      Store::Txn b = store().Lock("w:2");
      store().Flush();  // inside the savepoint
      check_view({}, "after a Flush inside a borrowed Txn");
      ASSERT_EQ(b.Put("n:36", "after-flush"), Status::kOk);
      check_view({{"n:36", {"after-flush", 0}}}, "a Put after the Flush");
      b.Abort();
    }
    check_view(m, "after a borrowed Abort of a Flush");
    {
      // Every key but one erased: RandomKey can only find that one.
      Store::Txn b = store().Lock("w:3");
      for (const auto& [k, v] : m) {
        if (k != "w:150") {
          ASSERT_TRUE(b.Erase(k));
        }
      }
      for (int i = 0; i < 20; i++) EXPECT_EQ(store().RandomKey(), "w:150");
      EXPECT_EQ(store().KeyCount(), 1u);
      b.Abort();
    }
    check_view(m, "after taking back an erase of all but one");
    {
      Store::Txn b = store().Lock("w:4");
      store().Flush();
      ASSERT_EQ(b.Put("only", "1"), Status::kOk);
    }
    check_view({{"only", {"1", 0}}}, "after Flush and Put in a borrowed Txn that ended");
  }
  // The scope's Txn ended: only the new key remains.
  EXPECT_EQ(store().KeyCount(), 1u);
  EXPECT_EQ(store().stats().keys, 1u);
  EXPECT_EQ(ReadAll(store(), universe), (Model{{"only", {"1", 0}}}));
  EXPECT_EQ(store().RandomKey(), "only");
  EXPECT_EQ(ScanAll(store(), 1), (std::multiset<std::string>{"only"}));
  auto audit = store().Audit();
  EXPECT_TRUE(audit.empty()) << testing::JoinErrors(audit);

  // The outer Abort discards everything, Flush included, with no leak.
  store().Flush();
  Fill(original);
  for (int i = 0; i < 3; i++) store().ExpireCycle(Store::NowMs(), std::chrono::milliseconds(50));
  const Stats before = store().stats();
  for (int round = 0; round < 2; round++) {
    Store::Txn txn = store().LockAll();
    Store::Scope scope(store(), txn);
    {
      Store::Txn b = store().Lock("w:5");
      for (int i = 0; i < 40; i++) ASSERT_EQ(b.Put(testing::Name("n:", i), "x"), Status::kOk);
      ASSERT_TRUE(b.Erase("w:7"));
    }
    {
      Store::Txn b = store().Lock("w:6");
      ASSERT_EQ(b.Put("w:8", std::string(20000, 'L')), Status::kOk);
    }
    store().Flush();  // outside any borrowed Txn
    EXPECT_EQ(store().KeyCount(), 0u);
    {
      Store::Txn b = store().Lock("w:6");
      ASSERT_EQ(b.Put("only", "2"), Status::kOk);
    }
    if (round == 0) {
      txn.Abort();  // the scope still set
    } else {
      Store::Txn moved = std::move(txn);  // a Txn moved keeps its staging
      moved.Abort();
    }
  }
  const Stats after = store().stats();
  EXPECT_EQ(after.keys, before.keys);
  EXPECT_EQ(after.used_bytes, before.used_bytes);
  EXPECT_EQ(after.pages_free, before.pages_free) << "pages leaked";
  EXPECT_EQ(ReadAll(store(), universe), original);
  audit = store().Audit();
  EXPECT_TRUE(audit.empty()) << testing::JoinErrors(audit);
  ExpectNoLeak("after the walks");
}

// An expired key not yet removed: the walks of a LockAll scope leave it out
// (KeyCount counts it, as DBSIZE does), and a Put over it shows once.
TEST_F(ScopeTest, WalksInALockAllScopeSkipExpiredKeysAndShowAPutOverOneOnce) {
  for (const char* k : {"live", "gone", "again"}) {
    Store::Txn t = store().Lock(k);
    ASSERT_EQ(t.Put(k, "1", std::string_view(k) == "live" ? 0 : kPast), Status::kOk);
  }
  {
    Store::Txn txn = store().LockAll();
    Store::Scope scope(store(), txn);
    EXPECT_EQ(store().KeyCount(), 3u);  // expired ones included
    EXPECT_EQ(ScanAll(store(), 1), (std::multiset<std::string>{"live"}));
    {
      Store::Txn b = store().Lock("again");
      EXPECT_FALSE(b.Find("again"));
      ASSERT_EQ(b.Put("again", "2", kKeepTtl), Status::kOk);
      EXPECT_EQ(b.Find("again")->expire_ms, 0);  // the expired one's time is not kept
    }
    EXPECT_EQ(ScanAll(store(), 1), (std::multiset<std::string>{"live", "again"}));
    for (int i = 0; i < 50; i++) EXPECT_NE(store().RandomKey(), "gone");
  }
  EXPECT_EQ(ScanAll(store(), 1), (std::multiset<std::string>{"live", "again"}));
  auto audit = store().Audit();
  EXPECT_TRUE(audit.empty()) << testing::JoinErrors(audit);
  ExpectNoLeak("after expired keys in a scope");
}

// LockAll with as few stripes as a Txn keeps inline (1 and 3): the scope
// commits, aborts and survives a death after its commit the same way.
TEST(ScopeFewStripesTest, LockAllWithInlineStripes) {
  for (uint32_t stripes : {1u, 3u}) {
    SCOPED_TRACE(testing::Name("stripes ", stripes));
    testing::TestStore store(testing::Options(8 * kMB, stripes));
    ASSERT_TRUE(store.get());
    const uint64_t free_pages = store->stats().pages_free;
    std::vector<std::string> keys;
    for (int i = 0; i < 24; i++) keys.push_back(testing::Name("f:", i));
    {
      Store::Txn txn = store->LockAll();
      Store::Scope scope(*store, txn);
      {
        Store::Txn b = store->Lock(keys[0]);
        for (const std::string& k : keys) ASSERT_EQ(b.Put(k, k), Status::kOk);
      }
      {
        Store::Txn b = store->Lock(keys[0]);
        for (const std::string& k : keys) ASSERT_TRUE(b.Erase(k));
        b.Abort();
      }
      EXPECT_EQ(store->KeyCount(), keys.size());
    }
    Model want;
    for (const std::string& k : keys) want[k] = Value{k, 0};
    EXPECT_EQ(ReadAll(*store, keys), want);
    // A death just after the commit store: everything appears.
    const std::string seg = store.name();
    pid_t pid = testing::ForkChild([&] {
      std::string error;
      auto other = Store::Attach(seg, &error);
      if (!other) return 2;
      Store::Txn txn = other->LockAll();
      Store::Scope scope(*other, txn);
      {
        Store::Txn b = other->Lock(keys[0]);
        for (const std::string& k : keys) {
          if (b.Put(k, "dead") != Status::kOk) return 3;
        }
      }
      ArmCrashPointForTesting(CrashPoint::kTxnCommitted, 1);
      return 4;  // the scope's Txn ends here, and dies at its commit
    });
    int status = testing::WaitChild(pid, std::chrono::seconds(10));
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    std::string errors;
    Model seen = ReadInFreshProcess(seg, keys, 1, &errors);
    EXPECT_EQ(errors, "");
    for (auto& [k, v] : want) v.value = "dead";
    EXPECT_EQ(Diff(seen, want), "");
    store->Flush();
    EXPECT_EQ(store->stats().used_bytes, 0u);
    EXPECT_EQ(store->stats().pages_free, free_pages) << "pages leaked";
    auto audit = store->Audit();
    EXPECT_TRUE(audit.empty()) << testing::JoinErrors(audit);
  }
}

// A scope inside a batch (a worker brackets a connection's pipeline, EXEC
// included): the batch's kept stripe is let go before the scope locks, the
// borrowed Txns keep nothing, and when the scope's Txn ends no stripe stays
// locked except the one a later Lock of the batch keeps.
TEST_F(ScopeTest, AScopeInsideABatchLeavesNoStripeLocked) {
  const std::vector<std::string> keys = PickKeys(store(), "b:", 1, 3);
  const std::string seg = name();
  auto other_can_read = [&](const std::string& key) {
    pid_t pid = testing::ForkChild([&] {
      std::string error;
      auto other = Store::Attach(seg, &error);
      if (!other) return 2;
      return other->ReadUnlocked(key, [](const EntryView&) {}) == Store::ReadResult::kRetry ? 1 : 0;
    });
    int status = testing::WaitChild(pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  };
  for (const std::string& k : keys) {
    Store::Txn t = store().Lock(k);
    ASSERT_EQ(t.Put(k, "0"), Status::kOk);
  }
  for (int all = 0; all < 2; all++) {
    store().BeginBatch();
    {
      Store::Txn t = store().Lock(keys[0]);  // kept after it ends
      ASSERT_EQ(t.Put(keys[0], "1"), Status::kOk);
    }
    EXPECT_FALSE(other_can_read(keys[0]));
    {
      std::vector<std::string_view> views(keys.begin(), keys.end());
      Store::Txn txn = all ? store().LockAll() : store().LockKeys(views, Writes::kStaged);
      Store::Scope scope(store(), txn);
      for (const std::string& k : keys) {
        Store::Txn b = store().Lock(k);
        ASSERT_EQ(b.Put(k, "2"), Status::kOk);
      }
    }
    for (const std::string& k : keys) EXPECT_TRUE(other_can_read(k)) << k << ", LockAll " << all;
    {
      Store::Txn t = store().Lock(keys[1]);
      EXPECT_EQ(t.Find(keys[1])->value, "2");
    }
    EXPECT_FALSE(other_can_read(keys[1]));  // kept by the batch
    store().EndBatch();
    EXPECT_TRUE(other_can_read(keys[1]));
  }
  ExpectNoLeak("after scopes in batches");
}

// FLUSHALL then DBSIZE in a LockAll scope (EXEC or a script) counts no
// key, inside the scope and after it ends, as a Flush outside a scope:
// expired keys not yet removed, and an expired staged Put, are erased too.
// (Found by this test: Txn::EraseAll erased only what the walks show, which
// leave expired keys out, so they stayed counted.)
TEST_F(ScopeTest, FlushInALockAllScopeLeavesNoKeyCounted) {
  {
    Store::Txn t = store().Lock("live");
    ASSERT_EQ(t.Put("live", "1"), Status::kOk);
  }
  {
    Store::Txn t = store().Lock("gone");
    ASSERT_EQ(t.Put("gone", "1", kPast), Status::kOk);  // expired, not yet removed
  }
  {
    Store::Txn txn = store().LockAll();
    Store::Scope scope(store(), txn);
    EXPECT_EQ(store().KeyCount(), 2u);  // expired ones included, as DBSIZE
    store().Flush();
    EXPECT_EQ(store().KeyCount(), 0u) << "DBSIZE after FLUSHALL in a scope";
    EXPECT_FALSE(store().RandomKey());
  }
  EXPECT_EQ(store().KeyCount(), 0u) << "DBSIZE after an EXEC of FLUSHALL";
  ExpectNoLeak("after a flush in a scope");
}

// ---------------------------------------------------------------------------
// 4. Crash safety: scopes are all or nothing across a death

// A scope transaction, a deterministic function of (seed, id, mode), so that
// the parent can replay what the child did.
enum class Mode { kOneKey, kOneStripe, kAll };
const char* const kModeNames[] = {"one key", "one stripe", "LockAll"};

struct Sub {
  std::vector<Op> ops;
  bool abort = false;
};

struct ScopePlan {
  Mode mode = Mode::kAll;
  std::vector<std::string> lock;  // the keys of LockKeys kStaged (kAll: every key)
  std::vector<Sub> subs;          // borrowed Txns, in order
  bool abort = false;             // the scope's Txn is aborted at the end
};

constexpr uint32_t kCrashKeys = 128;

std::vector<std::string> CrashUniverse() {
  std::vector<std::string> keys;
  for (uint32_t i = 0; i < kCrashKeys; i++) keys.push_back(testing::Name("c:", i));
  return keys;
}

ScopePlan MakeScopePlan(Store& store, uint64_t seed, uint64_t id, Mode mode) {
  std::mt19937_64 rng(seed ^ (id * 0xD1B54A32D192ED03ULL));
  const std::vector<std::string> universe = CrashUniverse();
  ScopePlan p;
  p.mode = mode;
  if (mode == Mode::kOneKey) {
    p.lock = {universe[rng() % universe.size()]};
  } else if (mode == Mode::kOneStripe) {
    // A stripe with many keys, so that its redo log spills past four ops.
    std::map<uint32_t, std::vector<std::string>> by;
    for (const std::string& k : universe) by[store.StripeOf(k)].push_back(k);
    std::vector<uint32_t> crowded;
    for (const auto& [s, keys] : by) {
      if (keys.size() >= 6) crowded.push_back(s);
    }
    if (crowded.empty()) crowded.push_back(by.begin()->first);
    p.lock = by[crowded[rng() % crowded.size()]];
  } else {
    p.lock = universe;
  }
  const size_t subs = 1 + rng() % 4;
  for (size_t i = 0; i < subs; i++) {
    Sub sub;
    sub.abort = rng() % 4 == 0;
    const size_t ops = 1 + rng() % (mode == Mode::kOneKey ? 5 : 9);
    for (size_t j = 0; j < ops; j++) {
      Op op;
      op.key = p.lock[rng() % p.lock.size()];
      const uint64_t dice = rng() % 30;
      if (mode == Mode::kAll && dice == 0) {
        op.kind = kOpFlush;
      } else if (dice < 14) {
        op.kind = kOpPut;
        op.value = RandomValue(rng, testing::Name("t", id) + testing::Name("/", i * 100 + j));
        const uint64_t e = rng() % 6;
        op.expire = e < 3 ? 0 : e < 5 ? kFarFuture + static_cast<int64_t>(id) : kKeepTtl;
      } else if (dice < 18) {
        op.kind = kOpAppend;
        op.value = testing::Name("+", id);
      } else if (dice < 24) {
        op.kind = kOpErase;
      } else {
        op.kind = kOpExpire;
        op.expire = rng() % 2 ? 0 : kFarFuture + static_cast<int64_t>(id) + 1;
      }
      sub.ops.push_back(op);
    }
    p.subs.push_back(sub);
  }
  p.abort = rng() % 10 == 0;
  return p;
}

void ApplyPlan(const ScopePlan& p, Model& m) {
  Model scope_m = m;
  for (const Sub& sub : p.subs) {
    Model cur = scope_m;
    for (const Op& op : sub.ops) ApplyOp(op, cur);
    if (!sub.abort) scope_m = cur;
  }
  if (!p.abort) m = scope_m;
}

// Called inside borrowed Txn number `sub`, after its ops, before it ends;
// true if it ended the borrowed Txn itself.
using Hook = std::function<bool(const ScopePlan& p, size_t sub, Store::Txn& borrowed)>;

// The child's side: runs the plan through a scope, checking read-your-writes
// against its own copy of the model `m` (updated when the Txn has ended).
// Returns an error, empty if none.
std::string RunScopePlan(Store& store, const ScopePlan& p, Model& m, const Hook& hook = nullptr) {
  std::vector<std::string_view> views(p.lock.begin(), p.lock.end());
  Store::Txn txn = p.mode == Mode::kAll ? store.LockAll() : store.LockKeys(views, Writes::kStaged);
  Model scope_m = m;
  {
    Store::Scope scope(store, txn);
    for (size_t i = 0; i < p.subs.size(); i++) {
      const Sub& sub = p.subs[i];
      Model cur = scope_m;
      std::optional<Store::Txn> b;
      if (i % 2 == 0) {
        b.emplace(store.Lock(p.lock[0]));
      } else {
        b.emplace(store.LockKeys(views));
      }
      for (const Op& op : sub.ops) {
        const bool want = ApplyOp(op, cur);
        if (DoOp(store, *b, op) != want) return "op " + std::to_string(op.kind) + " on " + op.key;
        std::string diff = CheckKey(*b, op.key, cur);
        if (!diff.empty()) return "read-your-writes: " + diff;
      }
      if (hook && hook(p, i, *b)) continue;
      if (sub.abort) {
        b->Abort();
      } else {
        b->Unlock();
        scope_m = cur;
      }
    }
    if (p.abort) txn.Abort();  // the scope still set, as EXEC's discard would
  }
  if (!p.abort) {
    txn.Unlock();
    m = scope_m;
  }
  return "";
}

class ScopeCrashTest : public ScopeTest {
 protected:
  Mode ModeOf(uint64_t id) const {
    return mode_ == -1 ? static_cast<Mode>(id % 3) : static_cast<Mode>(mode_);
  }
  ScopePlan PlanOf(uint64_t id) { return MakeScopePlan(store(), seed_, id, ModeOf(id)); }

  // A child running scope transactions from next_id_ (at most max_txns),
  // acknowledging each over a pipe once its Txn has ended.
  pid_t Spawn(CrashPoint crash, uint32_t nth, uint64_t max_txns, int* ack_fd,
              const Hook& hook = nullptr) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    const std::string seg = name();
    const uint64_t first = next_id_;
    pid_t pid = testing::ForkChild([&, seg, first, max_txns, crash, nth] {
      close(fds[0]);
      std::string error;
      auto other = Store::Attach(seg, &error);
      if (!other) return 2;
      if (crash != CrashPoint::kNone) ArmCrashPointForTesting(crash, nth);
      Model m = model_;  // this process's copy: the verified state
      for (uint64_t id = first; id < first + max_txns; id++) {
        ScopePlan p = MakeScopePlan(*other, seed_, id, ModeOf(id));
        std::string err = RunScopePlan(*other, p, m, hook);
        if (!err.empty()) {
          fprintf(stderr, "child: txn %llu (%s): %s\n", static_cast<unsigned long long>(id),
                  kModeNames[static_cast<int>(p.mode)], err.c_str());
          return 3;
        }
        if (write(fds[1], &id, sizeof(id)) != sizeof(id)) return 4;
      }
      return 0;
    });
    close(fds[1]);
    *ack_fd = fds[0];
    return pid;
  }

  // Folds up to `max` acknowledged Txns into the model (blocking for them).
  size_t ReadAcks(int ack_fd, size_t max = ~size_t{0}) {
    size_t n = 0;
    uint64_t id;
    while (n < max && read(ack_fd, &id, sizeof(id)) == sizeof(id)) {
      EXPECT_EQ(id, next_id_) << "acknowledgements out of order";
      ApplyPlan(PlanOf(id), model_);
      next_id_ = id + 1;
      n++;
    }
    return n;
  }

  // A fresh process reads every key (repairing) and audits; compared with
  // the model before and after the in-flight Txn: 0 (none of it), 1 (all),
  // 2 (both: it changed nothing), -1 after reporting a failure.
  int Verify(const std::string& when, std::optional<uint64_t> in_flight) {
    Model before = model_, after = model_;
    if (in_flight) ApplyPlan(PlanOf(*in_flight), after);
    std::string errors;
    Model seen = ReadInFreshProcess(name(), CrashUniverse(), rng_(), &errors);
    if (!errors.empty()) {
      ADD_FAILURE() << when << ":\n" << errors;
      return -1;
    }
    int outcome = -1;
    if (seen == before && seen == after) {
      outcome = 2;
    } else if (seen == before) {
      outcome = 0;
    } else if (seen == after) {
      outcome = 1;
    } else {
      ADD_FAILURE() << when << ": torn"
                    << (in_flight ? std::string(" (in flight: ") +
                                        kModeNames[static_cast<int>(ModeOf(*in_flight))] + ")"
                                  : std::string())
                    << "\n  vs the acknowledged state:" << Diff(seen, before)
                    << "\n  vs that plus the in-flight txn:" << Diff(seen, after);
      return -1;
    }
    if (outcome == 1) model_ = after;
    if (in_flight) next_id_ = *in_flight + 1;  // never run again
    return outcome;
  }

  void Prefill() {
    Model m;
    for (const std::string& k : CrashUniverse()) {
      if (rng_() % 2) m[k] = Value{RandomValue(rng_, "pre"), rng_() % 4 == 0 ? kFarFuture : 0};
    }
    Fill(m);
    model_ = m;
  }

  Model model_;
  uint64_t next_id_ = 0;
  int mode_ = -1;  // -1: by id
  uint64_t seed_ = Seed();
  std::mt19937_64 rng_{Seed() + 1};
};

TEST_F(ScopeCrashTest, KillsAtEveryTxnCrashPoint) {
  struct Case {
    CrashPoint point;
    int expect;  // 0: none of the in-flight Txn, 1: all of it
  };
  const Case cases[] = {
      {CrashPoint::kTxnPending, 0}, {CrashPoint::kTxnCommit, 0},  {CrashPoint::kTxnCommitted, 1},
      {CrashPoint::kTxnApply, 1},   {CrashPoint::kTxnApplied, 1}, {CrashPoint::kTxnAbort, 0},
  };
  Prefill();
  for (const Case& c : cases) {
    for (int mode = 0; mode < 3; mode++) {
      int reached = 0;
      for (int rep = 0; rep < 3; rep++) {
        mode_ = mode;
        int ack_fd;
        const uint32_t nth = 1 + static_cast<uint32_t>(rng_() % 12);
        pid_t pid = Spawn(c.point, nth, 200, &ack_fd);
        int status = testing::WaitChild(pid, std::chrono::seconds(10));
        const bool died = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        ASSERT_TRUE(died || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
            << "child status " << status;
        ReadAcks(ack_fd);
        close(ack_fd);
        const std::string when =
            std::string("after a kill at ") + CrashPointName(c.point) + ", " + kModeNames[mode];
        int outcome = Verify(when, died ? std::optional<uint64_t>(next_id_) : std::nullopt);
        ASSERT_GE(outcome, 0) << when;
        if (died) {
          reached++;
          if (outcome != 2) {
            EXPECT_EQ(outcome, c.expect) << when;
          }
        }
      }
      EXPECT_GT(reached, 0) << CrashPointName(c.point) << " never reached, " << kModeNames[mode];
    }
  }
  EXPECT_GT(store().stats().repairs, 0u);
  ExpectNoLeak("after the crash points");
}

// A death while rolling a committed scope forward (repair-txn): the next
// locker rolls it forward again.
TEST_F(ScopeCrashTest, ADeathDuringTheRollForwardIsRepairedAgain) {
  Prefill();
  int died_in_repair = 0;
  for (int rep = 0; rep < 6; rep++) {
    mode_ = rep % 3;
    int ack_fd;
    pid_t pid = Spawn(rep % 2 ? CrashPoint::kTxnCommitted : CrashPoint::kTxnApply,
                      1 + static_cast<uint32_t>(rng_() % 10), 200, &ack_fd);
    int status = testing::WaitChild(pid, std::chrono::seconds(10));
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    ReadAcks(ack_fd);
    close(ack_fd);
    const std::string seg = name();
    pid = testing::ForkChild([&] {
      std::string error;
      auto other = Store::Attach(seg, &error);
      if (!other) return 2;
      ArmCrashPointForTesting(CrashPoint::kRepairTxn, 1);
      for (const std::string& k : CrashUniverse()) Store::Txn txn = other->Lock(k);
      return 0;
    });
    status = testing::WaitChild(pid, std::chrono::seconds(10));
    died_in_repair += WIFSIGNALED(status);
    const std::string when = std::string("after a death rolling forward, ") + kModeNames[mode_];
    int outcome = Verify(when, next_id_);
    ASSERT_GE(outcome, 0) << when;
    if (outcome != 2) {
      EXPECT_EQ(outcome, 1) << when;
    }
  }
  EXPECT_GT(died_in_repair, 0);
  ExpectNoLeak("after deaths during roll-forwards");
}

TEST_F(ScopeCrashTest, RandomKillsNeverTearAScope) {
  const int kills = getenv("SHM_CRASH_KILLS") ? atoi(getenv("SHM_CRASH_KILLS")) : 50;
  Prefill();
  int applied = 0, dropped = 0;
  for (int i = 0; i < kills; i++) {
    int ack_fd;
    pid_t pid = Spawn(CrashPoint::kNone, 1, ~uint64_t{0} / 2, &ack_fd);
    // The instant: after a random number of acknowledgements (no sleep),
    // wherever the child has got to by then.
    ReadAcks(ack_fd, 1 + rng_() % 12);
    kill(pid, SIGKILL);
    int status = testing::WaitChild(pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    ReadAcks(ack_fd);
    close(ack_fd);
    int outcome = Verify(testing::Name("after random kill ", i), next_id_);
    ASSERT_GE(outcome, 0);
    applied += outcome == 1;
    dropped += outcome == 0;
  }
  printf("random kills: %d, in-flight scope applied %d, dropped %d, %llu txns\n", kills, applied,
         dropped, static_cast<unsigned long long>(next_id_));
  ExpectNoLeak("after the random kills");
}

// A death while a borrowed Txn is inside its savepoint, inside a borrowed
// Abort (freeing what it staged), or between two borrowed Txns: the scope's
// Txn never committed, so none of it appears.
TEST_F(ScopeCrashTest, ADeathInsideASavepointShowsNoneOfTheScope) {
  Prefill();
  enum Where { kInside, kInAbort, kBetween };
  const char* const where_names[] = {"inside a savepoint", "in a borrowed Abort",
                                     "between borrowed Txns"};
  for (int where = kInside; where <= kBetween; where++) {
    for (int mode = 0; mode < 3; mode++) {
      mode_ = mode;
      Hook hook = [where](const ScopePlan& p, size_t sub, Store::Txn& b) {
        if (sub == 0) return false;  // the first borrowed Txn ends as planned
        if (where == kInside) raise(SIGKILL);
        if (where == kBetween) {
          b.Unlock();
          raise(SIGKILL);
        }
        // A small staged write that the Abort frees: the death comes there.
        (void)b.Put(p.lock[0], "small");
        ArmCrashPointForTesting(CrashPoint::kSlabFree, 1);
        b.Abort();
        _exit(9);  // the Abort freed nothing
      };
      // A plan with a second borrowed Txn.
      while (PlanOf(next_id_).subs.size() < 2) next_id_++;
      int ack_fd;
      pid_t pid = Spawn(CrashPoint::kNone, 1, 1, &ack_fd, hook);
      int status = testing::WaitChild(pid, std::chrono::seconds(10));
      const std::string when =
          std::string("after a death ") + where_names[where] + ", " + kModeNames[mode];
      ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << when << ": " << status;
      ASSERT_EQ(ReadAcks(ack_fd), 0u);
      close(ack_fd);
      int outcome = Verify(when, next_id_);
      ASSERT_GE(outcome, 0) << when;
      EXPECT_NE(outcome, 1) << when << ": the scope's writes appeared";
    }
  }
  EXPECT_GT(store().stats().repairs, 0u);
  ExpectNoLeak("after the deaths in savepoints");
}

// ---------------------------------------------------------------------------
// 5. Lock order: LockAll scopes against LockKeys and batches

int64_t ReadCounter(Store::Txn& txn, std::string_view key) {
  auto e = txn.Find(key);
  return e ? std::stoll(std::string(e->value)) : 0;
}

bool Increment(Store::Txn& txn, std::string_view key) {
  return txn.Put(key, std::to_string(ReadCounter(txn, key) + 1)) == Status::kOk;
}

TEST_F(ScopeTest, LockAllScopesNeverDeadlockWithLockKeysAndBatches) {
  constexpr int kScopes = 4000, kOthers = 40000;
  const std::string seg = name();
  // Each increments "shared" once per iteration: under mutual exclusion the
  // total is exact.
  auto scopes = testing::ForkChild([&] {
    std::string error;
    auto st = Store::Attach(seg, &error);
    if (!st) return 2;
    std::mt19937_64 rng(Seed() + 7);
    for (int i = 0; i < kScopes; i++) {
      if (i % 4 == 3) {  // a LockKeys kStaged scope, for variety
        std::string k = testing::Name("d:", rng() % 64);
        std::vector<std::string_view> keys = {"shared", k};
        Store::Txn txn = st->LockKeys(keys, Writes::kStaged);
        Store::Scope scope(*st, txn);
        Store::Txn b = st->Lock("shared");
        if (!Increment(b, "shared") || b.Put(k, "s") != Status::kOk) return 3;
        continue;
      }
      Store::Txn txn = st->LockAll();
      Store::Scope scope(*st, txn);
      {
        Store::Txn b = st->Lock("shared");
        if (!Increment(b, "shared")) return 3;
        if (b.Put(testing::Name("d:", rng() % 64), "all") != Status::kOk) return 3;
      }
      {
        Store::Txn b = st->Lock("x");
        if (b.Put(testing::Name("d:", rng() % 64), "aborted") != Status::kOk) return 3;
        b.Abort();
      }
      if (i % 5 == 0) {
        (void)st->KeyCount();
        (void)st->RandomKey();
        (void)st->Scan(0, 10, [](std::string_view, const EntryView&) {});
      }
    }
    return 0;
  });
  auto others = testing::ForkChild([&] {
    std::string error;
    auto st = Store::Attach(seg, &error);
    if (!st) return 2;
    std::mt19937_64 rng(Seed() + 8);
    for (int i = 0; i < kOthers; i++) {
      switch (i % 4) {
        case 0: {  // a single Lock
          Store::Txn t = st->Lock("shared");
          if (!Increment(t, "shared")) return 3;
          break;
        }
        case 1: {  // a batch: several Locks, one keeping its stripe
          st->BeginBatch();
          for (int j = 0; j < 3; j++) {
            std::string k = testing::Name("d:", rng() % 64);
            Store::Txn t = st->Lock(k);
            if (t.Put(k, "b") != Status::kOk) return 3;
          }
          {
            Store::Txn t = st->Lock("shared");
            if (!Increment(t, "shared")) return 3;
          }
          std::string got;
          (void)st->ReadUnlocked("shared", [&](const EntryView& v) { got = std::string(v.value); });
          st->EndBatch();
          break;
        }
        default: {  // LockKeys of random keys, with "shared"
          std::vector<std::string> names = {"shared"};
          for (size_t j = 0, n = rng() % 6; j < n; j++) {
            names.push_back(testing::Name("d:", rng() % 64));
          }
          std::vector<std::string_view> keys(names.begin(), names.end());
          Store::Txn t = st->LockKeys(keys, i % 8 == 2 ? Writes::kStaged : Writes::kAuto);
          if (!Increment(t, "shared")) return 3;
          for (size_t j = 1; j < names.size(); j++) {
            if (t.Put(names[j], "k") != Status::kOk) return 3;
          }
        }
      }
      if (i % 100 == 0) st->ExpireCycle(Store::NowMs(), std::chrono::microseconds(200));
    }
    return 0;
  });
  int s1 = 0, s2 = 0;
  WithWatchdog("LockAll scopes against LockKeys and batches", std::chrono::seconds(20), [&] {
    s1 = testing::WaitChild(scopes, std::chrono::seconds(19));
    s2 = testing::WaitChild(others, std::chrono::seconds(19));
  });
  ASSERT_TRUE(WIFEXITED(s1) && WEXITSTATUS(s1) == 0) << "scopes: " << s1 << " (-1: deadlocked)";
  ASSERT_TRUE(WIFEXITED(s2) && WEXITSTATUS(s2) == 0) << "others: " << s2 << " (-1: deadlocked)";
  Store::Txn t = store().Lock("shared");
  EXPECT_EQ(ReadCounter(t, "shared"), kScopes + kOthers) << "an increment was lost";
  t.Unlock();
  auto audit = store().Audit();
  EXPECT_TRUE(audit.empty()) << testing::JoinErrors(audit);
  EXPECT_EQ(store().stats().repairs, 0u);
  ExpectNoLeak("after the lock-order run");
}

}  // namespace
}  // namespace redhub::shm
