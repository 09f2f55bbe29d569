// The shared ACL area (shm/acl_area.h): the users' text published with its
// generation, refusals that change nothing, the bounded wait the master
// uses, adoption by descriptor, the ACL LOG's grouping, trimming and
// truncation, and crash safety: a holder SIGKILLed at a named point inside
// Update (half the next copy written; all of it written, not published) or
// inside LogAdd, and at 200 random instants of a child that updates in a
// loop, never leaves a torn text or log entry, and the survivor's next lock
// repairs (the generation moves, so every reader re-reads).
#include "acl_area.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "crash_point.h"
#include "shm_test_util.h"

namespace redhub::shm {
namespace {

using testing::ForkChild;
using testing::KilledBySigkill;
using testing::WaitChild;
using testing::WithWatchdog;
using Clock = std::chrono::steady_clock;

std::unique_ptr<AclArea> MakeArea(size_t text_capacity = 4096, uint32_t log_capacity = 16) {
  std::string error;
  AclAreaOptions o;
  o.text_capacity = text_capacity;
  o.log_capacity = log_capacity;
  auto area = AclArea::Create(o, &error);
  EXPECT_NE(area, nullptr) << error;
  return area;
}

// Publishes `text` (wait_ms as Update's).
bool Put(AclArea& area, const std::string& text, std::string* error = nullptr, long wait_ms = -1) {
  std::string e;
  return area.Update(
      [&](const std::string&, std::string* next, std::string*) {
        *next = text;
        return true;
      },
      error != nullptr ? error : &e, wait_ms);
}

std::string ReadText(AclArea& area) {
  std::string t;
  area.Read(&t);
  return t;
}

// ---- Self-describing texts: "T <seq> <body length> <fnv-1a 64 of body>\n<body>".

uint64_t Fnv(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string MakeText(uint64_t seq, size_t body_len) {
  std::string body(body_len, '\0');
  uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < body_len; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    body[i] = static_cast<char>('a' + (x >> 59));
  }
  char head[80];
  snprintf(head, sizeof(head), "T %" PRIu64 " %zu %016" PRIx64 "\n", seq, body_len, Fnv(body));
  return head + body;
}

// The seq of a whole text, or -1 if it is torn or not one of MakeText's.
int64_t CheckText(const std::string& text) {
  uint64_t seq, hash;
  size_t len;
  int used = 0;
  if (sscanf(text.c_str(), "T %" SCNu64 " %zu %" SCNx64 "\n%n", &seq, &len, &hash, &used) != 3 ||
      used == 0) {
    return -1;
  }
  std::string_view body(text);
  body.remove_prefix(static_cast<size_t>(used));
  if (body.size() != len || Fnv(body) != hash) return -1;
  return static_cast<int64_t>(seq);
}

TEST(AclAreaTest, CreateUpdateReadAndGeneration) {
  auto area = MakeArea();
  ASSERT_NE(area, nullptr);
  std::string t = "x";
  EXPECT_EQ(area->Read(&t), 0u);
  EXPECT_EQ(t, "");
  EXPECT_EQ(area->generation(), 0u);

  uint64_t g = 0;
  std::string error, seen;
  ASSERT_TRUE(area->Update(
      [&](const std::string& cur, std::string* next, std::string*) {
        seen = cur;
        *next = "first";
        return true;
      },
      &error, -1, &g));
  EXPECT_EQ(seen, "");
  EXPECT_EQ(g, 1u);
  EXPECT_EQ(area->generation(), 1u);
  EXPECT_EQ(area->Read(&t), 1u);
  EXPECT_EQ(t, "first");

  // fn sees the published text; each Update moves the generation by one,
  // whichever copy it lands in.
  for (int i = 2; i <= 5; i++) {
    ASSERT_TRUE(area->Update(
        [&](const std::string& cur, std::string* next, std::string*) {
          *next = cur + "+" + std::to_string(i);
          return true;
        },
        &error, -1, &g));
    EXPECT_EQ(g, static_cast<uint64_t>(i));
    EXPECT_EQ(area->generation(), static_cast<uint64_t>(i));
  }
  EXPECT_EQ(ReadText(*area), "first+2+3+4+5");
  // An empty text and binary bytes are texts too.
  ASSERT_TRUE(Put(*area, std::string("a\0b\n", 4)));
  EXPECT_EQ(ReadText(*area), std::string("a\0b\n", 4));
  ASSERT_TRUE(Put(*area, ""));
  EXPECT_EQ(ReadText(*area), "");
  EXPECT_EQ(area->generation(), 7u);
}

TEST(AclAreaTest, TextLargerThanCapacityIsRefusedAndChangesNothing) {
  auto area = MakeArea(4096);
  ASSERT_TRUE(Put(*area, "old"));
  const uint64_t g = area->generation();
  std::string error;
  // Exactly the capacity fits; one byte more does not.
  ASSERT_TRUE(Put(*area, std::string(4096, 'f'), &error)) << error;
  EXPECT_EQ(area->generation(), g + 1);
  EXPECT_FALSE(Put(*area, std::string(4097, 'y'), &error));
  EXPECT_EQ(error, "the users take 4097 bytes, more than the shared ACL area holds (4096)");
  EXPECT_EQ(area->generation(), g + 1);
  EXPECT_EQ(ReadText(*area), std::string(4096, 'f'));
  // And the next Update still works (the lock was let go).
  ASSERT_TRUE(Put(*area, "new", &error));
  EXPECT_EQ(ReadText(*area), "new");
}

TEST(AclAreaTest, FnReturningFalseOrThrowingChangesNothing) {
  auto area = MakeArea();
  ASSERT_TRUE(Put(*area, "kept"));
  const uint64_t g = area->generation();
  std::string error;
  uint64_t out = 777;
  EXPECT_FALSE(area->Update(
      [](const std::string&, std::string* next, std::string* e) {
        *next = "never published";
        *e = "ERR refused by fn";
        return false;
      },
      &error, -1, &out));
  EXPECT_EQ(error, "ERR refused by fn");
  EXPECT_EQ(out, 777u);  // not written
  EXPECT_EQ(area->generation(), g);
  EXPECT_EQ(ReadText(*area), "kept");

  EXPECT_THROW(area->Update(
                   [](const std::string&, std::string* next, std::string*) -> bool {
                     *next = "half";
                     throw std::runtime_error("boom");
                   },
                   &error),
               std::runtime_error);
  EXPECT_EQ(area->generation(), g);
  // The lock was let go: a bounded Update gets it at once.
  ASSERT_TRUE(Put(*area, "after", &error, 100)) << error;
  EXPECT_EQ(ReadText(*area), "after");
}

// A child holds the lock (inside its fn, told when to go on by a pipe): a
// bounded Update fails with the busy error after about its bound, and works
// once the child let go.
TEST(AclAreaTest, BoundedWaitFailsWhileHeldAndWorksAfter) {
  auto area = MakeArea();
  ASSERT_TRUE(Put(*area, "before"));
  int held[2], go[2];
  ASSERT_EQ(pipe(held), 0);
  ASSERT_EQ(pipe(go), 0);
  pid_t pid = ForkChild([&] {
    std::string error;
    bool ok = area->Update(
        [&](const std::string&, std::string* next, std::string*) {
          if (write(held[1], "H", 1) != 1) _exit(3);
          char c;
          if (read(go[0], &c, 1) != 1) _exit(4);
          *next = "by child";
          return true;
        },
        &error);
    return ok ? 0 : 5;
  });
  char c;
  ASSERT_EQ(read(held[0], &c, 1), 1);  // the child is inside its fn, holding the lock
  const uint64_t g = area->generation();
  std::string error;
  auto t0 = Clock::now();
  WithWatchdog("a bounded Update", std::chrono::seconds(5),
               [&] { EXPECT_FALSE(Put(*area, "parent", &error, 200)); });
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(error, "the ACL area's lock stayed busy for 200 ms");
  EXPECT_GE(waited, 190);
  EXPECT_LT(waited, 2000);
  EXPECT_EQ(area->generation(), g);
  // wait_ms 0: a try-lock.
  EXPECT_FALSE(Put(*area, "parent", &error, 0));

  ASSERT_EQ(write(go[1], "G", 1), 1);
  int status = WaitChild(pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(ReadText(*area), "by child");
  EXPECT_EQ(area->generation(), g + 1);
  ASSERT_TRUE(Put(*area, "parent", &error, 200)) << error;
  EXPECT_EQ(ReadText(*area), "parent");
  for (int fd : {held[0], held[1], go[0], go[1]}) close(fd);
}

TEST(AclAreaTest, AdoptSeesTheSameAreaAndRefusesOthers) {
  auto area = MakeArea(4096, 8);
  ASSERT_TRUE(Put(*area, "users v1"));
  ASSERT_TRUE(Put(*area, "users v2"));
  AclLogEntry e;
  e.reason = "auth";
  e.username = "bob";
  area->LogAdd(e);
  std::string error;
  auto adopted = AclArea::Adopt(dup(area->fd()), &error);
  ASSERT_NE(adopted, nullptr) << error;
  std::string t;
  EXPECT_EQ(adopted->Read(&t), 2u);
  EXPECT_EQ(t, "users v2");
  EXPECT_EQ(adopted->log_capacity(), 8u);
  ASSERT_EQ(adopted->LogGet(10).size(), 1u);
  EXPECT_EQ(adopted->LogGet(10)[0].username, "bob");
  // One area: a change through either is seen by the other.
  ASSERT_TRUE(Put(*adopted, "users v3"));
  EXPECT_EQ(area->generation(), 3u);
  EXPECT_EQ(ReadText(*area), "users v3");

  // Not an area: an empty descriptor, and one of an area's size that was
  // never made one.
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(null_fd, 0);
  EXPECT_EQ(AclArea::Adopt(null_fd, &error), nullptr);
  EXPECT_NE(error.find("is too small to be one"), std::string::npos) << error;
  int other = memfd_create("not-an-area", MFD_CLOEXEC);
  ASSERT_GE(other, 0);
  ASSERT_EQ(ftruncate(other, 1 << 16), 0);
  error.clear();
  EXPECT_EQ(AclArea::Adopt(other, &error), nullptr);
  EXPECT_NE(error.find("has another format"), std::string::npos) << error;
  // A truncated area (its recorded size differs) is refused too.
  int cut = memfd_create("cut-area", MFD_CLOEXEC);
  ASSERT_GE(cut, 0);
  std::vector<char> bytes(4096);
  ASSERT_EQ(pread(area->fd(), bytes.data(), bytes.size(), 0), 4096);
  ASSERT_EQ(write(cut, bytes.data(), 4096), 4096);
  error.clear();
  EXPECT_EQ(AclArea::Adopt(cut, &error), nullptr);
  EXPECT_NE(error.find("has another format"), std::string::npos) << error;
}

// A child publishes `next` with `point` armed: it dies there, holding the
// lock. The parent then finds the old text whole, its next lock repairs
// (the generation moves), and Updates work again.
void KillAtPoint(CrashPoint point) {
  SCOPED_TRACE(CrashPointName(point));
  auto area = MakeArea(1 << 16);
  const std::string old_text = MakeText(1, 30000);
  ASSERT_TRUE(Put(*area, old_text));
  // Fill the other copy too, so a half copy over it differs from both.
  ASSERT_TRUE(Put(*area, MakeText(2, 30000)));
  ASSERT_TRUE(Put(*area, old_text));
  const uint64_t g = area->generation();
  pid_t pid = ForkChild([&] {
    ArmCrashPointForTesting(point, 1);
    Put(*area, MakeText(3, 40000));
    return 9;  // not reached
  });
  int status = WaitChild(pid);
  ASSERT_TRUE(KilledBySigkill(status)) << "the crash point was not reached: " << status;
  EXPECT_EQ(area->generation(), g) << "nothing was published";
  WithWatchdog("Read after a holder's death", std::chrono::seconds(5), [&] {
    std::string t;
    const uint64_t read_g = area->Read(&t);
    EXPECT_EQ(t, old_text);
    EXPECT_EQ(CheckText(t), 1);
    // The repair published the same copy again: readers re-read.
    EXPECT_EQ(read_g, g + 1);
    EXPECT_EQ(area->generation(), g + 1);
    std::string error;
    ASSERT_TRUE(Put(*area, MakeText(4, 20000), &error, 1000)) << error;
  });
  EXPECT_EQ(CheckText(ReadText(*area)), 4);
  EXPECT_EQ(area->generation(), g + 2);
}

TEST(AclAreaTest, HolderKilledMidCopyLeavesTheOldTextWhole) {
  KillAtPoint(CrashPoint::kAclCopyMid);
}

TEST(AclAreaTest, HolderKilledBeforePublishLeavesTheOldTextWhole) {
  KillAtPoint(CrashPoint::kAclBeforePublish);
}

// A holder killed inside its fn (the lock held, nothing written): the same.
TEST(AclAreaTest, HolderKilledInsideFnIsRepaired) {
  auto area = MakeArea();
  ASSERT_TRUE(Put(*area, "whole"));
  const uint64_t g = area->generation();
  int held[2];
  ASSERT_EQ(pipe(held), 0);
  pid_t pid = ForkChild([&] {
    std::string error;
    area->Update(
        [&](const std::string&, std::string*, std::string*) {
          if (write(held[1], "H", 1) != 1) _exit(3);
          for (;;) pause();
          return true;
        },
        &error);
    return 9;
  });
  char c;
  ASSERT_EQ(read(held[0], &c, 1), 1);
  kill(pid, SIGKILL);
  ASSERT_TRUE(KilledBySigkill(WaitChild(pid)));
  std::string error;
  // A bounded Update repairs too (the master's path).
  ASSERT_TRUE(Put(*area, "next", &error, 1000)) << error;
  EXPECT_EQ(area->generation(), g + 2);  // the repair's, then the Update's
  EXPECT_EQ(ReadText(*area), "next");
  close(held[0]);
  close(held[1]);
}

// 200 children, each updating in a loop (texts of 1..200 KB, each one
// self-describing), SIGKILLed after a random delay. After every death the
// published text is a whole one, never older than the last seen, and at
// least some of the deaths were inside the lock (the survivor repaired).
TEST(AclAreaTest, RandomKillsNeverTearThePublishedText) {
  const int kills = getenv("ACL_AREA_KILLS") != nullptr ? atoi(getenv("ACL_AREA_KILLS")) : 200;
  auto area = MakeArea(1 << 18);
  ASSERT_TRUE(Put(*area, MakeText(0, 100)));
  std::mt19937_64 rng(20240611);
  int64_t last_seq = 0;
  int repairs = 0;
  for (int i = 0; i < kills; i++) {
    int started[2];
    ASSERT_EQ(pipe(started), 0);
    const uint64_t child_seed = rng();
    pid_t pid = ForkChild([&]() -> int {
      std::mt19937_64 r(child_seed);
      std::string error;
      bool told = false;
      for (;;) {
        area->Update(
            [&](const std::string& cur, std::string* next, std::string*) {
              const int64_t seq = CheckText(cur);
              if (seq < 0) _exit(7);  // a torn text seen by a writer
              *next = MakeText(static_cast<uint64_t>(seq) + 1, 1000 + r() % (200 << 10));
              return true;
            },
            &error);
        if (!told) {
          told = true;
          if (write(started[1], "S", 1) != 1) _exit(3);
        }
      }
    });
    close(started[1]);
    char c;
    ASSERT_EQ(read(started[0], &c, 1), 1) << "child " << i << " did not start";
    close(started[0]);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    kill(pid, SIGKILL);
    const int status = WaitChild(pid);
    ASSERT_TRUE(KilledBySigkill(status)) << "child " << i << " exited " << status;
    const uint64_t g = area->generation();
    std::string t;
    uint64_t read_g = 0;
    WithWatchdog("Read after a kill", std::chrono::seconds(5), [&] { read_g = area->Read(&t); });
    if (read_g != g) repairs++;  // nobody else is alive: only a repair moves it
    const int64_t seq = CheckText(t);
    ASSERT_GE(seq, 0) << "torn text after kill " << i << " (" << t.size() << " bytes)";
    ASSERT_GE(seq, last_seq) << "the published text went back after kill " << i;
    last_seq = seq;
  }
  EXPECT_GE(last_seq, kills) << "each child publishes before it is killed";
  EXPECT_GE(repairs, kills / 20) << "too few kills landed inside the lock to prove anything";
  std::string error;
  ASSERT_TRUE(Put(*area, "done", &error, 1000)) << error;
}

// ---- ACL LOG

AclLogEntry Entry(std::string object, std::string user, int64_t ms, std::string info = "") {
  AclLogEntry e;
  e.reason = "command";
  e.context = "toplevel";
  e.object = std::move(object);
  e.username = std::move(user);
  e.created_ms = ms;
  e.client_info = std::move(info);
  return e;
}

TEST(AclAreaLogTest, SameDenialWithin60SecondsIsGroupedAndBecomesNewest) {
  auto area = MakeArea(4096, 16);
  const int64_t t = 1700000000000;
  area->LogAdd(Entry("get", "alice", t, "id=1"));
  area->LogAdd(Entry("set", "alice", t + 1));
  area->LogAdd(Entry("get", "bob", t + 2));  // another user: its own entry
  auto key = Entry("get", "alice", t + 3);
  key.reason = "key";  // another reason: its own entry
  area->LogAdd(key);
  auto multi = Entry("get", "alice", t + 4);
  multi.context = "multi";  // another context: its own entry
  area->LogAdd(multi);
  area->LogAdd(Entry("get", "alice", t + 59000, "id=2"));  // grouped
  auto log = area->LogGet(100);
  ASSERT_EQ(log.size(), 5u);
  EXPECT_EQ(log[0].object, "get");
  EXPECT_EQ(log[0].username, "alice");
  EXPECT_EQ(log[0].reason, "command");
  EXPECT_EQ(log[0].context, "toplevel");
  EXPECT_EQ(log[0].count, 2u);
  EXPECT_EQ(log[0].created_ms, t + 59000);  // of the last occurrence
  EXPECT_EQ(log[0].client_info, "id=2");    // the last client's
  EXPECT_EQ(log[1].context, "multi");
  EXPECT_EQ(log[2].reason, "key");
  EXPECT_EQ(log[3].username, "bob");
  EXPECT_EQ(log[4].object, "set");
  for (size_t i = 1; i < log.size(); i++) EXPECT_EQ(log[i].count, 1u);
  // Counting goes on from the last occurrence's time...
  area->LogAdd(Entry("get", "alice", t + 59000 + 59000));
  log = area->LogGet(100);
  ASSERT_EQ(log.size(), 5u);
  EXPECT_EQ(log[0].count, 3u);
  // ...and more than 60 s after it starts a new entry.
  area->LogAdd(Entry("get", "alice", t + 59000 + 59000 + 60001));
  log = area->LogGet(100);
  ASSERT_EQ(log.size(), 6u);
  EXPECT_EQ(log[0].count, 1u);
  EXPECT_EQ(log[1].count, 3u);
  // LogGet(count) gives the newest count.
  log = area->LogGet(2);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1].count, 3u);
  // An entry without a time gets the clock's.
  area->LogAdd(Entry("del", "carol", 0));
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  EXPECT_LE(std::abs(area->LogGet(1)[0].created_ms - now), 5000);
}

TEST(AclAreaLogTest, MaxLenTrimsTheOldestAndResetEmpties) {
  auto area = MakeArea(4096, 8);
  EXPECT_EQ(area->log_capacity(), 8u);
  const int64_t t = 1700000000000;
  area->SetLogMaxLen(3);
  for (int i = 0; i < 5; i++) area->LogAdd(Entry("cmd" + std::to_string(i), "u", t + i));
  auto log = area->LogGet(100);
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0].object, "cmd4");
  EXPECT_EQ(log[2].object, "cmd2");
  // Raising it again brings nothing back.
  area->SetLogMaxLen(100);  // beyond the capacity: the capacity
  EXPECT_EQ(area->LogGet(100).size(), 3u);
  for (int i = 5; i < 20; i++) area->LogAdd(Entry("cmd" + std::to_string(i), "u", t + i));
  log = area->LogGet(100);
  ASSERT_EQ(log.size(), 8u);
  EXPECT_EQ(log[0].object, "cmd19");
  EXPECT_EQ(log[7].object, "cmd12");
  // Lowering it hides the older ones at once (and the next LogAdd drops them).
  area->SetLogMaxLen(2);
  log = area->LogGet(100);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1].object, "cmd18");
  area->LogAdd(Entry("cmd20", "u", t + 20));
  area->SetLogMaxLen(8);
  log = area->LogGet(100);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].object, "cmd20");
  EXPECT_EQ(log[1].object, "cmd19");
  // max len 0 keeps nothing.
  area->SetLogMaxLen(0);
  area->LogAdd(Entry("cmd21", "u", t + 21));
  EXPECT_TRUE(area->LogGet(100).empty());
  area->SetLogMaxLen(8);
  EXPECT_TRUE(area->LogGet(100).empty());

  for (int i = 0; i < 4; i++) area->LogAdd(Entry("x" + std::to_string(i), "u", t + 100 + i));
  EXPECT_EQ(area->LogGet(100).size(), 4u);
  area->LogReset();
  EXPECT_TRUE(area->LogGet(100).empty());
  // After a reset the same denial is a new entry, not grouped.
  area->LogAdd(Entry("x3", "u", t + 104));
  ASSERT_EQ(area->LogGet(100).size(), 1u);
  EXPECT_EQ(area->LogGet(100)[0].count, 1u);
}

TEST(AclAreaLogTest, LongFieldsAreCut) {
  auto area = MakeArea(4096, 8);
  const int64_t t = 1700000000000;
  AclLogEntry e = Entry(std::string(300, 'o'), std::string(200, 'u'), t, std::string(600, 'i'));
  e.reason = std::string(40, 'r');
  e.context = std::string(20, 'c');
  area->LogAdd(e);
  auto log = area->LogGet(10);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].object, std::string(255, 'o'));
  EXPECT_EQ(log[0].username, std::string(127, 'u'));
  EXPECT_EQ(log[0].client_info, std::string(511, 'i'));
  EXPECT_EQ(log[0].reason, std::string(15, 'r'));
  EXPECT_EQ(log[0].context, std::string(15, 'c'));
  // The same long denial groups with its cut entry (object and user
  // compared as stored), for reasons that fit.
  AclLogEntry a = Entry(std::string(300, 'o'), std::string(200, 'u'), t + 1);
  area->LogAdd(a);
  area->LogAdd(a);
  log = area->LogGet(10);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].count, 2u);
  EXPECT_EQ(log[0].object, std::string(255, 'o'));
}

// An entry whose every field says which i it is: a torn one mixes two.
AclLogEntry Numbered(int i, int64_t t) {
  const std::string n = std::to_string(i);
  AclLogEntry e = Entry("obj-" + n, "user-" + n, t + i, "info-" + n + std::string(300, '.'));
  return e;
}
bool Whole(const AclLogEntry& e) {
  if (e.object.rfind("obj-", 0) != 0) return false;
  const std::string n = e.object.substr(4);
  return e.username == "user-" + n && e.client_info == "info-" + n + std::string(300, '.') &&
         e.reason == "command" && e.context == "toplevel" && e.count == 1;
}

TEST(AclAreaLogTest, WriterKilledMidLogAddLeavesNoTornEntry) {
  const int64_t t = 1700000000000;
  // A full log: the record reused is the oldest visible one.
  for (bool full : {false, true}) {
    SCOPED_TRACE(full ? "full log" : "free records");
    auto area = MakeArea(4096, 8);
    const int n = full ? 8 : 5;
    for (int i = 0; i < n; i++) area->LogAdd(Numbered(i, t));
    pid_t pid = ForkChild([&] {
      ArmCrashPointForTesting(CrashPoint::kAclLogAdd, 1);
      area->LogAdd(Numbered(100, t));
      return 9;
    });
    ASSERT_TRUE(KilledBySigkill(WaitChild(pid)));
    std::vector<AclLogEntry> log;
    WithWatchdog("LogGet after a death", std::chrono::seconds(5), [&] { log = area->LogGet(100); });
    ASSERT_EQ(log.size(), static_cast<size_t>(full ? n - 1 : n));  // full: the oldest is lost
    for (const AclLogEntry& e : log) EXPECT_TRUE(Whole(e)) << e.object << " / " << e.username;
    EXPECT_EQ(log[0].object, "obj-" + std::to_string(n - 1));
    area->LogAdd(Numbered(200, t));
    EXPECT_EQ(area->LogGet(1)[0].object, "obj-200");
  }
}

// A writer killed at random instants while logging distinct entries into
// a small, always full log.
TEST(AclAreaLogTest, RandomKillsOfALoggerLeaveEveryEntryWhole) {
  const int64_t t = 1700000000000;
  auto area = MakeArea(4096, 4);
  std::mt19937_64 rng(77);
  int base = 0;
  for (int k = 0; k < 60; k++) {
    int started[2];
    ASSERT_EQ(pipe(started), 0);
    pid_t pid = ForkChild([&]() -> int {
      for (int i = 0;; i++) {
        area->LogAdd(Numbered(base + i, t));
        if (i == 0 && write(started[1], "S", 1) != 1) _exit(3);
      }
    });
    close(started[1]);
    char c;
    ASSERT_EQ(read(started[0], &c, 1), 1);
    close(started[0]);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 1000));
    kill(pid, SIGKILL);
    ASSERT_TRUE(KilledBySigkill(WaitChild(pid)));
    std::vector<AclLogEntry> log;
    WithWatchdog("LogGet after a kill", std::chrono::seconds(5), [&] { log = area->LogGet(100); });
    ASSERT_GE(log.size(), 3u);
    for (const AclLogEntry& e : log) ASSERT_TRUE(Whole(e)) << e.object << " / " << e.username;
    base += 10000000;
  }
}

}  // namespace
}  // namespace redhub::shm
