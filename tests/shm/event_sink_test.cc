// Store::SetEventSink: every repair after a dead lock holder (a stripe's, the
// page pool's, a multi-key Txn rolled forward) reaches the sink as one line
// saying what was repaired, and only once this process holds no stripe, so
// a sink that blocks (a log write to a full pipe) or uses the store stalls
// nobody else.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <vector>

#include "shm_test_util.h"
#include "store.h"

namespace redhub::shm {
namespace {

using testing::ForkAttached;
using testing::TestStore;
using testing::WaitChild;

constexpr uint64_t kMB = 1 << 20;

bool Killed(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }

// A child writes `key` and dies holding its stripe's lock.
void DieHoldingTheLock(const std::string& name, const std::string& key) {
  pid_t pid = ForkAttached(name, [&](Store& store, const std::function<void()>&) {
                Store::Txn txn = store.Lock(key);
                if (txn.Put(key, "v") != Status::kOk) return 4;
                kill(getpid(), SIGKILL);
                return 1;  // not reached
              }).pid;
  ASSERT_TRUE(Killed(WaitChild(pid)));
}

bool Contains(const std::string& line, const std::string& part) {
  return line.find(part) != std::string::npos;
}

// Records every line; for each, whether the key could be read without a
// lock at that moment (it cannot while anyone holds its stripe).
struct Recorder {
  std::vector<std::string> lines;
  std::vector<Store::ReadResult> reads;

  void Install(Store& store, const std::string& key) {
    store.SetEventSink([this, &store, key](std::string_view line) {
      lines.emplace_back(line);
      reads.push_back(store.ReadUnlocked(key, [](const EntryView&) {}));
    });
  }
};

// A store of 16 stripes whose sink records into `rec`, the read checking "key".
class EventSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(store.get());
    rec.Install(*store, "key");
  }
  Recorder rec;  // first: the sink must not outlive it
  TestStore store{testing::Options(16 * kMB, 16)};
};

TEST_F(EventSinkTest, ARepairIsReportedAfterTheRepairingLockIsReleased) {
  DieHoldingTheLock(store.name(), "key");
  const std::string stripe = "stripe " + std::to_string(store->StripeOf("key")) + ": ";
  {
    Store::Txn txn = store->Lock("key");  // repairs
    ASSERT_TRUE(txn.Find("key"));
    EXPECT_TRUE(rec.lines.empty()) << "reported while the stripe was still locked";
  }
  ASSERT_EQ(rec.lines.size(), 1u);
  EXPECT_TRUE(Contains(rec.lines[0], stripe + "lock holder died; repaired")) << rec.lines[0];
  EXPECT_TRUE(Contains(rec.lines[0], "; 1 keys")) << rec.lines[0];
  // The sink ran with the stripe unlocked: a lock-free read of it succeeded.
  EXPECT_EQ(rec.reads[0], Store::ReadResult::kFound);
  EXPECT_EQ(store->stats().repairs, 1u);
}

TEST_F(EventSinkTest, ABatchReportsWhenItLetsItsKeptStripeGo) {
  DieHoldingTheLock(store.name(), "key");
  store->BeginBatch();
  { Store::Txn txn = store->Lock("key"); }  // repairs; the batch keeps the stripe
  EXPECT_TRUE(rec.lines.empty());
  store->EndBatch();
  ASSERT_EQ(rec.lines.size(), 1u);
  EXPECT_TRUE(Contains(rec.lines[0], "lock holder died; repaired")) << rec.lines[0];
}

TEST_F(EventSinkTest, TheExpireCycleReportsAnAbandonedStripe) {
  DieHoldingTheLock(store.name(), "key");
  store->ExpireCycle(Store::NowMs(), std::chrono::milliseconds(10));
  ASSERT_EQ(rec.lines.size(), 1u);
  EXPECT_TRUE(
      Contains(rec.lines[0], "stripe " + std::to_string(store->StripeOf("key")) + ": lock holder"))
      << rec.lines[0];
  EXPECT_EQ(rec.reads[0], Store::ReadResult::kFound);
}

TEST_F(EventSinkTest, ACommittedTxnRolledForwardIsReportedByEachParticipant) {
  std::string a = "ka", b;
  for (int i = 0; b.empty() || store->StripeOf(b) == store->StripeOf(a); i++) {
    b = testing::Name("kb", i);
  }
  rec.Install(*store, a);
  pid_t pid = ForkAttached(store.name(), [&](Store& child, const std::function<void()>&) {
                const std::string_view keys[] = {a, b};
                Store::Txn txn = child.LockKeys(keys);
                if (txn.Put(a, "A") != Status::kOk || txn.Put(b, "B") != Status::kOk) return 4;
                ArmCrashPointForTesting(CrashPoint::kTxnCommitted, 1);
                txn.Unlock();
                return 1;  // not reached
              }).pid;
  ASSERT_TRUE(Killed(WaitChild(pid)));
  store->ExpireCycle(Store::NowMs(), std::chrono::milliseconds(10));
  ASSERT_EQ(rec.lines.size(), 2u);
  for (const std::string& line : rec.lines) {
    EXPECT_TRUE(Contains(line, "committed txn rolled forward (1 writes)")) << line;
  }
  EXPECT_EQ(store->stats().keys, 2u);
}

TEST_F(EventSinkTest, APoolRepairIsReportedBeforeTheStripeRepairThatTriggeredIt) {
  // The stripe's first write needs its first table and slab: pages from the
  // pool, inside whose lock the child dies.
  pid_t pid = ForkAttached(store.name(), [&](Store& child, const std::function<void()>&) {
                Store::Txn txn = child.Lock("key");
                ArmCrashPointForTesting(CrashPoint::kPoolAlloc, 1);
                txn.Put("key", std::string(64 << 10, 'x'));
                return 1;  // not reached
              }).pid;
  ASSERT_TRUE(Killed(WaitChild(pid)));
  { Store::Txn txn = store->Lock("key"); }
  ASSERT_EQ(rec.lines.size(), 2u);
  EXPECT_TRUE(Contains(rec.lines[0], "page pool repaired after its lock holder died"))
      << rec.lines[0];
  EXPECT_TRUE(Contains(rec.lines[1], "lock holder died; repaired")) << rec.lines[1];
  EXPECT_TRUE(store->Audit().empty());
}

TEST_F(EventSinkTest, WithoutASinkRepairsAreCountedOnly) {
  store->SetEventSink(nullptr);
  DieHoldingTheLock(store.name(), "key");
  { Store::Txn txn = store->Lock("key"); }
  EXPECT_TRUE(rec.lines.empty());
  EXPECT_EQ(store->stats().repairs, 1u);
}

}  // namespace
}  // namespace redhub::shm
