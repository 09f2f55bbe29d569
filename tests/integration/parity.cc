#include "parity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

namespace redhub::integration {
namespace {

// The reply re-encoded with the elements of every array that holds only
// bulk strings sorted: KEYS and SCAN, alone or inside EXEC, whose order is
// the server's own.
std::string CanonicalAt(std::string_view data, size_t* at) {
  size_t len = ReplyLength(data, *at);
  if (len == 0) return "<incomplete>";
  const char type = data[*at];
  if (type != '*' && type != '~') {
    std::string out(data.substr(*at, len));
    *at += len;
    return out;
  }
  size_t eol = data.find("\r\n", *at);
  const std::string head(data.substr(*at, eol + 2 - *at));
  long n = atol(head.c_str() + 1);
  *at = eol + 2;
  std::vector<std::string> items;
  bool all_bulk = true;
  for (long i = 0; i < n; i++) {
    all_bulk = all_bulk && data[*at] == '$';
    items.push_back(CanonicalAt(data, at));
  }
  if (all_bulk) std::sort(items.begin(), items.end());
  std::string out = head;
  for (const std::string& item : items) out += item;
  return out;
}

std::optional<int64_t> ServerTimeMs(Socket& s) {
  Reply r = SocketCommand(s, {"TIME"});
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) return std::nullopt;
  return atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
}

// Runs a waiting step on one server's connection; false if its condition
// did not come in time.
bool RunWait(const Step& step, Socket& s) {
  if (step.kind == Step::kWaitGone) {
    return WaitUntil([&] { return Raw(s, {"PTTL", step.argv[0]}) == ":-2\r\n"; });
  }
  std::optional<int64_t> start = ServerTimeMs(s);
  if (!start) return false;
  const int64_t until = *start + atoll(step.argv[0].c_str());
  return WaitUntil([&] {
    std::optional<int64_t> now = ServerTimeMs(s);
    return now && *now >= until;
  });
}

}  // namespace

std::string Raw(Socket& s, const std::vector<std::string>& argv) { return RawReply(s, argv); }

// The next n replies' bytes; fewer at EOF, an error or the timeout.
std::vector<std::string> ReadReplies(Socket& s, size_t n) {
  std::vector<std::string> replies;
  std::string raw;
  char buf[16384];
  Clock::time_point deadline = Clock::now() + kTimeout;
  while (replies.size() < n && Clock::now() < deadline) {
    size_t len = ReplyLength(raw);
    if (len != 0) {
      replies.push_back(raw.substr(0, len));
      raw.erase(0, len);
      continue;
    }
    ssize_t got = s.RecvOnce(buf, sizeof(buf), milliseconds(100));
    if (got == 0 || got == -1) break;
    if (got > 0) raw.append(buf, static_cast<size_t>(got));
  }
  return replies;
}

std::string Canonical(std::string_view data) {
  size_t at = 0;
  return CanonicalAt(data, &at);
}

// Runs script on a fresh redis-server and a fresh redhubd, two connections
// to each, and compares every reply. Pipelined: each run of consecutive
// commands on one connection goes as one write (the dispatcher runs a
// read's commands as one store batch, Store::BeginBatch, which MULTI, EXEC
// and WATCH must not trip over), its replies compared one by one.
void RunParity(const ParityScript& script, bool pipelined,
               const std::vector<std::string>& redhubd_args) {
  auto reference = StartRedisServer();
  ASSERT_NE(reference, nullptr);
  // A small store: a segment is quicker to make (the defaults map 355 MB).
  std::vector<std::string> args = {"--workers", "1", "--maxmemory", "8mb"};
  args.insert(args.end(), redhubd_args.begin(), redhubd_args.end());
  auto ours = StartRedhubd(args);
  ASSERT_NE(ours, nullptr);
  Socket ref_conns[2] = {Socket::Connect(reference->port()), Socket::Connect(reference->port())};
  Socket our_conns[2] = {Socket::Connect(ours->port()), Socket::Connect(ours->port())};
  for (int i = 0; i < 2; i++) {
    ASSERT_TRUE(ref_conns[i].valid());
    ASSERT_TRUE(our_conns[i].valid());
  }
  auto compared = [](Step::Kind kind) { return kind == Step::kBytes || kind == Step::kSorted; };
  for (size_t i = 0; i < script.steps.size();) {
    const Step& step = script.steps[i];
    const std::string what = "step " + std::to_string(i) + " on connection " +
                             std::to_string(step.conn) + ": " + ::testing::PrintToString(step.argv);
    Socket& ref = ref_conns[step.conn];
    Socket& our = our_conns[step.conn];
    if (step.kind == Step::kWaitGone || step.kind == Step::kWaitClock) {
      ASSERT_TRUE(RunWait(step, ref)) << "redis-server, " << what;
      ASSERT_TRUE(RunWait(step, our)) << "redhubd, " << what;
      i++;
      continue;
    }
    if (step.kind == Step::kMap) {
      std::string expected = Raw(ref, step.argv), got = Raw(our, step.argv);
      ASSERT_EQ(expected.rfind("%", 0), 0u) << what << ": " << expected;
      EXPECT_EQ(got.rfind("%", 0), 0u) << what << ": " << got;
      EXPECT_NE(got.find("$5\r\nproto\r\n:3\r\n"), std::string::npos) << got;
      i++;
      continue;
    }
    // The commands sent together: this one, and if pipelined the ones after
    // it on the same connection.
    size_t end = i + 1;
    while (pipelined && end < script.steps.size() && script.steps[end].conn == step.conn &&
           compared(script.steps[end].kind)) {
      end++;
    }
    std::string batch;
    for (size_t j = i; j < end; j++) batch += FormatCommand(script.steps[j].argv);
    ASSERT_TRUE(ref.SendAll(batch)) << what;
    std::vector<std::string> expected = ReadReplies(ref, end - i);
    ASSERT_EQ(expected.size(), end - i) << "redis-server did not reply, " << what;
    ASSERT_TRUE(our.SendAll(batch)) << what;
    std::vector<std::string> got = ReadReplies(our, end - i);
    got.resize(end - i);
    for (size_t j = i; j < end; j++) {
      const Step& s = script.steps[j];
      const std::string& e = expected[j - i];
      const std::string& g = got[j - i];
      const std::string at = "step " + std::to_string(j) + ": " + ::testing::PrintToString(s.argv);
      if (s.kind == Step::kSorted) {
        EXPECT_EQ(Canonical(g), Canonical(e)) << at << "\nraw: " << g;
      } else {
        EXPECT_EQ(g, e) << at;
      }
    }
    i = end;
  }
}

}  // namespace redhub::integration
