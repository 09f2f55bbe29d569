// What a dead lock holder leaves behind is settled promptly, by whoever
// passes by, and never by blocking: its stripe is repaired by the next
// ExpireCycle (or a whole-store walk) even if no command ever locks it
// again, and counter resyncs only try-lock, so a hung holder cannot make the
// master or another worker hang with it.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <set>
#include <string>

#include "counters.h"
#include "shm_test_util.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::shm {
namespace {

using testing::ForkAttached;
using testing::TestStore;
using testing::WaitChild;
using testing::WithWatchdog;

constexpr uint64_t kMB = 1 << 20;

StoreOptions Limited(uint64_t maxmemory) {
  StoreOptions o = testing::Options(64 * kMB);
  o.maxmemory = maxmemory;
  o.policy = Policy::kNoEviction;
  return o;
}

// A child dies inside the fill of a large value: its stripe held no key and
// no table, so nothing but a repair returns the charge.
pid_t DieInsideAFill(const std::string& name, const std::string& key, size_t len) {
  return ForkAttached(name,
                      [&](Store& store, const std::function<void()>&) {
                        Store::Txn txn = store.Lock(key);
                        txn.PutWith(key, len, 0, [](char*) { kill(getpid(), SIGKILL); });
                        return 1;  // not reached
                      })
      .pid;
}

bool Killed(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }

TEST(AbandonedTest, ExpireCycleReturnsADeadWritersChargeWithoutAnyCommandOnItsStripe) {
  TestStore store(Limited(8 * kMB));
  ASSERT_TRUE(Killed(WaitChild(DieInsideAFill(store.name(), "big", 6 * kMB))));
  ASSERT_GE(store->stats().used_bytes, 6 * kMB);  // charged, never published
  const uint64_t repairs = store->stats().repairs;

  WithWatchdog("ExpireCycle", std::chrono::seconds(10),
               [&] { store->ExpireCycle(Store::NowMs(), std::chrono::milliseconds(10)); });
  Stats st = store->stats();
  EXPECT_EQ(st.repairs, repairs + 1);
  EXPECT_EQ(st.used_bytes, 0u);
  EXPECT_EQ(st.keys, 0u);
  // maxmemory sees it too: 6 MB more fits under 8 MB only if the dead 6 MB
  // were given back to the store-wide counter.
  Store::Txn txn = store->Lock("next");
  EXPECT_EQ(txn.Put("next", std::string(6 * kMB, 'x')), Status::kOk);
}

TEST(AbandonedTest, FlushallReturnsADeadWritersCharge) {
  TestStore store(Limited(8 * kMB));
  ASSERT_TRUE(Killed(WaitChild(DieInsideAFill(store.name(), "big", 6 * kMB))));
  store->Flush();
  EXPECT_EQ(store->stats().used_bytes, 0u);
  EXPECT_EQ(store->stats().keys, 0u);
}

// Two keys on two stripes, written as one Txn by a child that dies right
// after the commit point: both must show up without a lookup of either.
struct CommittedPair {
  std::string a = "ka", b;
};

CommittedPair DieAfterCommit(Store& parent, const std::string& name) {
  CommittedPair pair;
  for (int i = 0; pair.b.empty() || parent.StripeOf(pair.b) == parent.StripeOf(pair.a); i++) {
    pair.b = testing::Name("kb", i);
  }
  pid_t pid = ForkAttached(name, [&](Store& store, const std::function<void()>&) {
                const std::string_view keys[] = {pair.a, pair.b};
                Store::Txn txn = store.LockKeys(keys);
                if (txn.Put(pair.a, "A") != Status::kOk || txn.Put(pair.b, "B") != Status::kOk) {
                  return 4;
                }
                ArmCrashPointForTesting(CrashPoint::kTxnCommitted, 1);
                txn.Unlock();
                return 1;  // not reached
              }).pid;
  EXPECT_TRUE(Killed(WaitChild(pid)));
  return pair;
}

std::set<std::string> AllKeys(Store& store) {
  std::set<std::string> keys;
  uint64_t cursor = 0;
  do {
    cursor =
        store.Scan(cursor, 100, [&](std::string_view k, const EntryView&) { keys.emplace(k); });
  } while (cursor != 0);
  return keys;
}

TEST(AbandonedTest, ExpireCycleRollsACommittedTxnForwardWithoutAnyCommandOnItsKeys) {
  TestStore store(Limited(8 * kMB));
  CommittedPair pair = DieAfterCommit(*store, store.name());
  store->ExpireCycle(Store::NowMs(), std::chrono::milliseconds(10));
  EXPECT_EQ(store->stats().keys, 2u);  // DBSIZE reads these counters, unlocked
}

TEST(AbandonedTest, ScanVisitsAStripeADeadHolderLeftLockedEvenIfItLooksEmpty) {
  TestStore store(Limited(8 * kMB));
  CommittedPair pair = DieAfterCommit(*store, store.name());
  EXPECT_EQ(AllKeys(*store), (std::set<std::string>{pair.a, pair.b}));
  EXPECT_EQ(store->stats().keys, 2u);
}

// A live process that holds a stripe and does not let go (hung, or
// stopped): a resync gives up instead of waiting, holds nothing after, and
// succeeds once the stripe is free.
TEST(AbandonedTest, ResyncNeverBlocksOnAStripeAnotherProcessHolds) {
  TestStore store(Limited(8 * kMB));
  int release[2];
  ASSERT_EQ(pipe(release), 0);
  const std::string held_key = "held";
  testing::AttachedChild child =
      ForkAttached(store.name(), [&](Store& s, const std::function<void()>& ready) {
        close(release[1]);
        Store::Txn txn = s.Lock(held_key);
        ready();
        char c;
        return read(release[0], &c, 1) == 1 ? 0 : 5;  // holds the lock until told
      });
  close(release[0]);
  ASSERT_TRUE(child.AwaitReady());

  std::string other = "other";
  for (int i = 0; store->StripeOf(other) == store->StripeOf(held_key); i++) {
    other = testing::Name("other", i);
  }
  WithWatchdog("resync while a stripe is held", std::chrono::seconds(10), [&] {
    EXPECT_FALSE(store->ResyncCounters(std::chrono::milliseconds(50)));
    store->SetMaxmemory(4 * kMB);  // lowering resyncs: the master does this at SIGHUP
    store->ExpireCycle(Store::NowMs(), std::chrono::milliseconds(10));
    // Nothing the failed passes took is still held.
    Store::Txn txn = store->Lock(other);
    EXPECT_EQ(txn.Put(other, "v"), Status::kOk);
  });
  ASSERT_EQ(write(release[1], "x", 1), 1);
  close(release[1]);
  EXPECT_EQ(WaitChild(child.pid), 0);
  WithWatchdog("resync once free", std::chrono::seconds(10),
               [&] { EXPECT_TRUE(store->ResyncCounters(std::chrono::milliseconds(1000))); });
}

// The master, reaping a worker, must not wait on the counter area's lock: a
// worker stopped inside INFO or SLOWLOG holds it, and a master blocked there
// respawns nothing and, once let go, found every worker silent. The dead
// worker's clients stop counting for the others' admission all the same.
TEST(AbandonedTest, ForgettingADeadWorkerNeverWaitsForTheCounterLock) {
  const std::string name = testing::UniqueName() + "-stats";
  std::string error;
  auto area = CounterArea::Create(name, CounterAreaOptions{}, &error);
  ASSERT_NE(area, nullptr) << error;
  struct Remove {
    std::string name;
    ~Remove() { CounterArea::Remove(name); }
  } remove{name};
  // A worker that had 5 clients and died.
  pid_t dead = testing::ForkChild([] { return 0; });
  ASSERT_EQ(WaitChild(dead), 0);
  CounterBlock* block = area->Claim(dead);
  ASSERT_NE(block, nullptr);
  block->Set(slots::kConnectedClients, 5);
  ASSERT_EQ(area->SumGauge(slots::kConnectedClients), 5u);

  int release[2];
  ASSERT_EQ(pipe(release), 0);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t holder = testing::ForkChild([&] {
    close(release[1]);
    close(ready[0]);
    auto mine = CounterArea::Attach(name, &error);
    if (!mine) return 2;
    char c = 0;
    mine->WithLockForTesting([&] {
      if (write(ready[1], "R", 1) != 1) _exit(3);
      if (read(release[0], &c, 1) != 1) _exit(4);
    });
    return 0;
  });
  close(release[0]);
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  WithWatchdog("ForgetDead while the counter lock is held", std::chrono::seconds(10),
               [&] { area->ForgetDead(dead); });
  EXPECT_EQ(area->SumGauge(slots::kConnectedClients), 0u);
  ASSERT_EQ(write(release[1], "x", 1), 1);
  EXPECT_EQ(WaitChild(holder), 0);
  close(release[1]);
  close(ready[0]);
}

}  // namespace
}  // namespace redhub::shm
