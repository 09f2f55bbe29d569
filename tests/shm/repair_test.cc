// What a repair does with a stripe whose chains were damaged by a stray write
// (which no crash can cause): Audit reports the damage, and the repair that
// follows a lock holder's death cuts a chain at a link it cannot follow and
// moves an entry found in the wrong bucket back where lookups find it.
#include <gtest/gtest.h>

#include "core.h"
#include "shm_test_util.h"
#include "store.h"
#include "stripe.h"

namespace redhub::shm {
namespace {

constexpr uint64_t kMB = 1 << 20;

class RepairTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<testing::TestStore>(testing::Options(8 * kMB, 1));
    ASSERT_TRUE(store_->get());
    for (int i = 0; i < 100; i++) {
      std::string key = testing::Name("k", i);
      Store::Txn txn = store().Lock(key);
      ASSERT_EQ(txn.Put(key, "value of " + key), Status::kOk);
    }
    // Let the cron finish any rehash, so the stripe has one table.
    for (int i = 0; i < 10; i++) store().ExpireCycle(Store::NowMs(), std::chrono::milliseconds(1));
    std::string error;
    segment_ = Segment::Open(store_->name(), &error);
    ASSERT_TRUE(segment_) << error;
    core_ = std::make_unique<Core>(*segment_);
    ASSERT_EQ(core_->stripes[0].tables[1].load(), 0u);
  }

  Store& store() { return **store_; }
  Stripe stripe() { return Stripe(*core_, 0); }
  std::atomic<uint64_t>* Bucket(uint64_t b) {
    uint64_t desc = core_->stripes[0].tables[0].load();
    return &core_->At<std::atomic<uint64_t>>(TableOffset(desc))[b & ((1u << TableLog2(desc)) - 1)];
  }

  // A child takes the stripe's lock and dies holding it: the next locker
  // repairs the stripe.
  void DieHoldingTheLock() {
    std::string name = store_->name();
    pid_t pid = testing::ForkChild([&] {
      std::string error;
      auto other = Store::Attach(name, &error);
      if (!other) return 2;
      Store::Txn txn = other->Lock("k0");
      kill(getpid(), SIGKILL);
      return 3;
    });
    int status = testing::WaitChild(pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
  }

  std::optional<std::string> Get(const std::string& key) {
    Store::Txn txn = store().Lock(key);
    auto e = txn.Find(key);
    return e ? std::optional<std::string>(std::string(e->value)) : std::nullopt;
  }

  std::unique_ptr<testing::TestStore> store_;
  std::unique_ptr<Segment> segment_;
  std::unique_ptr<Core> core_;
};

TEST_F(RepairTest, AChainIsCutAtALinkThatCannotBeFollowed) {
  // An entry with a successor: point its link into the segment header.
  std::string victim;
  for (int i = 0; i < 100 && victim.empty(); i++) {
    std::string key = testing::Name("k", i);
    Slot slot;
    ASSERT_TRUE(stripe().Lookup(key, core_->Hash(key), &slot));
    if (LinkOffset(core_->Entry(slot.entry)->link.load()) != 0) victim = key;
  }
  ASSERT_FALSE(victim.empty());
  Slot slot;
  stripe().Lookup(victim, core_->Hash(victim), &slot);
  std::atomic<uint64_t>& link = core_->Entry(slot.entry)->link;
  link.store(WithOffset(link.load(), 64));

  auto errors = store().Audit();
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors[0].find("out of the pool"), std::string::npos) << errors[0];

  DieHoldingTheLock();
  EXPECT_EQ(Get(victim), "value of " + victim);  // repairs first
  Stats st = store().stats();
  EXPECT_EQ(st.repairs, 1u);
  EXPECT_GE(st.validation_errors, 1u);
  EXPECT_LT(st.keys, 100u);  // the chain's tail is lost: such damage is never a crash's
  errors = store().Audit();
  EXPECT_TRUE(errors.empty()) << testing::JoinErrors(errors);
  store().Flush();
  EXPECT_EQ(store().stats().pages_free, store().stats().pages_total);
}

TEST_F(RepairTest, AnEntryInTheWrongBucketIsMovedBack) {
  std::string key = "k42";
  uint64_t hash = core_->Hash(key);
  Slot slot;
  ASSERT_TRUE(stripe().Lookup(key, hash, &slot));
  EntryHeader* e = core_->Entry(slot.entry);
  // Unlink it and push it on the head of the next bucket.
  Stripe::Publish(slot.link, LinkOffset(e->link.load()));
  std::atomic<uint64_t>* wrong = Bucket(hash + 1);
  e->link.store(WithOffset(e->link.load(), LinkOffset(wrong->load())));
  Stripe::Publish(wrong, slot.entry);

  auto errors = store().Audit();
  ASSERT_EQ(errors.size(), 1u) << testing::JoinErrors(errors);
  EXPECT_NE(errors[0].find("wrong bucket"), std::string::npos) << errors[0];
  EXPECT_EQ(Get(key), std::nullopt);  // lookups cannot see it

  DieHoldingTheLock();
  EXPECT_EQ(Get(key), "value of k42");
  EXPECT_EQ(store().stats().keys, 100u);
  EXPECT_EQ(store().stats().validation_errors, 1u);
  for (int i = 0; i < 100; i++) {
    EXPECT_EQ(Get(testing::Name("k", i)), testing::Name("value of k", i));
  }
  errors = store().Audit();
  EXPECT_TRUE(errors.empty()) << testing::JoinErrors(errors);
}

TEST_F(RepairTest, ADeathWithNothingDamagedChangesNothing) {
  DieHoldingTheLock();
  for (int i = 0; i < 100; i++) {
    EXPECT_EQ(Get(testing::Name("k", i)), testing::Name("value of k", i));
  }
  Stats st = store().stats();
  EXPECT_EQ(st.repairs, 1u);
  EXPECT_EQ(st.validation_errors, 0u);
  EXPECT_EQ(st.keys, 100u);
  auto errors = store().Audit();
  EXPECT_TRUE(errors.empty()) << testing::JoinErrors(errors);
}

}  // namespace
}  // namespace redhub::shm
