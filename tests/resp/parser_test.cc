// Tests of redhub::resp::Parser and SplitArgs against the contract in
// <redhub/resp.h> and against Redis 7.0: processMultibulkBuffer and
// processInlineBuffer (src/networking.c), sdssplitargs (src/sds.c) and the
// malformed requests of tests/unit/protocol.tcl.
#include <gtest/gtest.h>
#include <redhub/resp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace redhub::resp {
namespace {

using namespace std::string_literals;

// ---------------------------------------------------------------- helpers

// C-style escaping, so that failure messages show CR, LF and binary bytes.
std::string Escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '\r':
        out += "\\r";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kMultibulk:
      return "multibulk";
    case Kind::kInline:
      return "inline";
    case Kind::kTile38:
      return "tile38";
  }
  return "?";
}

const char* StatusName(ParseStatus s) {
  switch (s) {
    case ParseStatus::kComplete:
      return "kComplete";
    case ParseStatus::kNeedMore:
      return "kNeedMore";
    case ParseStatus::kError:
      return "kError";
  }
  return "?";
}

// A command copied out of the parser's views, so that it outlives them.
struct Cmd {
  std::vector<std::string> args;
  Kind kind = Kind::kMultibulk;
  std::string raw;
  bool operator==(const Cmd&) const = default;
};

void PrintTo(const Cmd& c, std::ostream* os) {
  *os << KindName(c.kind) << "{";
  for (size_t i = 0; i < c.args.size(); i++) *os << (i ? ", \"" : "\"") << Escape(c.args[i]) << '"';
  *os << "} raw=\"" << Escape(c.raw) << '"';
}

Cmd Copy(const Command& c) {
  return Cmd{std::vector<std::string>(c.args.begin(), c.args.end()), c.kind, std::string(c.raw)};
}

// before + n + after, built with append: g++ 12 gives a false -Wrestrict
// warning for "literal" + std::to_string(n).
std::string Cat(std::string_view before, size_t n, std::string_view after) {
  std::string out(before);
  out.append(std::to_string(n)).append(after);
  return out;
}

std::string Multibulk(const std::vector<std::string>& args) {
  std::string out = Cat("*", args.size(), "\r\n");
  for (const auto& a : args) out.append(Cat("$", a.size(), "\r\n")).append(a).append("\r\n");
  return out;
}

std::string Tile38(std::string_view payload) {
  return Cat("$", payload.size(), " ").append(payload).append("\r\n");
}

// Everything that came out of parsing a stream.
struct Outcome {
  std::vector<Cmd> cmds;
  std::vector<size_t> ends;  // stream offset just past each command
  ParseStatus status = ParseStatus::kNeedMore;
  std::string error;
  size_t consumed = 0;
};

// Parses `input` as one buffer that is all there is, up to kNeedMore or
// kError, checking what every call reports against the buffer.
Outcome ParseAll(std::string_view input, ParserLimits limits = {}) {
  Parser parser(limits);
  Outcome run;
  while (true) {
    Command cmd;
    size_t used = 999999;
    const char* data = input.data() + run.consumed;
    size_t len = input.size() - run.consumed;
    run.status = parser.Parse(data, len, &cmd, &used);
    if (run.status == ParseStatus::kError) {
      run.error = parser.Error();
      return run;
    }
    if (run.status == ParseStatus::kNeedMore) {
      EXPECT_EQ(used, 0u);
      return run;
    }
    EXPECT_GT(used, 0u);
    EXPECT_LE(used, len);
    // raw is the tail of the consumed bytes: only skipped empty requests
    // may come before it.
    EXPECT_GE(cmd.raw.data(), data);
    EXPECT_EQ(cmd.raw.data() + cmd.raw.size(), data + used);
    EXPECT_EQ(parser.Pending(), 0u);
    run.cmds.push_back(Copy(cmd));
    run.consumed += used;
    run.ends.push_back(run.consumed);
  }
}

// Feeds a stream to a parser the way a connection does, in pieces. Every
// Parse call gets the unconsumed bytes in a fresh heap copy made while the
// previous copy is still alive (so its address differs); the previous copy
// is then overwritten with '#' and freed. A parser that kept a pointer
// instead of an offset across calls reads garbage (or, under ASan, freed
// memory).
class Stream {
 public:
  explicit Stream(ParserLimits limits = {}) : parser_(limits) {}

  // Appends `bytes` to the stream and parses as far as possible. Returns the
  // status of the last Parse call: kNeedMore or kError.
  ParseStatus Deliver(std::string_view bytes) {
    EXPECT_NE(status_, ParseStatus::kError) << "bytes delivered after an error";
    pending_.append(bytes);
    while (true) {
      auto next = std::make_unique<std::string>(pending_);
      if (copy_) std::fill(copy_->begin(), copy_->end(), '#');
      copy_ = std::move(next);
      Command cmd;
      size_t used = 999999;
      status_ = parser_.Parse(copy_->data(), copy_->size(), &cmd, &used);
      calls_++;
      if (status_ == ParseStatus::kError) {
        error_ = parser_.Error();
        return status_;
      }
      if (status_ == ParseStatus::kNeedMore) {
        EXPECT_EQ(used, 0u);
        EXPECT_LE(parser_.Pending(), pending_.size());
        return status_;
      }
      EXPECT_GT(used, 0u);
      EXPECT_LE(used, copy_->size());
      EXPECT_EQ(cmd.raw.data() + cmd.raw.size(), copy_->data() + used);
      EXPECT_EQ(parser_.Pending(), 0u);
      cmds_.push_back(Copy(cmd));
      pending_.erase(0, used);
    }
  }

  const std::vector<Cmd>& cmds() const { return cmds_; }
  const std::string& pending() const { return pending_; }
  const std::string& error() const { return error_; }
  size_t calls() const { return calls_; }

 private:
  Parser parser_;
  std::string pending_;
  std::unique_ptr<std::string> copy_;
  std::vector<Cmd> cmds_;
  ParseStatus status_ = ParseStatus::kNeedMore;
  std::string error_;
  size_t calls_ = 0;
};

size_t CountEndingBy(const std::vector<size_t>& ends, size_t k) {
  return std::count_if(ends.begin(), ends.end(), [k](size_t e) { return e <= k; });
}

// Expects `input` (a whole buffer) to be refused with exactly `error`.
void ExpectError(std::string_view input, std::string_view error, ParserLimits limits = {}) {
  SCOPED_TRACE("input: \"" + Escape(input.substr(0, 80)) + (input.size() > 80 ? "...\"" : "\""));
  Outcome run = ParseAll(input, limits);
  EXPECT_EQ(run.status, ParseStatus::kError) << StatusName(run.status);
  EXPECT_EQ(run.error, error);
}

// ------------------------------------------------- splits at every offset

// One piece of the mixed pipeline: its bytes, and the command it parses to
// (none for empty requests, which are skipped).
struct Segment {
  std::string bytes;
  std::optional<std::vector<std::string>> args;
  Kind kind = Kind::kMultibulk;
};

std::vector<Segment> MixedPipeline() {
  const std::string binary("a\r\nb\0\xff\r\n", 8);  // CRLF inside, and at the end
  return {
      {"\r\n", std::nullopt},  // a blank line first: skipped
      {Multibulk({"SET", "key", "value"}), {{"SET", "key", "value"}}},
      {Multibulk({"GET", ""}), {{"GET", ""}}},  // empty bulk "$0"
      {"*0\r\n", std::nullopt},
      {Multibulk({"ECHO", binary, "$"}), {{"ECHO", binary, "$"}}},
      {"*-1\r\n", std::nullopt},
      {"set \"a b\" 'it\\'s' \"\\x41\\x42\\n\" plain\r\n",
       {{"set", "a b", "it's", "AB\n", "plain"}},
       Kind::kInline},
      {"  \t \n", std::nullopt},  // a blank line of blanks, LF only
      {"PING\n", {{"PING"}}, Kind::kInline},
      {Tile38("SET fleet truck1 POINT 33.5 -115.5"),
       {{"SET", "fleet", "truck1", "POINT", "33.5", "-115.5"}},
       Kind::kTile38},
      {Tile38(" \"quoted arg\" 'x' "), {{"quoted arg", "x"}}, Kind::kTile38},
      {"*-10\r\n", std::nullopt},
      {Multibulk({"PING"}), {{"PING"}}},
      {"GET \"\\xe2\\x82\\xac\"\r\n", {{"GET", "\xe2\x82\xac"}}, Kind::kInline},
      {Multibulk({"DEL", "*1\r\n$1\r\n"}), {{"DEL", "*1\r\n$1\r\n"}}},
  };
}

std::string Concat(const std::vector<Segment>& segments) {
  std::string out;
  for (const auto& s : segments) out += s.bytes;
  return out;
}

std::vector<Cmd> Expected(const std::vector<Segment>& segments) {
  std::vector<Cmd> out;
  for (const auto& s : segments) {
    if (s.args) out.push_back(Cmd{*s.args, s.kind, s.bytes});
  }
  return out;
}

TEST(ParserSplitTest, UnsplitPipelineParsesToTheExpectedCommands) {
  const auto segments = MixedPipeline();
  const std::string input = Concat(segments);
  Outcome run = ParseAll(input);
  EXPECT_EQ(run.status, ParseStatus::kNeedMore);
  EXPECT_EQ(run.consumed, input.size());
  EXPECT_EQ(run.cmds, Expected(segments));
}

TEST(ParserSplitTest, EveryPrefixThenTheWholeGivesTheSameCommands) {
  const auto segments = MixedPipeline();
  const std::string input = Concat(segments);
  const Outcome whole = ParseAll(input);
  ASSERT_EQ(whole.cmds, Expected(segments));
  for (size_t k = 0; k <= input.size(); k++) {
    SCOPED_TRACE("split at " + std::to_string(k));
    Stream s;
    // Every call on the prefix yields commands that end inside it, then
    // kNeedMore; never an error, never a command that is not all there.
    ASSERT_EQ(s.Deliver(std::string_view(input).substr(0, k)), ParseStatus::kNeedMore);
    ASSERT_EQ(s.cmds().size(), CountEndingBy(whole.ends, k));
    ASSERT_EQ(s.Deliver(std::string_view(input).substr(k)), ParseStatus::kNeedMore);
    ASSERT_EQ(s.cmds(), whole.cmds);
    ASSERT_TRUE(s.pending().empty());
  }
}

TEST(ParserSplitTest, ByteByByteWithTheBufferMovingEveryCall) {
  const auto segments = MixedPipeline();
  const std::string input = Concat(segments);
  const Outcome whole = ParseAll(input);
  Stream s;
  for (size_t i = 0; i < input.size(); i++) {
    SCOPED_TRACE("byte " + std::to_string(i));
    ASSERT_EQ(s.Deliver(std::string_view(input).substr(i, 1)), ParseStatus::kNeedMore);
    ASSERT_EQ(s.cmds().size(), CountEndingBy(whole.ends, i + 1));
  }
  EXPECT_EQ(s.cmds(), whole.cmds);
  EXPECT_TRUE(s.pending().empty());
  // One call per byte, plus one more per command (the call after a
  // completed command finds nothing yet).
  EXPECT_EQ(s.calls(), input.size() + whole.cmds.size());
}

TEST(ParserSplitTest, ResumesFromTheSameBytesPassedAgainUnchanged) {
  // The contract allows re-passing exactly the same bytes (nothing new
  // arrived): the parser must give kNeedMore again, not a different answer.
  const std::string input = Multibulk({"SET", "k", "v"}) + "PING\r\n";
  Parser parser;
  Command cmd;
  size_t used;
  for (size_t k = 0; k < 20; k++) {
    ASSERT_EQ(parser.Parse(input.data(), k, &cmd, &used), ParseStatus::kNeedMore) << k;
    ASSERT_EQ(parser.Parse(input.data(), k, &cmd, &used), ParseStatus::kNeedMore) << k;
  }
  ASSERT_EQ(parser.Parse(input.data(), input.size(), &cmd, &used), ParseStatus::kComplete);
  EXPECT_EQ(Copy(cmd), (Cmd{{"SET", "k", "v"}, Kind::kMultibulk, Multibulk({"SET", "k", "v"})}));
}

// ------------------------------------------------------------ linear time

// An anonymous mapping whose whole pages can be made unreadable. The tests
// below protect bytes the parser has already dealt with: a parser that
// rescans them faults, whatever the machine's speed.
class GuardedRegion {
 public:
  explicit GuardedRegion(size_t size)
      : page_(static_cast<size_t>(sysconf(_SC_PAGESIZE))), size_(RoundUp(size)) {
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
  }
  ~GuardedRegion() {
    if (base_ != nullptr) munmap(base_, size_);
  }
  GuardedRegion(const GuardedRegion&) = delete;
  GuardedRegion& operator=(const GuardedRegion&) = delete;

  char* data() { return base_; }

  // Makes unreadable the whole pages that lie inside [from, to).
  bool Protect(size_t from, size_t to) {
    from = RoundUp(from);
    to = to / page_ * page_;
    if (from >= to) return true;
    return mprotect(base_ + from, to - from, PROT_NONE) == 0;
  }
  bool UnprotectAll() { return mprotect(base_, size_, PROT_READ | PROT_WRITE) == 0; }

 private:
  size_t RoundUp(size_t n) const { return (n + page_ - 1) / page_ * page_; }

  size_t page_;
  size_t size_;
  char* base_;
};

TEST(ParserLinearTest, HundredMegabyteBulkInSixteenKilobytePiecesNeverRereadsIt) {
  constexpr size_t kPayload = 100u << 20;
  constexpr size_t kPiece = 16u << 10;
  const std::string header = Cat("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$", kPayload, "\r\n");
  const size_t payload_at = header.size();
  const size_t total = payload_at + kPayload + 2;
  GuardedRegion region(total);
  ASSERT_NE(region.data(), nullptr);
  char* buf = region.data();
  memcpy(buf, header.data(), header.size());
  memset(buf + payload_at, 'v', kPayload);
  // Things a scanning parser might trip over: CRLFs and headers inside.
  for (size_t at : {size_t{0}, size_t{1000}, kPayload / 2, kPayload - 6}) {
    memcpy(buf + payload_at + at, "\r\n*1\r\n", 6);
  }
  memcpy(buf + payload_at + kPayload, "\r\n", 2);

  // Before each call, every whole page of payload delivered by earlier calls
  // is unreadable: a multibulk parser needs none of those bytes again (it
  // keeps the argument as an offset), and one that rescans faults at once.
  Parser parser;
  Command cmd;
  size_t used = 0;
  size_t avail = 0, calls = 0;
  ParseStatus st = ParseStatus::kNeedMore;
  while (avail < total) {
    ASSERT_TRUE(region.Protect(payload_at, std::min(avail, payload_at + kPayload)));
    avail = std::min(total, avail + kPiece);
    st = parser.Parse(buf, avail, &cmd, &used);
    calls++;
    if (avail < total) {
      ASSERT_EQ(st, ParseStatus::kNeedMore) << "at " << avail;
      // The headers were read once: the parser resumes at the payload.
      ASSERT_EQ(parser.Pending(), payload_at) << "at " << avail;
    }
  }
  ASSERT_EQ(st, ParseStatus::kComplete);
  EXPECT_EQ(calls, (total + kPiece - 1) / kPiece);
  EXPECT_EQ(used, total);
  ASSERT_EQ(cmd.args.size(), 3u);
  EXPECT_EQ(cmd.args[0], "SET");
  EXPECT_EQ(cmd.args[1], "big");
  // Zero copy: the argument is a view of the buffer itself.
  EXPECT_EQ(cmd.args[2].data(), buf + payload_at);
  EXPECT_EQ(cmd.args[2].size(), kPayload);
  EXPECT_EQ(cmd.raw.data(), buf);
  EXPECT_EQ(cmd.raw.size(), total);
  ASSERT_TRUE(region.UnprotectAll());
  EXPECT_EQ(cmd.args[2].substr(kPayload / 2, 8), "\r\n*1\r\nvv");
  EXPECT_EQ(cmd.args[2].substr(kPayload - 8), "vv\r\n*1\r\n");
}

TEST(ParserLinearTest, ManyArgumentsInPiecesNeverRereadWhatWasScanned) {
  constexpr size_t kArgs = 200000;
  constexpr size_t kPiece = 1000;
  const std::string head = Cat("*", kArgs, "\r\n");
  const std::string elem = "$1\r\nx\r\n";
  const size_t total = head.size() + kArgs * elem.size();
  GuardedRegion region(total);
  ASSERT_NE(region.data(), nullptr);
  char* buf = region.data();
  memcpy(buf, head.data(), head.size());
  for (size_t i = 0; i < kArgs; i++) memcpy(buf + head.size() + i * elem.size(), elem.data(), 7);

  Parser parser;
  Command cmd;
  size_t used = 0, avail = 0;
  ParseStatus st = ParseStatus::kNeedMore;
  while (avail < total) {
    // Bytes before Pending() were scanned: make them unreadable.
    ASSERT_TRUE(region.Protect(0, parser.Pending()));
    avail = std::min(total, avail + kPiece);
    st = parser.Parse(buf, avail, &cmd, &used);
    if (avail < total) {
      ASSERT_EQ(st, ParseStatus::kNeedMore);
      // Progress is kept through every complete element.
      size_t complete = (avail - head.size()) / elem.size();
      ASSERT_GE(parser.Pending(), head.size() + complete * elem.size()) << "at " << avail;
      ASSERT_LE(parser.Pending(), avail);
    }
  }
  ASSERT_EQ(st, ParseStatus::kComplete);
  EXPECT_EQ(used, total);
  ASSERT_TRUE(region.UnprotectAll());
  ASSERT_EQ(cmd.args.size(), kArgs);
  for (size_t i = 0; i < kArgs; i++) {
    ASSERT_EQ(cmd.args[i].data(), buf + head.size() + i * elem.size() + 4) << i;
    ASSERT_EQ(cmd.args[i], "x") << i;
  }
}

TEST(ParserLinearTest, LongInlineLineIsScannedOnce) {
  const std::string line = "SET k " + std::string(60000, 'a') + "\r\n";
  GuardedRegion region(line.size());
  ASSERT_NE(region.data(), nullptr);
  char* buf = region.data();
  memcpy(buf, line.data(), line.size());
  Parser parser;
  Command cmd;
  size_t used = 0, avail = 0;
  ParseStatus st = ParseStatus::kNeedMore;
  while (avail < line.size()) {
    avail = std::min(line.size(), avail + 1000);
    if (avail == line.size()) {
      // The line end is here: now the line is split, which reads it once.
      ASSERT_TRUE(region.UnprotectAll());
    }
    st = parser.Parse(buf, avail, &cmd, &used);
    if (avail < line.size()) {
      ASSERT_EQ(st, ParseStatus::kNeedMore);
      // Everything so far was searched for '\n' and is not searched again:
      // make it unreadable.
      ASSERT_EQ(parser.Pending(), avail);
      ASSERT_TRUE(region.Protect(0, parser.Pending()));
    }
  }
  ASSERT_EQ(st, ParseStatus::kComplete);
  ASSERT_EQ(cmd.args.size(), 3u);
  EXPECT_EQ(cmd.args[2], std::string(60000, 'a'));
  EXPECT_EQ(cmd.kind, Kind::kInline);
}

TEST(ParserLinearTest, LargeTile38PayloadIsNotReadBeforeItIsComplete) {
  constexpr size_t kPayload = 8u << 20;
  constexpr size_t kPiece = 16u << 10;
  std::string payload = "SET big " + std::string(kPayload - 8, 'v');
  const std::string head = Cat("$", kPayload, " ");
  const size_t total = head.size() + kPayload + 2;
  GuardedRegion region(total);
  ASSERT_NE(region.data(), nullptr);
  char* buf = region.data();
  memcpy(buf, head.data(), head.size());
  memcpy(buf + head.size(), payload.data(), kPayload);
  memcpy(buf + head.size() + kPayload, "\r\n", 2);

  Parser parser;
  Command cmd;
  size_t used = 0, avail = 0;
  ParseStatus st = ParseStatus::kNeedMore;
  while (avail < total) {
    avail = std::min(total, avail + kPiece);
    if (avail == total) {
      // Now the payload is split into arguments, which reads it once.
      ASSERT_TRUE(region.UnprotectAll());
    }
    st = parser.Parse(buf, avail, &cmd, &used);
    if (avail < total) {
      ASSERT_EQ(st, ParseStatus::kNeedMore);
      ASSERT_EQ(parser.Pending(), head.size());
      ASSERT_TRUE(region.Protect(head.size(), avail));
    }
  }
  ASSERT_EQ(st, ParseStatus::kComplete);
  EXPECT_EQ(used, total);
  EXPECT_EQ(cmd.kind, Kind::kTile38);
  ASSERT_EQ(cmd.args.size(), 3u);
  EXPECT_EQ(cmd.args[1], "big");
  EXPECT_EQ(cmd.args[2].size(), kPayload - 8);
}

// ------------------------------------- Redis 7.0 tests/unit/protocol.tcl

TEST(ParserRedisProtocolTest, HandleAnEmptyQuery) {
  Outcome run = ParseAll("\r\n" + Multibulk({"PING"}));
  EXPECT_EQ(run.status, ParseStatus::kNeedMore);
  ASSERT_EQ(run.cmds.size(), 1u);
  EXPECT_EQ(run.cmds[0].args, std::vector<std::string>{"PING"});
  EXPECT_EQ(run.consumed, 2 + Multibulk({"PING"}).size());
}

TEST(ParserRedisProtocolTest, NegativeMultibulkLengthIsSkipped) {
  const std::string input = "*-10\r\n" + Multibulk({"PING"});
  Outcome run = ParseAll(input);
  EXPECT_EQ(run.status, ParseStatus::kNeedMore);
  ASSERT_EQ(run.cmds.size(), 1u);
  EXPECT_EQ(run.cmds[0].args, std::vector<std::string>{"PING"});
  EXPECT_EQ(run.cmds[0].raw, Multibulk({"PING"}));
  EXPECT_EQ(run.consumed, input.size());
}

TEST(ParserRedisProtocolTest, OutOfRangeMultibulkLength) {
  ExpectError("*3000000000\r\n", "ERR Protocol error: invalid multibulk length");
  ExpectError("*20000000\r\n", "ERR Protocol error: invalid multibulk length");
  ExpectError("*1048577\r\n", "ERR Protocol error: invalid multibulk length");
  ExpectError("*99999999999999999999\r\n", "ERR Protocol error: invalid multibulk length");
  // 1024*1024 itself is allowed: the parser waits for the arguments.
  Outcome run = ParseAll("*1048576\r\n");
  EXPECT_EQ(run.status, ParseStatus::kNeedMore);
}

TEST(ParserRedisProtocolTest, MalformedMultibulkCounts) {
  for (const char* in :
       {"*\r\n", "*x\r\n", "*01\r\n", "*+1\r\n", "* 1\r\n", "*1 \r\n", "*-0\r\n", "*1x\r\n"}) {
    ExpectError(in, "ERR Protocol error: invalid multibulk length");
  }
}

TEST(ParserRedisProtocolTest, WrongMultibulkPayloadHeader) {
  ExpectError("*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
              "ERR Protocol error: expected '$', got 'f'");
}

TEST(ParserRedisProtocolTest, NegativeMultibulkPayloadLength) {
  ExpectError("*3\r\n$-10\r\n", "ERR Protocol error: invalid bulk length");
  ExpectError("*3\r\n$-1\r\n", "ERR Protocol error: invalid bulk length");
}

TEST(ParserRedisProtocolTest, OutOfRangeMultibulkPayloadLength) {
  ExpectError("*3\r\n$2000000000\r\n", "ERR Protocol error: invalid bulk length");
  ExpectError("*3\r\n$536870913\r\n", "ERR Protocol error: invalid bulk length");
  // 512 MB itself is allowed.
  EXPECT_EQ(ParseAll("*3\r\n$536870912\r\n").status, ParseStatus::kNeedMore);
}

TEST(ParserRedisProtocolTest, NonNumberMultibulkPayloadLength) {
  ExpectError("*3\r\n$blabla\r\n", "ERR Protocol error: invalid bulk length");
  for (const char* in : {"*1\r\n$\r\n", "*1\r\n$03\r\n", "*1\r\n$+3\r\n", "*1\r\n$3 \r\n"}) {
    ExpectError(in, "ERR Protocol error: invalid bulk length");
  }
}

TEST(ParserRedisProtocolTest, MultibulkRequestNotFollowedByBulkArguments) {
  ExpectError("*1\r\nfoo=bar\r\n", "ERR Protocol error: expected '$', got 'f'");
  // The error is decided when the line is complete, as in Redis.
  EXPECT_EQ(ParseAll("*1\r\nfoo=bar").status, ParseStatus::kNeedMore);
}

TEST(ParserRedisProtocolTest, UnbalancedNumberOfQuotes) {
  ExpectError("set \"\"\"test-key\"\"\" test-value\r\nping\r\n",
              "ERR Protocol error: unbalanced quotes in request");
}

TEST(ParserRedisProtocolTest, TooBigInlineRequest) {
  // PROTO_INLINE_MAX_SIZE is 64 KB: more than that without a newline is an
  // error; exactly that much is still waited on.
  EXPECT_EQ(ParseAll(std::string(64 * 1024, 'a')).status, ParseStatus::kNeedMore);
  ExpectError(std::string(64 * 1024 + 1, 'a'), "ERR Protocol error: too big inline request");
  // Arriving in pieces gives the same answer once the line is too long.
  Stream s;
  const std::string piece(4096, 'a');
  ParseStatus st = ParseStatus::kNeedMore;
  int pieces = 0;
  while (st == ParseStatus::kNeedMore && pieces < 100) {
    st = s.Deliver(piece);
    pieces++;
  }
  EXPECT_EQ(st, ParseStatus::kError);
  EXPECT_EQ(pieces, 17);
  EXPECT_EQ(s.error(), "ERR Protocol error: too big inline request");
}

// prefix followed by n times c.
std::string Fill(std::string_view prefix, size_t n, char c) {
  return std::string(prefix).append(n, c);
}

TEST(ParserRedisProtocolTest, TooBigMultibulkCountString) {
  EXPECT_EQ(ParseAll(Fill("*", 64 * 1024 - 1, '1')).status, ParseStatus::kNeedMore);
  ExpectError(Fill("*", 64 * 1024, '1'), "ERR Protocol error: too big mbulk count string");
  ExpectError(Fill("*", 70000, 'x'), "ERR Protocol error: too big mbulk count string");
}

TEST(ParserRedisProtocolTest, TooBigBulkCountString) {
  ExpectError(Fill("*1\r\n$", 70000, '1'), "ERR Protocol error: too big bulk count string");
}

// Redis's "Protocol desync regression test #1..3": after one of these
// sequences the client keeps writing (the Tcl test literally writes the word
// "payload" over and over). The connection must end in a protocol error,
// not hang waiting for a line that never comes.
TEST(ParserRedisProtocolTest, ProtocolDesyncEndsInAnError) {
  for (const std::string& seq : {"\x00"s, "*\x00"s, "$\x00"s}) {
    for (const std::string& filler : {"payload"s, seq}) {
      SCOPED_TRACE("seq \"" + Escape(seq) + "\" then \"" + Escape(filler) + "\" repeated");
      std::string piece;
      while (piece.size() < 1024) piece += filler;
      Stream s;
      ParseStatus st = s.Deliver(seq);
      int pieces = 0;
      while (st == ParseStatus::kNeedMore && pieces < 1000) {
        st = s.Deliver(piece);
        pieces++;
      }
      EXPECT_EQ(st, ParseStatus::kError);
      EXPECT_LE(pieces, 70);  // within PROTO_INLINE_MAX_SIZE and a piece
      EXPECT_PRED_FORMAT2(::testing::IsSubstring, "Protocol error", s.error());
      EXPECT_TRUE(s.cmds().empty());
    }
  }
}

TEST(ParserRedisProtocolTest, LargeNumberOfArgs) {
  // "test large number of args": MSET with 20002 arguments.
  std::vector<std::string> args = {"MSET"};
  for (int i = 0; i < 10000; i++) {
    args.push_back("k");
    args.push_back("v");
  }
  args.push_back("{k}2");
  args.push_back("v2");
  Outcome run = ParseAll(Multibulk(args));
  ASSERT_EQ(run.cmds.size(), 1u);
  EXPECT_EQ(run.cmds[0].args, args);
}

TEST(ParserLimitsTest, HugeDeclaredLengthsAreRefusedFromTheHeaderAlone) {
  // Refused at once, from the header: nothing is waited for or allocated.
  ExpectError("*1\r\n$9999999999999\r\n", "ERR Protocol error: invalid bulk length");
  ExpectError("*1\r\n$99999999999999999999999\r\n", "ERR Protocol error: invalid bulk length");
  ExpectError("$9999999999999 ", "ERR Protocol error: invalid bulk length");
  ExpectError("$99999999999999999999999 ", "ERR Protocol error: invalid bulk length");
  ExpectError("*9999999999999\r\n", "ERR Protocol error: invalid multibulk length");
}

// ----------------------------------------------------------- ParserLimits

TEST(ParserLimitsTest, SmallMaxBulkLen) {
  ParserLimits limits;
  limits.max_bulk_len = 10;
  ExpectError("*1\r\n$11\r\n", "ERR Protocol error: invalid bulk length", limits);
  ExpectError("$11 ", "ERR Protocol error: invalid bulk length", limits);
  Outcome run = ParseAll(Multibulk({"0123456789"}) + Tile38("GET 012345"), limits);
  EXPECT_EQ(run.status, ParseStatus::kNeedMore);
  ASSERT_EQ(run.cmds.size(), 2u);
  EXPECT_EQ(run.cmds[0].args, std::vector<std::string>{"0123456789"});
  EXPECT_EQ(run.cmds[1].args, (std::vector<std::string>{"GET", "012345"}));
}

TEST(ParserLimitsTest, SmallMaxMultibulkLen) {
  ParserLimits limits;
  limits.max_multibulk_len = 3;
  ExpectError("*4\r\n", "ERR Protocol error: invalid multibulk length", limits);
  Outcome run = ParseAll(Multibulk({"a", "b", "c"}), limits);
  ASSERT_EQ(run.cmds.size(), 1u);
  EXPECT_EQ(run.cmds[0].args, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(ParserLimitsTest, SmallMaxInlineLen) {
  ParserLimits limits;
  limits.max_inline_len = 8;
  EXPECT_EQ(ParseAll("abcdefgh", limits).status, ParseStatus::kNeedMore);
  ExpectError("abcdefghi", "ERR Protocol error: too big inline request", limits);
  ExpectError("GET abcde\r\n", "ERR Protocol error: too big inline request", limits);
  Outcome run = ParseAll("GET abcd\r\n", limits);
  ASSERT_EQ(run.cmds.size(), 1u);
  EXPECT_EQ(run.cmds[0].args, (std::vector<std::string>{"GET", "abcd"}));
  ExpectError("*123456789", "ERR Protocol error: too big mbulk count string", limits);
}

TEST(ParserLimitsTest, SetLimitsAppliesToTheNextCommand) {
  Parser parser;
  EXPECT_EQ(parser.limits().max_bulk_len, 512u * 1024 * 1024);
  EXPECT_EQ(parser.limits().max_multibulk_len, 1024 * 1024);
  EXPECT_EQ(parser.limits().max_inline_len, 64u * 1024);
  ParserLimits limits;
  limits.max_bulk_len = 2;
  parser.set_limits(limits);
  EXPECT_EQ(parser.limits().max_bulk_len, 2u);
  const std::string in = "*1\r\n$3\r\nabc\r\n";
  Command cmd;
  size_t used;
  EXPECT_EQ(parser.Parse(in.data(), in.size(), &cmd, &used), ParseStatus::kError);
  EXPECT_EQ(parser.Error(), "ERR Protocol error: invalid bulk length");
}

// ------------------------------------------------------- inline splitting

std::optional<std::vector<std::string>> Split(std::string_view line) {
  std::string storage;
  storage.reserve(line.size());
  std::vector<std::string_view> views;
  if (!SplitArgs(line, &storage, &views)) return std::nullopt;
  for (auto v : views) {
    // Unescaped arguments live in the storage given.
    EXPECT_TRUE(v.empty() || (v.data() >= storage.data() &&
                              v.data() + v.size() <= storage.data() + storage.size()));
  }
  return std::vector<std::string>(views.begin(), views.end());
}

using Args = std::vector<std::string>;

struct SplitCase {
  std::string line;
  std::optional<Args> want;  // nullopt: unbalanced quotes
};

// What Redis's sdssplitargs gives for each line.
std::vector<SplitCase> SplitCases() {
  return {
      {"set \"a b\" c", Args{"set", "a b", "c"}},
      {"\"\\x41\\x42\"", Args{"AB"}},
      {"\"\\x4a\\x4B\\x00\"", Args{"JK\0"s}},
      {"'it\\'s'", Args{"it's"}},
      {"'a\\nb'", Args{"a\\nb"}},  // no escapes but \' in single quotes
      {"\"a\\nb\"", Args{"a\nb"}},
      {"\"\\r\\t\\b\\a\"", Args{"\r\t\b\a"}},
      {"\"\\\"q\\\"\" \"a\\\\b\" \"\\q\"", Args{"\"q\"", "a\\b", "q"}},
      {"\"\\xg1\" \"\\x4\"", Args{"xg1", "x4"}},  // not two hex digits: \x is 'x'
      {"ab\"c d\" e'f g'", Args{"abc d", "ef g"}},
      {"\"\" '' x", Args{"", "", "x"}},
      {"\"a\"\t\"b\"", Args{"a", "b"}},
      {"\"a\"\r'b'\n", Args{"a", "b"}},
      {"GET k   ", Args{"GET", "k"}},
      {"   GET    k", Args{"GET", "k"}},
      {"GET\tk\t", Args{"GET", "k"}},
      {"\v\fGET k", Args{"GET", "k"}},  // leading blanks are anything isspace()
      {"\"a\"\v\"b\"", Args{"a", "b"}},
      {"", Args{}},
      {"  \t ", Args{}},
      {"a\0b c"s, Args{"a"}},  // a C string: NUL ends the line
      {"\"abc", std::nullopt},
      {"'abc", std::nullopt},
      {"\"abc\\\"", std::nullopt},  // the quote is escaped
      {"\"abc\\", std::nullopt},    // an escape at the end of the line
      {"'abc\\'", std::nullopt},
      {"\"a\"b", std::nullopt},  // closing quote followed by a non-blank
      {"'a'b", std::nullopt},
      {"\"a\"'b'", std::nullopt},
      {"x \"a\"\"", std::nullopt},
      {"\"a\0\"b"s, std::nullopt},  // the NUL ends the line inside the quotes
  };
}

TEST(SplitArgsTest, MatchesSdssplitargs) {
  for (const auto& c : SplitCases()) {
    SCOPED_TRACE("line: \"" + Escape(c.line) + "\"");
    EXPECT_EQ(Split(c.line), c.want);
  }
}

TEST(SplitArgsTest, InlineRequestsSplitTheSameWithCrlfOrLf) {
  for (const auto& c : SplitCases()) {
    if (c.line.find_first_of("\r\n") != std::string::npos) continue;
    for (const char* eol : {"\r\n", "\n"}) {
      const std::string raw = c.line + eol;
      SCOPED_TRACE("request: \"" + Escape(raw) + "\"");
      Outcome run = ParseAll(raw + "PING\r\n");
      if (!c.want) {
        EXPECT_EQ(run.status, ParseStatus::kError);
        EXPECT_EQ(run.error, "ERR Protocol error: unbalanced quotes in request");
      } else if (c.want->empty()) {  // a blank line is skipped
        ASSERT_EQ(run.cmds.size(), 1u);
        EXPECT_EQ(run.cmds[0].args, Args{"PING"});
        EXPECT_EQ(run.consumed, raw.size() + 6);
      } else {
        ASSERT_EQ(run.cmds.size(), 2u);
        EXPECT_EQ(run.cmds[0], (Cmd{*c.want, Kind::kInline, raw}));
        EXPECT_EQ(run.cmds[1].args, Args{"PING"});
      }
    }
  }
}

TEST(SplitArgsTest, LineEndings) {
  // Only one CR before the LF belongs to the line ending; any other CR is a
  // blank (or data, inside quotes).
  Outcome run = ParseAll("GET k\r\r\nGET \"a\rb\"\r\nGET k\n\r\nSET k \"v\"\r\r\n");
  EXPECT_EQ(run.status, ParseStatus::kNeedMore);
  ASSERT_EQ(run.cmds.size(), 4u);
  EXPECT_EQ(run.cmds[0].args, (Args{"GET", "k"}));
  EXPECT_EQ(run.cmds[0].raw, "GET k\r\r\n");
  EXPECT_EQ(run.cmds[1].args, (Args{"GET", "a\rb"}));
  EXPECT_EQ(run.cmds[2].args, (Args{"GET", "k"}));
  EXPECT_EQ(run.cmds[2].raw, "GET k\n");
  EXPECT_EQ(run.cmds[3].args, (Args{"SET", "k", "v"}));
  EXPECT_EQ(run.cmds[3].raw, "SET k \"v\"\r\r\n");  // after "\r\n" was skipped
}

TEST(SplitArgsTest, EscapeBeforeTheLineEndIsUnbalanced) {
  // The CR of CRLF is not part of the line, so it cannot be escaped.
  ExpectError("SET k \"v\\\r\n", "ERR Protocol error: unbalanced quotes in request");
  ExpectError("SET k \"v\\\n", "ERR Protocol error: unbalanced quotes in request");
  ExpectError("SET k 'v\\'\r\n", "ERR Protocol error: unbalanced quotes in request");
}

TEST(SplitArgsTest, NeverLooksPastTheEndOfTheLine) {
  // Each line is a view of a longer buffer whose next bytes would change the
  // answer if they were read: the escape, the quote and the closing-quote
  // rule must all stop at the end of the view.
  const struct {
    const char* line;
    const char* after;
    std::optional<Args> want;
  } cases[] = {
      {"\"\\x4", "1\"", std::nullopt}, {"\"\\x", "41\"", std::nullopt},
      {"\"\\", "\"\"", std::nullopt},  {"'\\", "''", std::nullopt},
      {"\"ab", "\"", std::nullopt},    {"\"a\"", "b", Args{"a"}},
      {"'a'", "b", Args{"a"}},         {"a", "b", Args{"a"}},
  };
  for (const auto& c : cases) {
    const std::string buffer = std::string(c.line) + c.after;
    SCOPED_TRACE("line: \"" + Escape(c.line) + "\" before \"" + Escape(c.after) + "\"");
    EXPECT_EQ(Split(std::string_view(buffer).substr(0, strlen(c.line))), c.want);
  }
}

// sdssplitargs ends an unquoted argument only at ' ', '\n', '\r', '\t' or
// NUL, while it skips any isspace() byte between arguments: in Redis,
// "a\vb" is one argument.
TEST(SplitArgsTest, VerticalTabAndFormFeedDoNotEndAnUnquotedArgument) {
  EXPECT_EQ(Split("a\vb c"), (Args{"a\vb", "c"}));
  EXPECT_EQ(Split("a\fb"), (Args{"a\fb"}));
  EXPECT_EQ(Split("set k\v v"), (Args{"set", "k\v", "v"}));
}

// ----------------------------------------------------------------- Tile38

TEST(ParserTile38Test, NativeCommands) {
  Outcome run = ParseAll("$5 GET k\r\n" + Tile38("SET k \"v w\"") + "$0 \r\n" + "$3    \r\n" +
                         Tile38("GET\r\nk"));
  EXPECT_EQ(run.status, ParseStatus::kNeedMore);
  ASSERT_EQ(run.cmds.size(), 3u);
  EXPECT_EQ(run.cmds[0], (Cmd{{"GET", "k"}, Kind::kTile38, "$5 GET k\r\n"}));
  EXPECT_EQ(run.cmds[1], (Cmd{{"SET", "k", "v w"}, Kind::kTile38, Tile38("SET k \"v w\"")}));
  // Empty payloads are skipped like empty requests.
  EXPECT_EQ(run.cmds[2], (Cmd{{"GET", "k"}, Kind::kTile38, Tile38("GET\r\nk")}));
}

TEST(ParserTile38Test, IncompleteHeadersWait) {
  for (const char* in : {"$", "$1", "$12", "$12 GET", "$5 GET k", "$5 GET k\r"}) {
    EXPECT_EQ(ParseAll(in).status, ParseStatus::kNeedMore) << Escape(in);
  }
}

TEST(ParserTile38Test, MalformedHeaders) {
  for (const char* in :
       {"$abc", "$-1 x\r\n", "$ 5", "$05 GET k\r\n", "$5x", "$5\r\n", "$123456789012345678901 "}) {
    ExpectError(in, "ERR Protocol error: invalid bulk length");
  }
}

TEST(ParserTile38Test, PayloadNotFollowedByCrlf) {
  Outcome run = ParseAll("$5 GET kXY");
  EXPECT_EQ(run.status, ParseStatus::kError);
  EXPECT_EQ(run.error.rfind("ERR Protocol error: ", 0), 0u) << run.error;
}

TEST(ParserTile38Test, UnbalancedQuotesInPayload) {
  ExpectError(Tile38("GET \"k"), "ERR Protocol error: unbalanced quotes in request");
}

// -------------------------------------------------------- other contracts

TEST(ParserTest, KindsAndRaw) {
  const std::string mb = Multibulk({"GET", "k"});
  Outcome run = ParseAll(mb + "GET k\r\n" + "$5 GET k\r\n");
  ASSERT_EQ(run.cmds.size(), 3u);
  EXPECT_EQ(run.cmds[0], (Cmd{{"GET", "k"}, Kind::kMultibulk, mb}));
  EXPECT_EQ(run.cmds[1], (Cmd{{"GET", "k"}, Kind::kInline, "GET k\r\n"}));
  EXPECT_EQ(run.cmds[2], (Cmd{{"GET", "k"}, Kind::kTile38, "$5 GET k\r\n"}));
}

TEST(ParserTest, SkippedRequestsCountInConsumedButNotInRaw) {
  const std::string in = "\r\n*0\r\n  \n*-1\r\n$0 \r\nPING\r\n";
  Parser parser;
  Command cmd;
  size_t used;
  ASSERT_EQ(parser.Parse(in.data(), in.size(), &cmd, &used), ParseStatus::kComplete);
  EXPECT_EQ(used, in.size());
  EXPECT_EQ(cmd.raw, "PING\r\n");
  EXPECT_EQ(cmd.raw.data(), in.data() + in.size() - 6);
}

TEST(ParserTest, OnlySkippedRequestsNeedMore) {
  const std::string in = "\r\n*0\r\n\n*-1\r\n";
  Parser parser;
  Command cmd;
  size_t used = 7;
  EXPECT_EQ(parser.Parse(in.data(), in.size(), &cmd, &used), ParseStatus::kNeedMore);
  EXPECT_EQ(used, 0u);
}

TEST(ParserTest, MultibulkArgumentsAreViewsOfTheBuffer) {
  const std::string in = Multibulk({"SET", "key", std::string("v\0\r\n", 4)});
  Parser parser;
  Command cmd;
  size_t used;
  ASSERT_EQ(parser.Parse(in.data(), in.size(), &cmd, &used), ParseStatus::kComplete);
  ASSERT_EQ(cmd.args.size(), 3u);
  for (auto a : cmd.args) {
    EXPECT_GE(a.data(), in.data());
    EXPECT_LE(a.data() + a.size(), in.data() + in.size());
  }
  EXPECT_EQ(cmd.args[2], std::string_view("v\0\r\n", 4));
  EXPECT_EQ(cmd.raw, in);
}

TEST(ParserTest, PendingAndReset) {
  Parser parser;
  EXPECT_EQ(parser.Pending(), 0u);
  const std::string partial = "*2\r\n$3\r\nGET\r\n$1\r";
  Command cmd;
  size_t used;
  ASSERT_EQ(parser.Parse(partial.data(), partial.size(), &cmd, &used), ParseStatus::kNeedMore);
  EXPECT_GT(parser.Pending(), 0u);
  EXPECT_LE(parser.Pending(), partial.size());
  parser.Reset();
  EXPECT_EQ(parser.Pending(), 0u);
  // After Reset the parser starts afresh on new bytes.
  const std::string in = "PING\r\n";
  ASSERT_EQ(parser.Parse(in.data(), in.size(), &cmd, &used), ParseStatus::kComplete);
  EXPECT_EQ(Copy(cmd), (Cmd{{"PING"}, Kind::kInline, "PING\r\n"}));
  EXPECT_EQ(used, in.size());
  EXPECT_EQ(parser.Pending(), 0u);
}

// Error() is documented as the reply text, but "got '%c'" copies the
// offending byte as is, so a CR or LF there splits the reply in two if it is
// sent without AppendError's sanitising. Redis replaces CR and LF in error
// replies by spaces (addReplyErrorFormatEx); so does the parser.
TEST(ParserTest, ErrorTextIsOneLine) {
  ExpectError("*1\r\n\r\n", "ERR Protocol error: expected '$', got ' '");
  ExpectError("*1\r\n\n\r\n", "ERR Protocol error: expected '$', got ' '");
}

TEST(ParserTest, ErrorsStartWithErrProtocolError) {
  for (const std::string& in : {"*x\r\n"s, "*1\r\nx\r\n"s, "*1\r\n$x\r\n"s, "\"\r\n"s, "$x"s}) {
    Outcome run = ParseAll(in);
    EXPECT_EQ(run.status, ParseStatus::kError) << Escape(in);
    EXPECT_EQ(run.error.rfind("ERR Protocol error: ", 0), 0u) << run.error;
  }
}

}  // namespace
}  // namespace redhub::resp
