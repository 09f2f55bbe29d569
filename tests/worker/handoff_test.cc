// The connection handoff: its wire format (every field round-trips, an
// unknown tag is skipped, a truncated message is refused, an older
// binary's payload still reads) and a real Retire/AdoptFrom between two
// event loops over MakeChannel, moving a connection with a partial request,
// its name, protocol and session flags.
#include "handoff.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "channel.h"
#include "event_loop.h"
#include "loop_harness.h"

namespace redhub::worker {
namespace {

uint16_t Tag(HandoffField f) { return static_cast<uint16_t>(f); }

HandoffState Sample() {
  HandoffState s;
  s.id = 0x1234567890abcdefull;
  s.protocol = 3;
  s.name = "worker-pool";
  s.age_seconds = 4567;
  s.commands = 89;
  s.unparsed = "*2\r\n$4\r\nECHO\r\n$2\r\nh";
  s.session_flags = 0x80000001u;
  return s;
}

void ExpectSame(const HandoffState& a, const HandoffState& b) {
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.protocol, b.protocol);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.age_seconds, b.age_seconds);
  EXPECT_EQ(a.commands, b.commands);
  EXPECT_EQ(a.unparsed, b.unparsed);
  EXPECT_EQ(a.session_flags, b.session_flags);
}

// The tags in a payload, in order.
std::vector<uint16_t> Tags(const std::string& payload) {
  std::vector<uint16_t> tags;
  FieldReader r(payload);
  uint16_t tag;
  std::string_view v;
  while (r.Next(&tag, &v)) tags.push_back(tag);
  return tags;
}

TEST(HandoffFormatTest, EveryFieldRoundTrips) {
  std::string payload = EncodeHandoff(Sample());
  HandoffState got;
  ASSERT_TRUE(DecodeHandoff(payload, &got));
  ExpectSame(got, Sample());
  // The reserved selected-db tag is not written.
  for (uint16_t tag : Tags(payload)) EXPECT_NE(tag, Tag(HandoffField::kSelectedDb));
}

TEST(HandoffFormatTest, UnknownTagsAreSkipped) {
  FieldWriter before;
  before.Put(999, "from a newer binary");
  FieldWriter after;
  after.PutU64(1000, 42);
  std::string payload = before.data() + EncodeHandoff(Sample()) + after.data();
  HandoffState got;
  ASSERT_TRUE(DecodeHandoff(payload, &got));
  ExpectSame(got, Sample());
}

TEST(HandoffFormatTest, TruncatedMessageIsRefused) {
  std::string payload = EncodeHandoff(Sample());
  // Every cut inside a field; a cut between fields is an older binary's
  // shorter message, which is fine.
  std::vector<size_t> boundaries;
  size_t at = 0;
  FieldReader r(payload);
  uint16_t tag;
  std::string_view v;
  while (r.Next(&tag, &v)) boundaries.push_back(at += 6 + v.size());
  for (size_t cut = 1; cut < payload.size(); cut++) {
    bool boundary = std::find(boundaries.begin(), boundaries.end(), cut) != boundaries.end();
    HandoffState got;
    EXPECT_EQ(DecodeHandoff(std::string_view(payload).substr(0, cut), &got), boundary)
        << "cut at " << cut;
  }
}

TEST(HandoffFormatTest, MissingVersionIsRefused) {
  FieldWriter f;
  f.PutU64(Tag(HandoffField::kId), 7);
  HandoffState got;
  EXPECT_FALSE(DecodeHandoff(f.data(), &got));
  EXPECT_EQ(got.id, 7u);  // still read, so the refusal can name it
}

TEST(HandoffFormatTest, ReadsWhatTheNumberedFormatWrote) {
  // Byte for byte what binaries before the named enum sent (tags 0-8 by
  // hand, with the selected db as 0 in tag 6).
  FieldWriter f;
  f.PutU64(0, 1);
  f.PutU64(1, 77);
  f.PutU64(2, 3);
  f.Put(3, "old");
  f.PutU64(4, 12);
  f.PutU64(5, 34);
  f.PutU64(6, 0);
  f.Put(7, "*1\r\n$4\r\nPI");
  f.PutU64(8, 1);
  HandoffState got;
  ASSERT_TRUE(DecodeHandoff(f.data(), &got));
  EXPECT_EQ(got.id, 77u);
  EXPECT_EQ(got.protocol, 3);
  EXPECT_EQ(got.name, "old");
  EXPECT_EQ(got.age_seconds, 12u);
  EXPECT_EQ(got.commands, 34u);
  EXPECT_EQ(got.unparsed, "*1\r\n$4\r\nPI");
  EXPECT_EQ(got.session_flags, 1u);
  // And the new encoding is the old one minus tag 6: an old successor
  // reads it the same.
  HandoffState same = got;
  same.name = "old";
  std::vector<uint16_t> mine = Tags(EncodeHandoff(same));
  std::sort(mine.begin(), mine.end());
  EXPECT_EQ(mine, (std::vector<uint16_t>{0, 1, 2, 3, 4, 5, 7, 8}));
}

TEST(HandoffFormatTest, AnswerIsTheIdInEightBytes) {
  std::string a = EncodeAnswer(0x0102030405060708ull);
  ASSERT_EQ(a.size(), 8u);
  EXPECT_EQ(a[0], 0x08);
  EXPECT_EQ(DecodeAnswer(a), 0x0102030405060708ull);
}

// Handlers of one loop: SETNAME, PROTO3, FLAGS and ECHO change or show the
// connection; WHO answers "id name protocol flags" as the loop sees them.
Handlers SessionHandlers(std::vector<std::string>* ran) {
  Handlers h;
  h.on_command = [ran](Conn& c, const resp::Command& cmd, resp::Writer& w) {
    std::string name(cmd.args[0]);
    ran->push_back(name);
    if (name == "SETNAME") {
      c.set_name(std::string(cmd.args[1]));
    } else if (name == "PROTO3") {
      c.set_protocol(3);
    } else if (name == "FLAGS") {
      c.set_session_flags(static_cast<uint32_t>(std::stoul(std::string(cmd.args[1]))));
    } else if (name == "ECHO") {
      w.Bulk(cmd.args[1]);
      return Action::kNone;
    } else if (name == "WHO") {
      w.Bulk(std::to_string(c.id()) + " " + c.name() + " " + std::to_string(c.protocol()) + " " +
             std::to_string(c.session_flags()));
      return Action::kNone;
    }
    w.OK();
    return Action::kNone;
  };
  return h;
}

TEST(HandoffTest, RetireMovesAConnectionWithItsPartialRequestAndSession) {
  std::vector<std::string> old_ran, new_ran;
  TestLoop old_loop(Options{}, SessionHandlers(&old_ran));
  TestLoop new_loop(Options{}, SessionHandlers(&new_ran), /*listen=*/false);
  old_loop.loop().set_id_base(1000);
  Client c(old_loop.port());
  c.Send(Req({"SETNAME", "pool-1"}) + Req({"PROTO3"}) + Req({"FLAGS", "5"}));
  ASSERT_TRUE(PumpUntil({&old_loop}, [&] { return c.Receive() || c.received.size() >= 15; }));
  ASSERT_EQ(c.received, "+OK\r\n+OK\r\n+OK\r\n");
  c.received.clear();
  const std::string echo = Req({"ECHO", "hi"});
  c.Send(echo.substr(0, echo.size() - 3));  // "...$2\r\nh": a partial request
  const uint64_t sent = old_loop.loop().stats().net_input_bytes + echo.size() - 3;
  ASSERT_TRUE(
      PumpUntil({&old_loop}, [&] { return old_loop.loop().stats().net_input_bytes == sent; }));

  int ch[2];
  ASSERT_EQ(MakeChannel(ch), 0);
  new_loop.loop().AdoptFrom(ch[1]);
  old_loop.loop().Retire(ch[0]);
  ASSERT_TRUE(PumpUntil({&old_loop, &new_loop}, [&] {
    return new_loop.loop().stats().connections_adopted == 1 &&
           old_loop.loop().stats().connected_clients == 0;
  }));
  EXPECT_EQ(new_loop.loop().stats().connected_clients, 1u);

  // The rest of the request goes to the successor, which runs it whole.
  c.Send(echo.substr(echo.size() - 3) + Req({"WHO"}));
  const std::string want = "$2\r\nhi\r\n$15\r\n1001 pool-1 3 5\r\n";
  ASSERT_TRUE(PumpUntil({&old_loop, &new_loop},
                        [&] { return c.Receive() || c.received.size() >= want.size(); }));
  EXPECT_EQ(c.received, want);
  EXPECT_FALSE(c.eof);
  EXPECT_EQ(new_ran, (std::vector<std::string>{"ECHO", "WHO"}));
  EXPECT_EQ(old_ran, (std::vector<std::string>{"SETNAME", "PROTO3", "FLAGS"}));
}

// A stop (SIGTERM to the retiring worker) that comes while a connection is
// offered and not yet answered leaves that connection alone: the successor
// may already serve its socket, so closing it here (a lingering close
// shuts the sending side down and discards what it reads) would end the
// client's connection under the successor and lose its request.
TEST(HandoffTest, AStopWhileAnOfferIsOutLeavesTheSocketToTheSuccessor) {
  std::vector<std::string> old_ran, new_ran;
  TestLoop old_loop(Options{}, SessionHandlers(&old_ran));
  TestLoop new_loop(Options{}, SessionHandlers(&new_ran), /*listen=*/false);
  Client c(old_loop.port());
  c.Send(Req({"ECHO", "before"}));
  ASSERT_TRUE(PumpUntil({&old_loop}, [&] { return c.Receive() || c.received.size() >= 12; }));
  ASSERT_EQ(c.received, "$6\r\nbefore\r\n");
  c.received.clear();

  int ch[2];
  ASSERT_EQ(MakeChannel(ch), 0);
  new_loop.loop().AdoptFrom(ch[1]);
  old_loop.loop().Retire(ch[0]);  // offers the idle connection at once
  // The next request reaches the socket while the offer is out: unread, it
  // would make a close here linger (shut the sending side down, then read
  // and discard), taking the request from the successor.
  c.Send(Req({"ECHO", "after"}));
  old_loop.loop().Stop();
  // The old loop alone: it takes the stop and runs its close queue before
  // the successor has read the offer.
  old_loop.StepNoWait();
  old_loop.StepNoWait();
  old_loop.StepNoWait();
  ASSERT_TRUE(PumpUntil({&old_loop, &new_loop},
                        [&] { return new_loop.loop().stats().connections_adopted == 1; }));

  ASSERT_TRUE(
      PumpUntil({&old_loop, &new_loop}, [&] { return c.Receive() || c.received.size() >= 11; }));
  EXPECT_EQ(c.received, "$5\r\nafter\r\n");
  EXPECT_FALSE(c.eof);
  EXPECT_EQ(new_ran, (std::vector<std::string>{"ECHO"}));
}

TEST(HandoffTest, SuccessorRefusesATruncatedOffer) {
  std::vector<std::string> ran;
  TestLoop new_loop(Options{}, SessionHandlers(&ran), /*listen=*/false);
  int ch[2];
  ASSERT_EQ(MakeChannel(ch), 0);
  new_loop.loop().AdoptFrom(ch[1]);
  HandoffState s = Sample();
  s.id = 42;
  std::string payload = EncodeHandoff(s);
  payload.pop_back();
  int sock[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sock), 0);
  ASSERT_EQ(SendMessage(ch[0], MessageType::kConnection, payload, sock[0]), 0);
  Message m;
  ASSERT_TRUE(PumpUntil({&new_loop}, [&] { return ReceiveMessage(ch[0], &m) == 0; }));
  EXPECT_EQ(m.type, MessageType::kRefused);
  EXPECT_EQ(DecodeAnswer(m.payload), 42u);
  EXPECT_EQ(new_loop.loop().stats().connected_clients, 0u);
  close(ch[0]);
  close(sock[0]);
  close(sock[1]);
}

}  // namespace
}  // namespace redhub::worker
