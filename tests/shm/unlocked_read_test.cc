// Store::ReadUnlocked, the GET that takes no lock: it answers what a locked
// Find answers, hands back a stripe that is locked (or was left locked by a
// dead process) to the locked path, and never returns a torn value while
// another process rewrites, deletes and reinserts keys, so that chunks are
// reused and tables grow, shrink and are freed under it (Store::Prefetch
// reads the same way, in the same race).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <random>

#include "shm_test_util.h"
#include "store.h"

namespace redhub::shm {
namespace {

constexpr uint64_t kMB = 1 << 20;
using Result = Store::ReadResult;

struct Read {
  Result result;
  std::string value;
  int calls = 0;
};

Read ReadNoLock(Store& store, std::string_view key) {
  Read r;
  r.result = store.ReadUnlocked(key, [&](const EntryView& view) {
    r.value.assign(view.value);
    r.calls++;
  });
  return r;
}

TEST(UnlockedReadTest, AnswersWhatALockedFindAnswers) {
  testing::TestStore store(testing::Options(8 * kMB, 16));
  ASSERT_TRUE(store.get());
  for (int i = 0; i < 1000; i++) {
    std::string key = testing::Name("key:", i);
    Store::Txn txn = store->Lock(key);
    ASSERT_EQ(txn.Put(key, std::string(i % 300, static_cast<char>('a' + i % 26))), Status::kOk);
  }
  for (int i = 0; i < 1000; i++) {
    std::string key = testing::Name("key:", i);
    Read r = ReadNoLock(*store, key);
    ASSERT_EQ(r.result, Result::kFound) << key;
    EXPECT_EQ(r.calls, 1);
    EXPECT_EQ(r.value, std::string(i % 300, static_cast<char>('a' + i % 26))) << key;
  }
  Read absent = ReadNoLock(*store, "key:1000");
  EXPECT_EQ(absent.result, Result::kAbsent);
  EXPECT_EQ(absent.calls, 0);

  // An expired key needs the lock to be deleted: the unlocked read hands it
  // over, and the locked Find then deletes it.
  {
    Store::Txn txn = store->Lock("short");
    ASSERT_EQ(txn.Put("short", "lived", Store::NowMs() - 1), Status::kOk);
  }
  EXPECT_EQ(ReadNoLock(*store, "short").result, Result::kRetry);
  uint64_t expired = store->stats().expired;
  {
    Store::Txn txn = store->Lock("short");
    EXPECT_FALSE(txn.Find("short").has_value());
  }
  EXPECT_EQ(store->stats().expired, expired + 1);
  EXPECT_EQ(ReadNoLock(*store, "short").result, Result::kAbsent);
}

TEST(UnlockedReadTest, ReportsTheIdleTimeAndTouchesTheLruClock) {
  testing::TestStore store(testing::Options(8 * kMB, 4));
  ASSERT_TRUE(store.get());
  const int64_t t0 = Store::NowMs();
  store->set_now_ms(t0);
  {
    Store::Txn txn = store->Lock("k");
    ASSERT_EQ(txn.Put("k", "v"), Status::kOk);
  }
  store->set_now_ms(t0 + 5000);
  uint32_t idle = 0;
  ASSERT_EQ(store->ReadUnlocked("k", [&](const EntryView& v) { idle = v.idle_seconds; }),
            Result::kFound);
  EXPECT_GE(idle, 4u);
  EXPECT_LE(idle, 6u);
  // The read touched the clock: a locked Peek now sees the key as just used.
  Store::Txn txn = store->Lock("k");
  auto view = txn.Peek("k");
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->idle_seconds, 0u);
}

TEST(UnlockedReadTest, ALockedStripeOrOneLeftByADeadHolderGoesToTheLockedPath) {
  testing::TestStore store(testing::Options(8 * kMB, 4));
  ASSERT_TRUE(store.get());
  {
    Store::Txn txn = store->Lock("k");
    ASSERT_EQ(txn.Put("k", "before"), Status::kOk);
  }
  ASSERT_EQ(ReadNoLock(*store, "k").result, Result::kFound);

  auto child = testing::ForkAttached(store.name(), [](Store& other, const auto& ready) {
    Store::Txn txn = other.Lock("k");
    if (txn.Put("k", "written by the dead") != Status::kOk) return 4;
    ready();
    pause();  // holds the lock until killed
    return 5;
  });
  ASSERT_TRUE(child.AwaitReady());
  const pid_t pid = child.pid;
  EXPECT_EQ(ReadNoLock(*store, "k").result, Result::kRetry) << "stripe locked by a live holder";
  kill(pid, SIGKILL);
  int status = testing::WaitChild(pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(ReadNoLock(*store, "k").result, Result::kRetry) << "stripe left by a dead holder";

  uint64_t repairs = store->stats().repairs;
  testing::WithWatchdog("locking after the holder died", std::chrono::seconds(10), [&] {
    Store::Txn txn = store->Lock("k");  // repairs
  });
  EXPECT_EQ(store->stats().repairs, repairs + 1);
  Read r = ReadNoLock(*store, "k");
  ASSERT_EQ(r.result, Result::kFound);
  EXPECT_EQ(r.value, "written by the dead");  // the Put was done before the death
}

// A value that says which key and which write it belongs to, and how long it
// is: "<key>|<gen>|" then filler bytes derived from gen up to a length that
// varies with gen, so a torn or misplaced read is recognisable.
std::string MakeValue(const std::string& key, uint64_t gen) {
  std::string v = key + "|" + std::to_string(gen) + "|";
  size_t len = v.size() + gen % 700;
  char fill = static_cast<char>('A' + gen % 50);
  v.resize(len, fill);
  return v;
}

// Empty if `value` is a whole MakeValue(key, gen) for some gen; else why not.
std::string CheckValue(const std::string& key, const std::string& value) {
  if (value.compare(0, key.size() + 1, key + "|") != 0) return "wrong key";
  size_t bar = value.find('|', key.size() + 1);
  if (bar == std::string::npos) return "no generation";
  uint64_t gen = std::stoull(value.substr(key.size() + 1, bar - key.size() - 1));
  if (value != MakeValue(key, gen)) return "torn (gen " + std::to_string(gen) + ")";
  return "";
}

TEST(UnlockedReadTest, NoTornOrForeignValueWhileAnotherProcessRewritesTheStripe) {
  // One stripe and little memory: every write changes the version the reads
  // validate against, and freed chunks and tables are reused at once.
  testing::TestStore store(testing::Options(2 * kMB, 1));
  ASSERT_TRUE(store.get());
  constexpr int kKeys = 64;
  auto key_of = [](int i) { return testing::Name("key:", i); };

  // Shared with the writer: how many writes it has done, and a stop flag.
  auto* shared = static_cast<std::atomic<uint64_t>*>(
      mmap(nullptr, 2 * sizeof(std::atomic<uint64_t>), PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(shared, MAP_FAILED);
  new (&shared[0]) std::atomic<uint64_t>(0);
  new (&shared[1]) std::atomic<uint64_t>(0);

  std::string name = store.name();
  pid_t writer = testing::ForkChild([&] {
    std::string error;
    auto other = Store::Attach(name, &error);
    if (!other) return 2;
    std::mt19937_64 rng(42);
    uint64_t gen = 0;
    while (shared[1].load() == 0) {
      // Rounds of rewrites, then every key deleted (the stripe's table is
      // freed when it empties) and written again.
      for (int n = 0; n < 2000; n++) {
        int i = static_cast<int>(rng() % kKeys);
        std::string key = key_of(i);
        Store::Txn txn = other->Lock(key);
        if (rng() % 8 == 0) {
          txn.Erase(key);
        } else if (txn.Put(key, MakeValue(key, ++gen)) != Status::kOk) {
          return 3;
        }
        shared[0].fetch_add(1);
      }
      for (int i = 0; i < kKeys; i++) {
        Store::Txn txn = other->Lock(key_of(i));
        txn.Erase(key_of(i));
      }
    }
    return 0;
  });

  uint64_t found = 0, absent = 0, retried = 0;
  std::vector<std::string> errors;
  std::mt19937_64 rng(7);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  // Until the writer has done 300k writes (bounded in time for a starved
  // machine): reads run all along, so most of them race a write.
  while (shared[0].load() < 300000 && std::chrono::steady_clock::now() < deadline &&
         errors.size() < 10) {
    std::string key = key_of(static_cast<int>(rng() % kKeys));
    // Prefetch hints read the same words without a lock: they must never
    // fault or change anything, however torn what they read.
    store->Prefetch(key, 0);
    store->Prefetch(key, 1);
    Read r = ReadNoLock(*store, key);
    switch (r.result) {
      case Result::kFound:
        found++;
        if (std::string why = CheckValue(key, r.value); !why.empty()) {
          errors.push_back(key + ": " + why + ": " + r.value.substr(0, 60));
        }
        break;
      case Result::kAbsent:
        absent++;
        break;
      case Result::kRetry:
        retried++;
        break;
    }
  }
  const uint64_t writes = shared[0].load();
  shared[1].store(1);
  EXPECT_EQ(testing::WaitChild(writer), 0);
  munmap(shared, 2 * sizeof(std::atomic<uint64_t>));

  EXPECT_TRUE(errors.empty()) << testing::JoinErrors(errors);
  EXPECT_GE(writes, 300000u) << "the writer did not get to run";
  EXPECT_GT(found, 0u);
  EXPECT_GT(absent, 0u);
  printf("writes %llu, unlocked reads: %llu found, %llu absent, %llu handed to the lock\n",
         static_cast<unsigned long long>(writes), static_cast<unsigned long long>(found),
         static_cast<unsigned long long>(absent), static_cast<unsigned long long>(retried));
  EXPECT_TRUE(testing::JoinErrors(store->Audit()).empty());
}

}  // namespace
}  // namespace redhub::shm
