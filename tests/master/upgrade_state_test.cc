// The upgrade state (master/upgrade_state.h): format 2 round-trips, skips
// what it does not know, refuses what is cut short or malformed; format 1,
// the previous binaries' grammar, is read strictly.
#include "upgrade_state.h"

#include <gtest/gtest.h>

#include "channel.h"

namespace redhub::master {
namespace {

UpgradeState Sample() {
  UpgradeState st;
  st.seq = 42;
  st.port = 6379;
  st.shared_fds = {12};
  st.slots = {{0, {5, 6}, {}}, {1, {7, 8}, {}}};
  st.workers = {{0, 1000, 9, 41, false}, {1, 1001, 10, 42, false}, {0, 999, 11, 40, true}};
  return st;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) out += {kDigits[c >> 4], kDigits[c & 15]};
  return out;
}

uint16_t Tag(auto f) { return static_cast<uint16_t>(f); }

// The users' and the scripts' areas move to the new master by descriptor;
// a state without them (an older binary's) decodes to -1 for both.
TEST(UpgradeStateTest, RoundTripsTheSharedAreasDescriptors) {
  UpgradeState in = Sample(), out, older;
  in.acl_fd = 15;
  in.script_fd = 16;
  std::string error;
  ASSERT_TRUE(DecodeUpgradeState(EncodeUpgradeState(in), &out, &error)) << error;
  EXPECT_EQ(out.acl_fd, 15);
  EXPECT_EQ(out.script_fd, 16);
  ASSERT_TRUE(DecodeUpgradeState(EncodeUpgradeState(Sample()), &older, &error)) << error;
  EXPECT_EQ(older.acl_fd, -1);
  EXPECT_EQ(older.script_fd, -1);
}

TEST(UpgradeStateTest, RoundTrips) {
  UpgradeState in = Sample(), out;
  std::string error;
  std::string text = EncodeUpgradeState(in);
  EXPECT_TRUE(text.starts_with("2:")) << text;
  ASSERT_TRUE(DecodeUpgradeState(text, &out, &error)) << error;
  EXPECT_EQ(out, in);
}

// tls-port's sockets travel in format 2 only (no binary that reads only
// format 1 has TLS).
TEST(UpgradeStateTest, RoundTripsTlsListeners) {
  UpgradeState in = Sample(), out;
  in.slots[0].tls_fds = {13, 14};
  in.slots[1].tls_fds = {15};
  std::string error;
  ASSERT_TRUE(DecodeUpgradeState(EncodeUpgradeState(in), &out, &error)) << error;
  EXPECT_EQ(out, in);
  ASSERT_TRUE(DecodeUpgradeState(EncodeUpgradeStateFormat1(in), &out, &error)) << error;
  EXPECT_TRUE(out.slots[0].tls_fds.empty());
  EXPECT_EQ(out.slots[0].fds, in.slots[0].fds);
}

TEST(UpgradeStateTest, SkipsTagsItDoesNotKnow) {
  FieldWriter f;
  f.PutU64(Tag(StateField::kSeq), 3);
  f.Put(77, "a later binary's field");
  f.PutU64(Tag(StateField::kPort), 7000);
  FieldWriter slot;
  slot.PutU64(Tag(SlotField::kIndex), 0);
  slot.Put(9, "x");
  slot.PutU64(Tag(SlotField::kFd), 4);
  f.Put(Tag(StateField::kSlot), slot.data());
  FieldWriter worker;
  worker.PutU64(Tag(WorkerField::kSlot), 0);
  worker.PutU64(Tag(WorkerField::kPid), 321);
  worker.Put(200, "y");
  worker.PutU64(Tag(WorkerField::kControlFd), 8);
  worker.PutU64(Tag(WorkerField::kSeq), 3);
  f.Put(Tag(StateField::kWorker), worker.data());
  f.PutU64(Tag(StateField::kEnd), 0);
  UpgradeState st;
  std::string error;
  ASSERT_TRUE(DecodeUpgradeState("2:" + Hex(f.data()), &st, &error)) << error;
  UpgradeState want;
  want.seq = 3;
  want.port = 7000;
  want.slots = {{0, {4}, {}}};
  want.workers = {{0, 321, 8, 3, false}};
  EXPECT_EQ(st, want);
}

TEST(UpgradeStateTest, RefusesItCutAnywhere) {
  std::string text = EncodeUpgradeState(Sample());
  // Every cut, also between two fields (the end field catches those).
  for (size_t len = 0; len < text.size(); len++) {
    UpgradeState st;
    std::string error;
    EXPECT_FALSE(DecodeUpgradeState(text.substr(0, len), &st, &error)) << "cut at " << len;
    EXPECT_FALSE(error.empty());
  }
}

TEST(UpgradeStateTest, RefusesMalformedValues) {
  auto refused = [](std::string_view text) {
    UpgradeState st;
    std::string error;
    bool ok = DecodeUpgradeState(text, &st, &error);
    return !ok && !error.empty();
  };
  EXPECT_TRUE(refused("2:zz"));
  EXPECT_TRUE(refused(""));
  EXPECT_TRUE(refused("3:00"));  // an unknown format
  // A port beyond 16 bits, a number of the wrong width, a worker without pid.
  FieldWriter big;
  big.PutU64(Tag(StateField::kSeq), 1);
  big.PutU64(Tag(StateField::kPort), 70000);
  big.PutU64(Tag(StateField::kEnd), 0);
  EXPECT_TRUE(refused("2:" + Hex(big.data())));
  FieldWriter narrow;
  narrow.PutU64(Tag(StateField::kSeq), 1);
  narrow.Put(Tag(StateField::kPort), "\x01\x02");
  narrow.PutU64(Tag(StateField::kEnd), 0);
  EXPECT_TRUE(refused("2:" + Hex(narrow.data())));
  FieldWriter nopid;
  nopid.PutU64(Tag(StateField::kSeq), 1);
  nopid.PutU64(Tag(StateField::kPort), 1);
  FieldWriter w;
  w.PutU64(Tag(WorkerField::kSlot), 0);
  w.PutU64(Tag(WorkerField::kControlFd), 3);
  w.PutU64(Tag(WorkerField::kSeq), 1);
  nopid.Put(Tag(StateField::kWorker), w.data());
  nopid.PutU64(Tag(StateField::kEnd), 0);
  EXPECT_TRUE(refused("2:" + Hex(nopid.data())));
}

// What the previous binaries wrote (Supervisor::Upgrade before format 2).
TEST(UpgradeStateTest, ReadsTheFormerGrammar) {
  UpgradeState st;
  std::string error;
  ASSERT_TRUE(DecodeUpgradeState(
      "1;42;6379;12,;0:5,6,|1:7,8,|;0:1000:9:41|1:1001:10:42|0:999:11:40:r|", &st, &error))
      << error;
  EXPECT_EQ(st, Sample());
  // A unix-socket-only daemon: slots without their own sockets.
  ASSERT_TRUE(DecodeUpgradeState("1;3;0;4,;0:|;0:50:6:3|", &st, &error)) << error;
  EXPECT_EQ(st.shared_fds, std::vector<int>{4});
  ASSERT_EQ(st.slots.size(), 1u);
  EXPECT_TRUE(st.slots[0].fds.empty());
}

// Written too, for SIGUSR2 to a previous binary (a rollback): byte for byte
// what those binaries wrote, so their reader (atoi over ';', ':', ',', '|')
// takes it; and this binary reads it back to the same state.
TEST(UpgradeStateTest, WritesTheFormerGrammarForAPreviousBinary) {
  const std::string text = EncodeUpgradeStateFormat1(Sample());
  EXPECT_EQ(text, "1;42;6379;12,;0:5,6,|1:7,8,|;0:1000:9:41|1:1001:10:42|0:999:11:40:r|");
  UpgradeState st;
  std::string error;
  ASSERT_TRUE(DecodeUpgradeState(text, &st, &error)) << error;
  EXPECT_EQ(st, Sample());
}

TEST(UpgradeStateTest, RefusesTheFormerGrammarWhereAtoiWouldHaveGuessed) {
  for (const char* text : {
           "1;42;6379;12,;0:5,|;0:abc:9:41|",    // a pid atoi read as 0
           "1;42;6379x;12,;0:5,|;0:1000:9:41|",  // a port with junk
           "1;42;99999;;0:5,|;0:1000:9:41|",     // a port beyond 16 bits
           "1;42;6379;;0:5,|;0:1000:9:41:q|",    // an unknown worker flag
           "1;42;6379;;0:5,|",                   // parts missing
           "1;42;6379;;0:5,|;0:1000:9|",         // a worker cut short
       }) {
    UpgradeState st;
    std::string error;
    EXPECT_FALSE(DecodeUpgradeState(text, &st, &error)) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
}

}  // namespace
}  // namespace redhub::master
