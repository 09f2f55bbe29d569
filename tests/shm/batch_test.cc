// Store::BeginBatch / EndBatch: a batch keeps the stripe of its last Txn
// locked so that the next Txn on it needs no lock; any other lock lets it go
// first (lock order), EndBatch lets it go and hands it to a process waiting
// for it, and a process killed while keeping one leaves nothing a repair
// cannot fix.
#include <gtest/gtest.h>

#include "core.h"
#include "segment.h"
#include "shm_test_util.h"
#include "store.h"

namespace redhub::shm {
namespace {

constexpr uint64_t kMB = 1 << 20;
using Result = Store::ReadResult;

// Two keys on different stripes of `store`.
std::pair<std::string, std::string> KeysOnTwoStripes(Store& store) {
  std::string a = "key:a";
  for (int i = 0;; i++) {
    std::string b = testing::Name("key:b", i);
    if (store.StripeOf(b) != store.StripeOf(a)) return {a, b};
  }
}

Result ReadNoLock(Store& store, std::string_view key) {
  return store.ReadUnlocked(key, [](const EntryView&) {});
}

void Put(Store& store, const std::string& key, const std::string& value) {
  Store::Txn txn = store.Lock(key);
  ASSERT_EQ(txn.Put(key, value), Status::kOk);
}

TEST(BatchTest, KeepsTheLastStripeLockedUntilAnotherLockOrTheEnd) {
  testing::TestStore store(testing::Options(8 * kMB, 16));
  ASSERT_TRUE(store.get());
  auto [a, b] = KeysOnTwoStripes(*store);
  Put(*store, a, "1");
  Put(*store, b, "1");
  ASSERT_EQ(ReadNoLock(*store, a), Result::kFound);

  store->BeginBatch();
  Put(*store, a, "2");
  // The Txn ended but its stripe is still held: unlocked reads go to the lock.
  EXPECT_EQ(ReadNoLock(*store, a), Result::kRetry);
  EXPECT_EQ(ReadNoLock(*store, b), Result::kFound);
  {
    Store::Txn txn = store->Lock(a);  // takes the kept stripe over
    auto v = txn.Find(a);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->value, "2");
  }
  Put(*store, b, "2");  // another stripe: a's is let go
  EXPECT_EQ(ReadNoLock(*store, b), Result::kRetry);
  {
    // A's stripe is free: another process could lock it now.
    std::string name = store.name();
    pid_t pid = testing::ForkChild([&] {
      std::string error;
      auto other = Store::Attach(name, &error);
      if (!other) return 2;
      return other->ReadUnlocked(a, [](const EntryView&) {}) == Result::kFound ? 0 : 3;
    });
    EXPECT_EQ(testing::WaitChild(pid), 0);
  }
  {
    std::string_view keys[] = {a, b};
    Store::Txn txn = store->LockKeys(keys);  // lets go of b's first, then takes both
    EXPECT_TRUE(txn.Find(b).has_value());
  }
  Put(*store, a, "3");
  // An unlocked read of another stripe ends the run on a's: it is let go.
  EXPECT_EQ(ReadNoLock(*store, b), Result::kFound);
  EXPECT_EQ(ReadNoLock(*store, a), Result::kFound);
  Put(*store, a, "4");
  EXPECT_EQ(ReadNoLock(*store, a), Result::kRetry);
  store->EndBatch();
  EXPECT_EQ(ReadNoLock(*store, a), Result::kFound);
  EXPECT_EQ(ReadNoLock(*store, b), Result::kFound);
  // Outside a batch nothing is kept.
  Put(*store, a, "5");
  EXPECT_EQ(ReadNoLock(*store, a), Result::kFound);
  EXPECT_TRUE(testing::JoinErrors(store->Audit()).empty());
}

TEST(BatchTest, ALockWhileAnotherTxnIsAliveAbortsInsteadOfRiskingADeadlock) {
  testing::TestStore store(testing::Options(8 * kMB, 16));
  ASSERT_TRUE(store.get());
  auto [a, b] = KeysOnTwoStripes(*store);
  EXPECT_DEATH(
      {
        store->BeginBatch();
        Store::Txn first = store->Lock(a);
        Store::Txn second = store->Lock(b);
      },
      "lock order");
}

// The waiter count of a key's stripe, seen through a mapping of its own.
class Waiters {
 public:
  Waiters(Store& store, std::string_view key) {
    std::string error;
    segment_ = Segment::Open(store.name(), &error);
    if (!segment_) {
      ADD_FAILURE() << error;
      return;
    }
    core_ = std::make_unique<Core>(*segment_);
    count_ = &core_->stripes[store.StripeOf(key)].waiters;
  }
  uint32_t load() const { return count_ != nullptr ? count_->load() : 0; }
  // True once a process counts itself as blocked on the stripe (it does so
  // just before blocking), false if none does within 10 s.
  bool AwaitOne() const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (load() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return load() == 1;
  }

 private:
  std::unique_ptr<Segment> segment_;
  std::unique_ptr<Core> core_;
  const std::atomic<uint32_t>* count_ = nullptr;
};

TEST(BatchTest, EndBatchHandsTheStripeToAProcessWaitingForIt) {
  testing::TestStore store(testing::Options(8 * kMB, 16));
  ASSERT_TRUE(store.get());
  const std::string key = "hot";
  store->BeginBatch();
  Put(*store, key, "parent");

  auto child = testing::ForkAttached(store.name(), [&](Store& other, const auto& ready) {
    ready();
    Store::Txn txn = other.Lock(key);  // blocks until the parent's batch ends
    auto v = txn.Find(key);
    if (!v || v->value != "parent") return 4;
    return txn.Put(key, "child") == Status::kOk ? 0 : 5;
  });
  ASSERT_TRUE(child.AwaitReady());
  const pid_t pid = child.pid;
  // Wait until the child is blocked on the stripe, so that EndBatch has
  // somebody to hand it to.
  Waiters waiters(*store, key);
  ASSERT_TRUE(waiters.AwaitOne()) << "the child never blocked on the stripe";
  testing::WithWatchdog("EndBatch and the child's write", std::chrono::seconds(10), [&] {
    store->EndBatch();
    EXPECT_EQ(testing::WaitChild(pid, std::chrono::seconds(10)), 0);
  });
  EXPECT_EQ(waiters.load(), 0u);
  Store::Txn txn = store->Lock(key);
  auto v = txn.Find(key);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->value, "child");
}

// A waiter killed while blocked on a stripe never held it, so no repair
// follows; its count must not make every later batch end wait for nobody.
TEST(BatchTest, AWaiterKilledWhileBlockedIsForgottenAtTheNextBatchEnd) {
  testing::TestStore store(testing::Options(8 * kMB, 16));
  ASSERT_TRUE(store.get());
  const std::string key = "hot";
  store->BeginBatch();
  Put(*store, key, "parent");
  auto child = testing::ForkAttached(store.name(), [&](Store& other, const auto& ready) {
    ready();
    Store::Txn txn = other.Lock(key);  // blocks: killed while waiting
    return 4;
  });
  ASSERT_TRUE(child.AwaitReady());
  Waiters waiters(*store, key);
  ASSERT_TRUE(waiters.AwaitOne()) << "the child never blocked on the stripe";
  kill(child.pid, SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(testing::WaitChild(child.pid)));
  EXPECT_EQ(waiters.load(), 1u);  // nobody took it back
  store->EndBatch();              // waits in vain for a taker, then forgets it
  EXPECT_EQ(waiters.load(), 0u);
  // And the stripe is free for everybody.
  store->BeginBatch();
  Put(*store, key, "again");
  store->EndBatch();
  EXPECT_EQ(ReadNoLock(*store, key), Result::kFound);
}

TEST(BatchTest, AProcessKilledWhileKeepingAStripeLosesNoWriteAndBlocksNobody) {
  testing::TestStore store(testing::Options(8 * kMB, 16));
  ASSERT_TRUE(store.get());
  auto child = testing::ForkAttached(store.name(), [](Store& other, const auto& ready) {
    other.BeginBatch();
    for (int i = 0; i < 100; i++) {
      std::string key = testing::Name("k", i % 10);
      Store::Txn txn = other.Lock(key);
      if (txn.Put(key, testing::Name("v", i)) != Status::kOk) return 4;
    }
    // Keeps the last stripe (of k9) locked, with no Txn alive, and dies.
    ready();
    pause();
    return 5;
  });
  ASSERT_TRUE(child.AwaitReady());
  const pid_t pid = child.pid;
  EXPECT_EQ(ReadNoLock(*store, "k9"), Result::kRetry);
  kill(pid, SIGKILL);
  int status = testing::WaitChild(pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  testing::WithWatchdog("reading after the death", std::chrono::seconds(10), [&] {
    for (int i = 0; i < 10; i++) {
      std::string key = testing::Name("k", i);
      Store::Txn txn = store->Lock(key);
      auto v = txn.Find(key);
      ASSERT_TRUE(v.has_value()) << key;
      EXPECT_EQ(v->value, testing::Name("v", 90 + i)) << key;
    }
  });
  EXPECT_GE(store->stats().repairs, 1u);
  EXPECT_EQ(ReadNoLock(*store, "k9"), Result::kFound);
  EXPECT_TRUE(testing::JoinErrors(store->Audit()).empty());
}

}  // namespace
}  // namespace redhub::shm
