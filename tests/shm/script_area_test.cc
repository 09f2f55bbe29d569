// The shared script area (shm/script_area.h): records appended are read
// back in order by every reader, from where it left off; a refused check
// appends nothing; a full half is compacted into the other with a new epoch
// holding only the live records (the newest script of each sha since the
// last script flush, the newest library of each name not deleted), and a
// reader of the old epoch gets the whole new state; adoption by
// descriptor; and crash safety: a writer SIGKILLed at the named points
// inside Append (a record half written past the end; records or a
// compacted half written, the end not yet published) leaves the log as
// before, and the next writer takes the lock and appends.
#include "script_area.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "crash_point.h"
#include "shm_test_util.h"

namespace redhub::shm {
namespace {

using testing::ForkChild;
using testing::KilledBySigkill;
using testing::WaitChild;
using testing::WithWatchdog;

std::unique_ptr<ScriptArea> MakeArea(size_t half_bytes = 1 << 20) {
  std::string error;
  ScriptAreaOptions o;
  o.half_bytes = half_bytes;
  auto area = ScriptArea::Create(o, &error);
  EXPECT_NE(area, nullptr) << error;
  return area;
}

ScriptRecord Script(const std::string& sha, const std::string& body) {
  return {ScriptRecord::kScript, sha, body};
}

// A reader as a worker is one: epoch and offset kept between reads.
struct Reader {
  uint64_t epoch = 0, offset = 0;
  std::vector<ScriptRecord> Next(const ScriptArea& area, bool* reset = nullptr) {
    std::vector<ScriptRecord> out;
    uint64_t e = 0;
    offset = area.Read(epoch, offset, &out, &e);
    if (reset != nullptr) *reset = e != epoch;
    epoch = e;
    return out;
  }
};

std::vector<std::string> Keys(const std::vector<ScriptRecord>& rs) {
  std::vector<std::string> k;
  for (const ScriptRecord& r : rs) k.push_back(std::to_string(r.kind) + ":" + r.key);
  return k;
}

TEST(ScriptAreaTest, ReadersSeeAppendsInOrderFromWhereTheyLeftOff) {
  auto area = MakeArea();
  Reader a, b;
  EXPECT_TRUE(a.Next(*area).empty());
  std::string error;
  ASSERT_TRUE(area->Append({Script("s1", "return 1"), Script("s2", "return 2")}, &error)) << error;
  const std::vector<ScriptRecord> first = a.Next(*area);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].key, "s1");
  EXPECT_EQ(first[0].bytes, "return 1");
  EXPECT_EQ(first[1].bytes, "return 2");
  ASSERT_TRUE(area->Append({{ScriptRecord::kLibrary, "lib", std::string(1000, 'x')}}, &error));
  const std::vector<ScriptRecord> second = a.Next(*area);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].kind, ScriptRecord::kLibrary);
  EXPECT_EQ(second[0].bytes, std::string(1000, 'x'));
  EXPECT_TRUE(a.Next(*area).empty());
  // A reader that starts late gets everything.
  EXPECT_EQ(Keys(b.Next(*area)), (std::vector<std::string>{"1:s1", "1:s2", "3:lib"}));
}

TEST(ScriptAreaTest, ARefusedCheckAppendsNothingAndACheckMayAddRecords) {
  auto area = MakeArea();
  std::string error;
  const uint64_t v = area->version();
  EXPECT_FALSE(
      area->Append({Script("s", "x")}, &error, [](std::vector<ScriptRecord>*, std::string* e) {
        *e = "ERR Library 'l' already exists";
        return false;
      }));
  EXPECT_EQ(error, "ERR Library 'l' already exists");
  EXPECT_EQ(area->version(), v);
  ASSERT_TRUE(area->Append({}, &error, [](std::vector<ScriptRecord>* rs, std::string*) {
    rs->push_back({ScriptRecord::kLibrary, "l", "code"});
    return true;
  }));
  Reader r;
  EXPECT_EQ(Keys(r.Next(*area)), (std::vector<std::string>{"3:l"}));
}

TEST(ScriptAreaTest, AFullHalfIsCompactedToTheLiveRecordsUnderANewEpoch) {
  auto area = MakeArea(4096);  // a page per half
  Reader r;
  std::string error;
  ASSERT_TRUE(area->Append({Script("old", std::string(500, 'o'))}, &error));
  ASSERT_TRUE(area->Append({{ScriptRecord::kScriptFlush, "", ""}}, &error));
  ASSERT_TRUE(area->Append({{ScriptRecord::kLibrary, "gone", std::string(500, 'g')}}, &error));
  ASSERT_TRUE(area->Append({{ScriptRecord::kLibraryDelete, "gone", ""}}, &error));
  ASSERT_TRUE(area->Append({{ScriptRecord::kLibrary, "lib", "v1"}}, &error));
  ASSERT_TRUE(area->Append({Script("keep", "k")}, &error));
  ASSERT_TRUE(area->Append({Script("keep", "k")}, &error));  // two workers raced
  ASSERT_TRUE(area->Append({{ScriptRecord::kLibrary, "lib", "v2"}}, &error));
  EXPECT_EQ(r.Next(*area).size(), 8u);
  EXPECT_EQ(area->compactions(), 0u);
  // This one does not fit: the half is compacted.
  ASSERT_TRUE(area->Append({Script("big", std::string(3000, 'b'))}, &error)) << error;
  EXPECT_EQ(area->compactions(), 1u);
  bool reset = false;
  const std::vector<ScriptRecord> now = r.Next(*area, &reset);
  EXPECT_TRUE(reset) << "a reader of the old epoch must drop what it had";
  EXPECT_EQ(Keys(now), (std::vector<std::string>{"1:keep", "3:lib", "1:big"}));
  EXPECT_EQ(now[1].bytes, "v2");
  // More than a half of live records: refused, nothing changes.
  const uint64_t v = area->version();
  EXPECT_FALSE(area->Append({Script("huge", std::string(5000, 'h'))}, &error));
  EXPECT_NE(error.find("full"), std::string::npos) << error;
  EXPECT_EQ(area->version(), v);
}

TEST(ScriptAreaTest, AnAdoptedAreaHasTheSameRecords) {
  auto area = MakeArea();
  std::string error;
  ASSERT_TRUE(area->Append({Script("s", "return 1")}, &error));
  const int fd = dup(area->fd());
  ASSERT_GE(fd, 0);
  auto adopted = ScriptArea::Adopt(fd, &error);
  ASSERT_NE(adopted, nullptr) << error;
  Reader r;
  EXPECT_EQ(Keys(r.Next(*adopted)), (std::vector<std::string>{"1:s"}));
  ASSERT_TRUE(adopted->Append({Script("t", "return 2")}, &error));
  EXPECT_EQ(Keys(r.Next(*area)), (std::vector<std::string>{"1:t"}));
}

void KillAtPoint(CrashPoint point, bool compact) {
  SCOPED_TRACE(CrashPointName(point));
  auto area = MakeArea(16384);
  std::string error;
  ASSERT_TRUE(area->Append({Script("a", std::string(3000, 'a'))}, &error));
  ASSERT_TRUE(area->Append({{ScriptRecord::kScriptFlush, "", ""}}, &error));
  ASSERT_TRUE(area->Append({Script("b", std::string(3000, 'b'))}, &error));
  const uint64_t v = area->version();
  pid_t pid = ForkChild([&] {
    ArmCrashPointForTesting(point, 1);
    std::string e;
    // 3000 more bytes fit; 11000 do not, and compact (to b and c).
    area->Append({Script("c", std::string(compact ? 11000 : 3000, 'c'))}, &e);
    return 9;  // not reached
  });
  ASSERT_TRUE(KilledBySigkill(WaitChild(pid))) << "the crash point was not reached";
  EXPECT_EQ(area->version(), v) << "nothing was published";
  Reader r;
  EXPECT_EQ(Keys(r.Next(*area)), (std::vector<std::string>{"1:a", "2:", "1:b"}));
  WithWatchdog("Append after a writer's death", std::chrono::seconds(5),
               [&] { ASSERT_TRUE(area->Append({Script("d", "return 4")}, &error)) << error; });
  const std::vector<ScriptRecord> next = r.Next(*area);
  ASSERT_EQ(Keys(next), (std::vector<std::string>{"1:d"}));
  EXPECT_EQ(next[0].bytes, "return 4");
}

TEST(ScriptAreaTest, WriterKilledMidRecordLeavesTheLogAsBefore) {
  KillAtPoint(CrashPoint::kScriptAppend, false);
}
TEST(ScriptAreaTest, WriterKilledBeforePublishLeavesTheLogAsBefore) {
  KillAtPoint(CrashPoint::kScriptBeforePublish, false);
}
TEST(ScriptAreaTest, WriterKilledMidCompactionLeavesTheLogAsBefore) {
  KillAtPoint(CrashPoint::kScriptBeforePublish, true);
}

}  // namespace
}  // namespace redhub::shm
