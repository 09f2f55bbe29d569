// The keyspace and expiry families against the real redhubd (two worker
// processes sharing the store): every command, option and Redis 7.0 error
// text over hiredis; SCAN's guarantee while another client adds keys; active
// and lazy expiry; RENAME's atomicity across processes; RESP3 through raw
// bytes and redis-cli -3; and redis-py.
//
// Nothing here asserts a duration: waits poll a condition until a deadline,
// and expiry checks compare the server's answer with the wall clock read
// before the command was sent (the server's clock can only be later).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

constexpr milliseconds kClientTimeout{20000};
// Active expiry runs ten times a second in every worker; Redis's own test
// allows ~2 s. The deadline is generous for a loaded 2-core machine.
constexpr milliseconds kExpiryDeadline{15000};

// The reply as compact text, in full: ":1", "+OK", "-ERR ...", "\"bulk\"",
// "nil", "[a, b]".
std::string Text(const redisReply* r) {
  if (r == nullptr) return "(no reply)";
  switch (r->type) {
    case REDIS_REPLY_STATUS:
      return "+" + std::string(r->str, r->len);
    case REDIS_REPLY_ERROR:
      return "-" + std::string(r->str, r->len);
    case REDIS_REPLY_INTEGER:
      return ":" + std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "nil";
    case REDIS_REPLY_STRING:
      return "\"" + std::string(r->str, r->len) + "\"";
    case REDIS_REPLY_ARRAY: {
      std::string s = "[";
      for (size_t i = 0; i < r->elements; i++) {
        if (i > 0) s += ", ";
        s += Text(r->element[i]);
      }
      return s + "]";
    }
    default:
      return "(type " + std::to_string(r->type) + ")";
  }
}

std::string Run(redisContext* c, const std::vector<std::string>& argv) {
  return Text(Command(c, argv).get());
}

// Unix milliseconds on the clock the server judges expiry by
// (CLOCK_REALTIME).
int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Sends every command, then reads every reply: one round trip.
std::vector<Reply> Pipeline(redisContext* c, const std::vector<std::vector<std::string>>& cmds) {
  for (const auto& argv : cmds) {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data());
  }
  std::vector<Reply> replies;
  for (size_t i = 0; i < cmds.size(); i++) {
    void* r = nullptr;
    if (redisGetReply(c, &r) != REDIS_OK) break;
    replies.emplace_back(static_cast<redisReply*>(r));
  }
  return replies;
}

struct ScanResult {
  std::vector<std::string> keys;  // in the order returned, repeats included
  std::vector<uint64_t> cursors;  // every cursor the server returned
  std::string error;              // set if a reply was not a SCAN reply
};

// A full SCAN iteration from cursor 0 with the given options; before_call
// (if given) runs before each SCAN call.
ScanResult ScanAll(redisContext* c, const std::vector<std::string>& options,
                   const std::function<void()>& before_call = {}) {
  ScanResult result;
  std::string cursor = "0";
  auto deadline = Clock::now() + kClientTimeout;
  do {
    if (before_call) before_call();
    std::vector<std::string> argv = {"SCAN", cursor};
    argv.insert(argv.end(), options.begin(), options.end());
    Reply r = Command(c, argv);
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
      result.error = "SCAN " + cursor + ": " + Text(r.get());
      return result;
    }
    cursor.assign(r->element[0]->str, r->element[0]->len);
    char* end = nullptr;
    result.cursors.push_back(strtoull(cursor.c_str(), &end, 10));
    if (cursor.empty() || *end != '\0') {
      result.error = "cursor is not a decimal number: " + cursor;
      return result;
    }
    for (size_t i = 0; i < r->element[1]->elements; i++) {
      const redisReply* k = r->element[1]->element[i];
      result.keys.emplace_back(k->str, k->len);
    }
    if (Clock::now() > deadline) {
      result.error = "SCAN did not finish before the deadline";
      return result;
    }
  } while (cursor != "0");
  return result;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return s;
}

std::set<std::string> Sorted(const std::vector<std::string>& keys) {
  return std::set<std::string>(keys.begin(), keys.end());
}

// The keys of a KEYS or array reply.
std::vector<std::string> Strings(const redisReply* r) {
  std::vector<std::string> out;
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return out;
  for (size_t i = 0; i < r->elements; i++) out.emplace_back(r->element[i]->str, r->element[i]->len);
  return out;
}

// Parameterised by the number of worker processes, so that ctest names the
// tests "integration.keyspace_commands/KeyspaceTest.<Name>/workers2".
class KeyspaceTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    server_ = StartRedhubd({"--workers", std::to_string(GetParam()), "--maxmemory", "32mb"});
    ASSERT_NE(server_, nullptr);
    // One worker answering PING does not mean the master has seen every
    // worker start; a SIGTERM before that (a short test on a loaded
    // machine) has left workers running past the stop deadline.
    ASSERT_TRUE(server_->WaitForLogLine("Ready to accept connections"));
    c_ = Connect();
    ASSERT_NE(c_, nullptr);
  }

  Context Connect() {
    std::string error;
    Context c = ConnectHiredis(server_->port(), kTimeout, &error);
    EXPECT_NE(c, nullptr) << error;
    return c;
  }

  std::string Run(const std::vector<std::string>& argv) {
    return ::redhub::integration::Run(c_.get(), argv);
  }

  // SETs count keys named prefix + i with one round trip.
  void Fill(const std::string& prefix, int count) {
    std::vector<std::vector<std::string>> cmds;
    for (int i = 0; i < count; i++) cmds.push_back({"SET", prefix + std::to_string(i), "v"});
    auto replies = Pipeline(c_.get(), cmds);
    ASSERT_EQ(replies.size(), cmds.size());
    for (const auto& r : replies) ASSERT_EQ(Text(r.get()), "+OK");
  }

  std::unique_ptr<ServerProcess> server_;
  Context c_;
};

// ---- keyspace ----

TEST_P(KeyspaceTest, DelUnlinkExists) {
  Fill("k", 4);
  EXPECT_EQ(Run({"EXISTS", "k0"}), ":1");
  EXPECT_EQ(Run({"EXISTS", "nope"}), ":0");
  EXPECT_EQ(Run({"EXISTS", "k0", "k0", "k1", "nope"}), ":3");  // a repeated key counts twice
  EXPECT_EQ(Run({"DEL", "k0", "nope", "k0"}), ":1");
  EXPECT_EQ(Run({"EXISTS", "k0"}), ":0");
  EXPECT_EQ(Run({"UNLINK", "k1", "k2", "nope"}), ":2");
  EXPECT_EQ(Run({"EXISTS", "k1", "k2", "k3"}), ":1");
  EXPECT_EQ(Run({"del", "k3"}), ":1");
  EXPECT_EQ(Run({"DBSIZE"}), ":0");
  EXPECT_EQ(Run({"DEL"}), "-ERR wrong number of arguments for 'del' command");
  EXPECT_EQ(Run({"UNLINK"}), "-ERR wrong number of arguments for 'unlink' command");
  EXPECT_EQ(Run({"EXISTS"}), "-ERR wrong number of arguments for 'exists' command");
  // Binary-safe keys.
  std::string key("a\0b\r\n", 5);
  EXPECT_EQ(Run({"SET", key, "v"}), "+OK");
  EXPECT_EQ(Run({"EXISTS", key, "a"}), ":1");
  EXPECT_EQ(Run({"DEL", key}), ":1");
}

TEST_P(KeyspaceTest, TypeTouchAndKeyspaceStats) {
  EXPECT_EQ(Run({"SET", "s", "v"}), "+OK");
  EXPECT_EQ(Run({"TYPE", "s"}), "+string");
  EXPECT_EQ(Run({"TYPE", "nope"}), "+none");
  EXPECT_EQ(Run({"TOUCH", "s", "nope", "s"}), ":2");
  EXPECT_EQ(Run({"TOUCH", "nope"}), ":0");
  EXPECT_EQ(Run({"TYPE"}), "-ERR wrong number of arguments for 'type' command");
  EXPECT_EQ(Run({"TYPE", "a", "b"}), "-ERR wrong number of arguments for 'type' command");
  EXPECT_EQ(Run({"TOUCH"}), "-ERR wrong number of arguments for 'touch' command");

  // Read lookups count hits and misses as in Redis; write lookups do not.
  // (Only this connection reads, so INFO's sum over the workers is exact.)
  auto hits = InfoInt(c_.get(), "stats", "keyspace_hits");
  auto misses = InfoInt(c_.get(), "stats", "keyspace_misses");
  ASSERT_TRUE(hits && misses);
  EXPECT_EQ(Run({"EXISTS", "s", "nope"}), ":1");   // 1 hit, 1 miss
  EXPECT_EQ(Run({"TYPE", "s"}), "+string");        // hit
  EXPECT_EQ(Run({"TTL", "nope"}), ":-2");          // miss
  EXPECT_EQ(Run({"TOUCH", "s"}), ":1");            // hit
  EXPECT_EQ(Run({"EXPIRE", "nope", "10"}), ":0");  // write: not counted
  EXPECT_EQ(Run({"DEL", "nope"}), ":0");           // write: not counted
  EXPECT_EQ(InfoInt(c_.get(), "stats", "keyspace_hits"), *hits + 3);
  EXPECT_EQ(InfoInt(c_.get(), "stats", "keyspace_misses"), *misses + 2);
}

TEST_P(KeyspaceTest, Keys) {
  EXPECT_EQ(Run({"KEYS", "*"}), "[]");
  for (const char* k : {"hello", "hallo", "hxllo", "hllo", "heeeello", "h*llo", "other"}) {
    ASSERT_EQ(Run({"SET", k, "v"}), "+OK");
  }
  auto keys = [&](const std::string& pattern) {
    Reply r = Command(c_.get(), {"KEYS", pattern});
    EXPECT_NE(r, nullptr);
    EXPECT_EQ(r->type, REDIS_REPLY_ARRAY) << Text(r.get());
    std::vector<std::string> v = Strings(r.get());
    EXPECT_EQ(v.size(), Sorted(v).size()) << "KEYS " << pattern << " repeated a key";
    return Sorted(v);
  };
  using Set = std::set<std::string>;
  EXPECT_EQ(keys("*"), (Set{"hello", "hallo", "hxllo", "hllo", "heeeello", "h*llo", "other"}));
  EXPECT_EQ(keys("h?llo"), (Set{"hello", "hallo", "hxllo", "h*llo"}));
  EXPECT_EQ(keys("h*llo"), (Set{"hello", "hallo", "hxllo", "hllo", "heeeello", "h*llo"}));
  EXPECT_EQ(keys("h[ae]llo"), (Set{"hello", "hallo"}));
  EXPECT_EQ(keys("h[^e]llo"), (Set{"hallo", "hxllo", "h*llo"}));
  EXPECT_EQ(keys("h[a-b]llo"), (Set{"hallo"}));
  EXPECT_EQ(keys("h\\*llo"), (Set{"h*llo"}));
  EXPECT_EQ(keys("HELLO"), Set{});  // case-sensitive
  EXPECT_EQ(keys("other"), Set{"other"});
  EXPECT_EQ(keys("nomatch*"), Set{});
  EXPECT_EQ(Run({"KEYS"}), "-ERR wrong number of arguments for 'keys' command");
  EXPECT_EQ(Run({"KEYS", "a", "b"}), "-ERR wrong number of arguments for 'keys' command");

  // Many keys across every stripe, each exactly once.
  Fill("many:", 5000);
  std::set<std::string> many = keys("many:*");
  EXPECT_EQ(many.size(), 5000u);
  EXPECT_EQ(keys("*").size(), 5007u);
}

TEST_P(KeyspaceTest, ScanOptionsAndErrors) {
  // Empty store: one call, cursor 0.
  EXPECT_EQ(Run({"SCAN", "0"}), "[\"0\", []]");
  Fill("user:", 300);
  Fill("item:", 200);

  ScanResult all = ScanAll(c_.get(), {});
  ASSERT_EQ(all.error, "");
  std::set<std::string> expected;
  for (int i = 0; i < 300; i++) expected.insert("user:" + std::to_string(i));
  std::set<std::string> users = expected;
  for (int i = 0; i < 200; i++) expected.insert("item:" + std::to_string(i));
  EXPECT_EQ(Sorted(all.keys), expected);
  EXPECT_GT(all.cursors.size(), 1u);  // COUNT 10 by default: several calls

  // The cursor is the store's 64-bit (stripe << 32 | bucket) cursor.
  EXPECT_TRUE(std::any_of(all.cursors.begin(), all.cursors.end(),
                          [](uint64_t c) { return c > UINT32_MAX; }));

  ScanResult match = ScanAll(c_.get(), {"MATCH", "user:*", "COUNT", "7"});
  ASSERT_EQ(match.error, "");
  EXPECT_EQ(Sorted(match.keys), users);
  ScanResult one = ScanAll(c_.get(), {"match", "user:1?", "count", "1000000"});
  ASSERT_EQ(one.error, "");
  EXPECT_EQ(one.cursors.size(), 1u);  // a COUNT above the key count finishes at once
  std::set<std::string> tens;
  for (int i = 10; i < 20; i++) tens.insert("user:" + std::to_string(i));
  EXPECT_EQ(Sorted(one.keys), tens);

  // TYPE: every key is a string; any other type name matches nothing.
  ScanResult strings = ScanAll(c_.get(), {"TYPE", "string", "MATCH", "item:*", "COUNT", "50"});
  ASSERT_EQ(strings.error, "");
  EXPECT_EQ(Sorted(strings.keys).size(), 200u);
  ScanResult upper = ScanAll(c_.get(), {"TYPE", "STRING"});
  ASSERT_EQ(upper.error, "");
  EXPECT_EQ(Sorted(upper.keys), expected);
  for (const char* type : {"list", "hash", "nosuchtype"}) {
    ScanResult none = ScanAll(c_.get(), {"TYPE", type});
    ASSERT_EQ(none.error, "");
    EXPECT_TRUE(none.keys.empty()) << type;
  }
  // A later option replaces an earlier one, as in Redis.
  ScanResult twice = ScanAll(c_.get(), {"MATCH", "user:*", "MATCH", "item:1*"});
  ASSERT_EQ(twice.error, "");
  EXPECT_EQ(Sorted(twice.keys).size(), 111u);  // item:1, item:10..19, item:100..199

  // Cursors are parsed like Redis's strtoul: a sign is allowed, blanks and
  // trailing bytes are not.
  for (const char* bad : {"abc", " 1", "1 ", "1x", "18446744073709551616", "0.5"}) {
    EXPECT_EQ(Run({"SCAN", bad}), "-ERR invalid cursor") << bad;
  }
  for (const char* odd : {"-1", "+0", "18446744073709551615"}) {
    Reply r = Command(c_.get(), {"SCAN", odd});
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->type, REDIS_REPLY_ARRAY) << odd << ": " << Text(r.get());
  }
  // A cursor past the last stripe ends the iteration.
  EXPECT_EQ(Run({"SCAN", "18446744073709551615"}), "[\"0\", []]");

  EXPECT_EQ(Run({"SCAN", "0", "COUNT", "0"}), "-ERR syntax error");
  EXPECT_EQ(Run({"SCAN", "0", "COUNT", "-1"}), "-ERR syntax error");
  EXPECT_EQ(Run({"SCAN", "0", "COUNT", "x"}), "-ERR value is not an integer or out of range");
  EXPECT_EQ(Run({"SCAN", "0", "MATCH"}), "-ERR syntax error");
  EXPECT_EQ(Run({"SCAN", "0", "COUNT"}), "-ERR syntax error");
  EXPECT_EQ(Run({"SCAN", "0", "TYPE"}), "-ERR syntax error");
  EXPECT_EQ(Run({"SCAN", "0", "FOO", "bar"}), "-ERR syntax error");
  EXPECT_EQ(Run({"SCAN"}), "-ERR wrong number of arguments for 'scan' command");
  // The cursor is checked before the options.
  EXPECT_EQ(Run({"SCAN", "x", "COUNT", "0"}), "-ERR invalid cursor");
}

// A full iteration returns every key present throughout, even while another
// client (on either worker) adds 10k keys that make the stripes' tables grow
// and rehash; MATCH never lets another key through. The writer is paced by
// the scanner, one batch of 50 SETs per SCAN call (sent while that call
// runs, and done before the next), so the keys are added throughout the
// first iteration however the threads are scheduled.
TEST_P(KeyspaceTest, ScanWhileAnotherClientAddsKeys) {
  constexpr int kOld = 3000;
  constexpr int kNew = 10000;
  constexpr int kBatch = 50;
  Fill("old:", kOld);
  std::set<std::string> old_keys;
  for (int i = 0; i < kOld; i++) old_keys.insert("old:" + std::to_string(i));

  std::atomic<int> calls_started{0};
  std::atomic<int> batches_done{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> writer_done{false};
  std::string writer_error;  // read after join
  std::thread writer([&] {
    Context w = Connect();
    for (int b = 0; w != nullptr && b < kNew / kBatch && writer_error.empty(); b++) {
      if (!WaitUntil([&] { return calls_started > b || stop; }) || stop) {
        writer_error = "the scanner stopped calling SCAN";
        break;
      }
      std::vector<std::vector<std::string>> cmds;
      for (int i = b * kBatch; i < (b + 1) * kBatch; i++) {
        cmds.push_back({"SET", "new:" + std::to_string(i), "v"});
      }
      for (const auto& r : Pipeline(w.get(), cmds)) {
        if (Text(r.get()) != "+OK") writer_error = "SET: " + Text(r.get());
      }
      batches_done++;
    }
    if (w == nullptr) writer_error = "no connection";
    writer_done = true;
  });
  int call = 0;
  std::string failure;
  auto before_call = [&] {
    // Call i starts once batch i-1 is done; batch i runs alongside it.
    if (!writer_done && !WaitUntil([&] { return batches_done >= call || writer_done; })) {
      failure = "the writer stalled; ";
    }
    calls_started = ++call;
  };

  // Full iterations until the writer is done, at least two; failures end
  // the loop rather than the test, so that the writer is always joined.
  int iterations = 0;
  int written_in_first = 0;
  do {
    const int before = batches_done;
    ScanResult all = ScanAll(c_.get(), {"COUNT", "20"}, before_call);
    if (iterations == 0) written_in_first = (batches_done - before) * kBatch;
    ScanResult old = ScanAll(c_.get(), {"MATCH", "old:*", "COUNT", "15"}, before_call);
    iterations++;
    if (!all.error.empty() || !old.error.empty()) {
      failure += all.error + old.error;
      break;
    }
    std::set<std::string> seen = Sorted(all.keys);
    for (const auto& k : old_keys) {
      if (!seen.count(k)) failure += "SCAN COUNT 20 missed " + k + "; ";
    }
    for (const auto& k : seen) {
      if (!k.starts_with("old:") && !k.starts_with("new:")) failure += "unexpected " + k + "; ";
    }
    if (Sorted(old.keys) != old_keys) {
      failure += "SCAN MATCH old:* COUNT 15 returned " + std::to_string(Sorted(old.keys).size()) +
                 " distinct keys, not exactly the " + std::to_string(kOld) + " old ones; ";
    }
  } while (failure.empty() && (!writer_done || iterations < 2));
  stop = true;
  writer.join();
  EXPECT_EQ(failure, "") << "in iteration " << iterations;
  EXPECT_EQ(writer_error, "");
  // The first iteration (>= 150 calls) ran while at least 100 batches went in.
  EXPECT_GE(written_in_first, 100 * kBatch);
  RecordProperty("scan_iterations", iterations);
  RecordProperty("written_during_first", written_in_first);

  // Afterwards, nothing moves: a full iteration sees exactly every key.
  ScanResult final_scan = ScanAll(c_.get(), {"MATCH", "*", "COUNT", "100"});
  ASSERT_EQ(final_scan.error, "");
  EXPECT_EQ(Sorted(final_scan.keys).size(), static_cast<size_t>(kOld + kNew));
  EXPECT_EQ(Run({"DBSIZE"}), ":" + std::to_string(kOld + kNew));
}

TEST_P(KeyspaceTest, RandomKey) {
  EXPECT_EQ(Run({"RANDOMKEY"}), "nil");
  EXPECT_EQ(Run({"SET", "only", "v"}), "+OK");
  EXPECT_EQ(Run({"RANDOMKEY"}), "\"only\"");
  Fill("r", 100);
  std::set<std::string> seen;
  for (int i = 0; i < 200; i++) {
    Reply r = Command(c_.get(), {"RANDOMKEY"});
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(r->type, REDIS_REPLY_STRING) << Text(r.get());
    std::string k(r->str, r->len);
    EXPECT_TRUE(k == "only" || (k[0] == 'r' && atoi(k.c_str() + 1) < 100)) << k;
    seen.insert(k);
  }
  EXPECT_GT(seen.size(), 1u);  // not always the same key
  EXPECT_EQ(Run({"RANDOMKEY", "x"}), "-ERR wrong number of arguments for 'randomkey' command");
}

TEST_P(KeyspaceTest, RenameAndRenameNx) {
  EXPECT_EQ(Run({"RENAME", "nope", "b"}), "-ERR no such key");
  EXPECT_EQ(Run({"RENAMENX", "nope", "b"}), "-ERR no such key");
  EXPECT_EQ(Run({"RENAME", "nope", "nope"}), "-ERR no such key");
  EXPECT_EQ(Run({"RENAMENX", "nope", "nope"}), "-ERR no such key");

  EXPECT_EQ(Run({"SET", "a", "va"}), "+OK");
  EXPECT_EQ(Run({"RENAME", "a", "b"}), "+OK");
  EXPECT_EQ(Run({"GET", "a"}), "nil");
  EXPECT_EQ(Run({"GET", "b"}), "\"va\"");
  EXPECT_EQ(Run({"TTL", "b"}), ":-1");

  // Onto an existing key: replaced, and the source's TTL (none) wins.
  EXPECT_EQ(Run({"SET", "c", "vc"}), "+OK");
  EXPECT_EQ(Run({"EXPIRE", "c", "1000"}), ":1");
  EXPECT_EQ(Run({"RENAME", "b", "c"}), "+OK");
  EXPECT_EQ(Run({"GET", "c"}), "\"va\"");
  EXPECT_EQ(Run({"TTL", "c"}), ":-1");
  EXPECT_EQ(Run({"EXISTS", "b"}), ":0");

  // The expire time moves with the key.
  const int64_t at = WallMs() + 3'600'000;
  EXPECT_EQ(Run({"PEXPIREAT", "c", std::to_string(at)}), ":1");
  EXPECT_EQ(Run({"RENAME", "c", "d"}), "+OK");
  EXPECT_EQ(Run({"PEXPIRETIME", "d"}), ":" + std::to_string(at));
  EXPECT_EQ(Run({"SET", "e", "ve"}), "+OK");
  EXPECT_EQ(Run({"RENAMENX", "d", "f"}), ":1");
  EXPECT_EQ(Run({"PEXPIRETIME", "f"}), ":" + std::to_string(at));

  // RENAMENX onto an existing key changes nothing.
  EXPECT_EQ(Run({"RENAMENX", "f", "e"}), ":0");
  EXPECT_EQ(Run({"GET", "e"}), "\"ve\"");
  EXPECT_EQ(Run({"GET", "f"}), "\"va\"");

  // Onto itself: OK / 0, the key untouched, its TTL kept.
  EXPECT_EQ(Run({"RENAME", "f", "f"}), "+OK");
  EXPECT_EQ(Run({"RENAMENX", "f", "f"}), ":0");
  EXPECT_EQ(Run({"GET", "f"}), "\"va\"");
  EXPECT_EQ(Run({"PEXPIRETIME", "f"}), ":" + std::to_string(at));

  // Binary keys and a large value (its own page run in the store).
  std::string src("s\0rc", 4), dst("d\0st\r\n", 6), big(200000, 'x');
  big[12345] = '\0';
  ASSERT_EQ(Run({"SET", src, big}), "+OK");
  EXPECT_EQ(Run({"RENAME", src, dst}), "+OK");
  Reply got = Command(c_.get(), {"GET", dst});
  ASSERT_NE(got, nullptr);
  ASSERT_EQ(got->type, REDIS_REPLY_STRING);
  EXPECT_EQ(std::string(got->str, got->len), big);
  EXPECT_EQ(Run({"EXISTS", src}), ":0");

  EXPECT_EQ(Run({"RENAME", "a"}), "-ERR wrong number of arguments for 'rename' command");
  EXPECT_EQ(Run({"RENAMENX", "a", "b", "c"}),
            "-ERR wrong number of arguments for 'renamenx' command");
  EXPECT_EQ(Run({"DBSIZE"}), ":3");  // e, f, dst
}

// RENAMENX holds both keys' stripes, so a token passed around by clients on
// both workers is never duplicated or lost: taking it either succeeds or
// finds no token, and giving it back always succeeds.
TEST_P(KeyspaceTest, RenameIsAtomicAcrossClients) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 400;
  ASSERT_EQ(Run({"SET", "token", "the-value"}), "+OK");
  std::atomic<int> taken{0};
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      Context c = Connect();
      if (c == nullptr) {
        failures[t] = "connect failed";
        return;
      }
      std::string mine = "held:" + std::to_string(t);
      for (int i = 0; i < kRounds && failures[t].empty(); i++) {
        std::string take = ::redhub::integration::Run(c.get(), {"RENAMENX", "token", mine});
        if (take == ":1") {
          taken++;
          std::string back = ::redhub::integration::Run(c.get(), {"RENAME", mine, "token"});
          if (back != "+OK") failures[t] = "giving back: " + back;
        } else if (take != "-ERR no such key") {
          failures[t] = "taking: " + take;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; t++) EXPECT_EQ(failures[t], "") << "thread " << t;
  EXPECT_GT(taken.load(), 0);
  EXPECT_EQ(Run({"DBSIZE"}), ":1");
  EXPECT_EQ(Run({"GET", "token"}), "\"the-value\"");
}

TEST_P(KeyspaceTest, DbsizeFlushdbFlushall) {
  EXPECT_EQ(Run({"DBSIZE"}), ":0");
  Fill("f", 1000);
  EXPECT_EQ(Run({"DBSIZE"}), ":1000");
  for (const std::vector<std::string>& flush :
       std::vector<std::vector<std::string>>{{"FLUSHALL"},
                                             {"FLUSHDB"},
                                             {"FLUSHALL", "SYNC"},
                                             {"FLUSHALL", "async"},
                                             {"flushdb", "ASYNC"},
                                             {"FLUSHDB", "sync"}}) {
    Fill("f", 100);
    EXPECT_EQ(Run(flush), "+OK") << flush[0];
    EXPECT_EQ(Run({"DBSIZE"}), ":0") << flush[0];
    EXPECT_EQ(Run({"RANDOMKEY"}), "nil");
  }
  EXPECT_EQ(Run({"FLUSHALL", "SYNC", "ASYNC"}), "-ERR syntax error");
  EXPECT_EQ(Run({"FLUSHALL", "foo"}), "-ERR syntax error");
  EXPECT_EQ(Run({"FLUSHDB", "ASYNC", "x"}), "-ERR syntax error");
  EXPECT_EQ(Run({"DBSIZE", "x"}), "-ERR wrong number of arguments for 'dbsize' command");
  // A flush is seen by clients of the other worker too.
  Fill("g", 10);
  std::vector<Context> others;
  for (int i = 0; i < 4; i++) others.push_back(Connect());
  EXPECT_EQ(Run({"FLUSHALL"}), "+OK");
  for (auto& o : others) EXPECT_EQ(::redhub::integration::Run(o.get(), {"DBSIZE"}), ":0");
}

// ---- expiry ----

TEST_P(KeyspaceTest, ExpireConditions) {
  // Missing key: 0, for every form.
  for (const char* cmd : {"EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"}) {
    EXPECT_EQ(Run({cmd, "nope", "100"}), ":0") << cmd;
  }
  ASSERT_EQ(Run({"SET", "k", "v"}), "+OK");
  // No TTL yet: XX and GT fail, NX and LT succeed (no TTL is infinite).
  EXPECT_EQ(Run({"EXPIRE", "k", "100", "XX"}), ":0");
  EXPECT_EQ(Run({"EXPIRE", "k", "100", "GT"}), ":0");
  EXPECT_EQ(Run({"TTL", "k"}), ":-1");
  EXPECT_EQ(Run({"EXPIRE", "k", "100", "LT"}), ":1");
  EXPECT_EQ(Run({"PERSIST", "k"}), ":1");
  EXPECT_EQ(Run({"EXPIRE", "k", "100", "nx"}), ":1");
  EXPECT_EQ(Run({"EXPIRE", "k", "200", "NX"}), ":0");  // has a TTL now
  const int64_t t1 = WallMs() + 1'000'000;
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1), "XX"}), ":1");
  EXPECT_EQ(Run({"PEXPIRETIME", "k"}), ":" + std::to_string(t1));
  // GT: only a later time; LT: only an earlier one; equal is neither.
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1 - 1), "GT"}), ":0");
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1), "GT"}), ":0");
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1 + 1), "gt"}), ":1");
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1 + 1), "LT"}), ":0");
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1 + 2), "LT"}), ":0");
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1), "lt"}), ":1");
  EXPECT_EQ(Run({"PEXPIRETIME", "k"}), ":" + std::to_string(t1));
  // XX combines with GT or LT.
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1 + 5), "XX", "GT"}), ":1");
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1 + 9), "XX", "LT"}), ":0");
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1 + 3), "LT", "XX"}), ":1");
  EXPECT_EQ(Run({"PEXPIRETIME", "k"}), ":" + std::to_string(t1 + 3));
  // Repeated flags are allowed.
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(t1 + 4), "GT", "GT"}), ":1");
  // The relative forms, in seconds and milliseconds.
  EXPECT_EQ(Run({"EXPIRE", "k", "500", "LT"}), ":1");
  Reply ttl = Command(c_.get(), {"TTL", "k"});
  ASSERT_NE(ttl, nullptr);
  EXPECT_TRUE(ttl->integer > 400 && ttl->integer <= 500) << Text(ttl.get());
  EXPECT_EQ(Run({"PEXPIRE", "k", "300000", "LT"}), ":1");
  Reply pttl = Command(c_.get(), {"PTTL", "k"});
  ASSERT_NE(pttl, nullptr);
  EXPECT_TRUE(pttl->integer > 200000 && pttl->integer <= 300000) << Text(pttl.get());
  const int64_t secs = WallMs() / 1000 + 7200;
  EXPECT_EQ(Run({"EXPIREAT", "k", std::to_string(secs)}), ":1");
  EXPECT_EQ(Run({"EXPIRETIME", "k"}), ":" + std::to_string(secs));
  EXPECT_EQ(Run({"PEXPIRETIME", "k"}), ":" + std::to_string(secs * 1000));
}

TEST_P(KeyspaceTest, ExpireInThePastDeletes) {
  const std::vector<std::vector<std::string>> past = {
      {"EXPIRE", "k", "0"},        {"EXPIRE", "k", "-10"},
      {"PEXPIRE", "k", "0"},       {"PEXPIRE", "k", "-1"},
      {"EXPIREAT", "k", "1"},      {"EXPIREAT", "k", "-5"},
      {"PEXPIREAT", "k", "0"},     {"PEXPIREAT", "k", std::to_string(WallMs() - 1000)},
      {"EXPIRE", "k", "-1", "LT"}, {"EXPIRE", "k", "-1", "NX"},
  };
  for (const auto& cmd : past) {
    ASSERT_EQ(Run({"SET", "k", "v"}), "+OK");
    EXPECT_EQ(Run(cmd), ":1") << cmd[0] << " " << cmd[2];
    EXPECT_EQ(Run({"EXISTS", "k"}), ":0") << cmd[0] << " " << cmd[2];
    EXPECT_EQ(Run({"DBSIZE"}), ":0") << cmd[0] << " " << cmd[2];
  }
  // A failed condition deletes nothing, even with a time in the past.
  ASSERT_EQ(Run({"SET", "k", "v"}), "+OK");
  EXPECT_EQ(Run({"EXPIRE", "k", "-1", "GT"}), ":0");
  EXPECT_EQ(Run({"EXPIRE", "k", "-1", "XX"}), ":0");
  EXPECT_EQ(Run({"EXISTS", "k"}), ":1");
}

TEST_P(KeyspaceTest, ExpireErrors) {
  ASSERT_EQ(Run({"SET", "k", "v"}), "+OK");
  for (const char* cmd : {"EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"}) {
    SCOPED_TRACE(cmd);
    for (const auto& flags : std::vector<std::vector<std::string>>{
             {"NX", "XX"}, {"NX", "GT"}, {"nx", "lt"}, {"XX", "NX"}, {"GT", "NX", "XX"}}) {
      std::vector<std::string> argv = {cmd, "k", "100"};
      argv.insert(argv.end(), flags.begin(), flags.end());
      EXPECT_EQ(Run(argv), "-ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    EXPECT_EQ(Run({cmd, "k", "100", "GT", "LT"}),
              "-ERR GT and LT options at the same time are not compatible");
    EXPECT_EQ(Run({cmd, "k", "100", "XX", "lt", "gt"}),
              "-ERR GT and LT options at the same time are not compatible");
    EXPECT_EQ(Run({cmd, "k", "100", "foo"}), "-ERR Unsupported option foo");
    EXPECT_EQ(Run({cmd, "k", "100", "NX", "Bar"}), "-ERR Unsupported option Bar");
    // Options are checked before the time.
    EXPECT_EQ(Run({cmd, "k", "x", "NX", "XX"}),
              "-ERR NX and XX, GT or LT options at the same time are not compatible");
    for (const char* bad : {"x", "1.5", "", " 1", "1 ", "+1", "9223372036854775808"}) {
      EXPECT_EQ(Run({cmd, "k", bad}), "-ERR value is not an integer or out of range") << bad;
    }
    EXPECT_EQ(Run({cmd, "k"}), "-ERR wrong number of arguments for '" + Lower(cmd) + "' command");
  }
  // Overflow of the unit conversion or of the addition to now.
  EXPECT_EQ(Run({"EXPIRE", "k", "9223372036854775807"}),
            "-ERR invalid expire time in 'expire' command");
  EXPECT_EQ(Run({"EXPIRE", "k", "-9223372036854775807"}),
            "-ERR invalid expire time in 'expire' command");
  EXPECT_EQ(Run({"EXPIRE", "k", "9223372036854775"}),  // fits in ms, not once now is added
            "-ERR invalid expire time in 'expire' command");
  EXPECT_EQ(Run({"PEXPIRE", "k", "9223372036854775807"}),
            "-ERR invalid expire time in 'pexpire' command");
  EXPECT_EQ(Run({"EXPIREAT", "k", "9223372036854775807"}),
            "-ERR invalid expire time in 'expireat' command");
  EXPECT_EQ(Run({"expireat", "k", "-9223372036854776"}),
            "-ERR invalid expire time in 'expireat' command");
  EXPECT_EQ(Run({"TTL", "k"}), ":-1");  // nothing changed
  // PEXPIREAT takes any int64; EXPIREAT the largest seconds that fit.
  EXPECT_EQ(Run({"PEXPIREAT", "k", "9223372036854775807"}), ":1");
  EXPECT_EQ(Run({"PEXPIRETIME", "k"}), ":9223372036854775807");
  EXPECT_EQ(Run({"EXPIRETIME", "k"}), ":9223372036854776");  // rounded, as Redis prints it
  EXPECT_EQ(Run({"EXPIREAT", "k", "9223372036854775"}), ":1");
  EXPECT_EQ(Run({"EXPIRETIME", "k"}), ":9223372036854775");
}

TEST_P(KeyspaceTest, TtlFamilyAndPersist) {
  for (const char* cmd : {"TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"}) {
    EXPECT_EQ(Run({cmd, "nope"}), ":-2") << cmd;
  }
  ASSERT_EQ(Run({"SET", "k", "v"}), "+OK");
  for (const char* cmd : {"TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"}) {
    EXPECT_EQ(Run({cmd, "k"}), ":-1") << cmd;
    EXPECT_EQ(Run({cmd}), "-ERR wrong number of arguments for '" + Lower(cmd) + "' command");
  }
  // EXPIRETIME rounds to the nearest second, as TTL does.
  const int64_t base = (WallMs() / 1000 + 100000) * 1000;
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(base + 499)}), ":1");
  EXPECT_EQ(Run({"EXPIRETIME", "k"}), ":" + std::to_string(base / 1000));
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(base + 500)}), ":1");
  EXPECT_EQ(Run({"EXPIRETIME", "k"}), ":" + std::to_string(base / 1000 + 1));
  EXPECT_EQ(Run({"PEXPIRETIME", "k"}), ":" + std::to_string(base + 500));
  // TTL and PTTL count down from the expire time.
  const int64_t before = WallMs();
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(before + 100'000'000)}), ":1");
  Reply pttl = Command(c_.get(), {"PTTL", "k"});
  ASSERT_NE(pttl, nullptr);
  const int64_t after = WallMs();
  EXPECT_GE(pttl->integer, before + 100'000'000 - after);
  EXPECT_LE(pttl->integer, 100'000'000);
  Reply ttl = Command(c_.get(), {"TTL", "k"});
  ASSERT_NE(ttl, nullptr);
  EXPECT_GE(ttl->integer, 99'990);
  EXPECT_LE(ttl->integer, 100'000);

  EXPECT_EQ(Run({"PERSIST", "k"}), ":1");
  EXPECT_EQ(Run({"PERSIST", "k"}), ":0");  // no TTL left to remove
  EXPECT_EQ(Run({"TTL", "k"}), ":-1");
  EXPECT_EQ(Run({"PEXPIRETIME", "k"}), ":-1");
  EXPECT_EQ(Run({"PERSIST", "nope"}), ":0");
  EXPECT_EQ(Run({"PERSIST"}), "-ERR wrong number of arguments for 'persist' command");
  EXPECT_EQ(Run({"PERSIST", "a", "b"}), "-ERR wrong number of arguments for 'persist' command");
  EXPECT_EQ(Run({"GET", "k"}), "\"v\"");
}

// Keys with 100 ms TTLs disappear from DBSIZE through active expiry alone:
// nobody reads them. DBSIZE is asked on other connections (either worker).
TEST_P(KeyspaceTest, ActiveExpiryRemovesUnreadKeys) {
  constexpr int kVolatile = 2000;
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < kVolatile; i++) {
    std::string key = "vol:" + std::to_string(i);
    cmds.push_back({"SET", key, "v"});
    cmds.push_back({"PEXPIRE", key, "100"});
  }
  for (int i = 0; i < 10; i++) cmds.push_back({"SET", "keep:" + std::to_string(i), "v"});
  auto replies = Pipeline(c_.get(), cmds);
  ASSERT_EQ(replies.size(), cmds.size());
  for (size_t i = 0; i < replies.size(); i++) {
    ASSERT_EQ(Text(replies[i].get()), cmds[i][0] == "SET" ? "+OK" : ":1") << i;
  }
  auto expired_before = InfoInt(c_.get(), "stats", "expired_keys");
  ASSERT_TRUE(expired_before.has_value());

  std::vector<Context> observers;
  for (int i = 0; i < 3; i++) observers.push_back(Connect());
  std::string last;
  bool gone = WaitUntil(
      [&] {
        for (auto& o : observers) {
          last = ::redhub::integration::Run(o.get(), {"DBSIZE"});
          if (last != ":10") return false;
        }
        return true;
      },
      kExpiryDeadline);
  EXPECT_TRUE(gone) << "DBSIZE still " << last;
  auto expired_after = InfoInt(c_.get(), "stats", "expired_keys");
  ASSERT_TRUE(expired_after.has_value());
  EXPECT_GE(*expired_after - *expired_before, kVolatile);
  EXPECT_EQ(Run({"EXISTS", "keep:0", "keep:9"}), ":2");
}

// Once a key's expire time has passed, no command returns it: GET, EXISTS,
// TYPE, TTL, TOUCH, KEYS, SCAN, RANDOMKEY, RENAME, EXPIRE, PERSIST. The
// check is against the wall clock read before each request was sent, which
// the server's clock (the same CLOCK_REALTIME) can only be later than.
TEST_P(KeyspaceTest, ExpiredKeysAreNeverReturned) {
  constexpr int kKeys = 40;
  std::vector<std::vector<std::string>> setup;
  for (int i = 0; i < kKeys; i++) {
    std::string key = "ttl:" + std::to_string(i);
    setup.push_back({"SET", key, "v"});
    setup.push_back({"PEXPIRE", key, std::to_string(100 + 5 * i)});
    setup.push_back({"PEXPIRETIME", key});
  }
  auto replies = Pipeline(c_.get(), setup);
  ASSERT_EQ(replies.size(), setup.size());
  std::map<std::string, int64_t> expire_at;
  for (int i = 0; i < kKeys; i++) {
    const redisReply* at = replies[3 * i + 2].get();
    ASSERT_EQ(at->type, REDIS_REPLY_INTEGER) << Text(at);
    ASSERT_GT(at->integer, 0);
    expire_at["ttl:" + std::to_string(i)] = at->integer;
  }
  int64_t max_expiry = 0;
  for (const auto& [k, at] : expire_at) max_expiry = std::max(max_expiry, at);

  Context other = Connect();  // maybe the other worker
  ASSERT_NE(other, nullptr);
  int rounds = 0;
  auto deadline = Clock::now() + kExpiryDeadline;
  // Until every key has expired and been seen gone by every kind of read.
  for (bool all_gone = false; !all_gone;) {
    ASSERT_LT(Clock::now(), deadline) << "keys still visible after their expiry";
    rounds++;
    all_gone = WallMs() > max_expiry;
    redisContext* c = rounds % 2 == 0 ? c_.get() : other.get();

    // Per-key reads, pipelined.
    std::vector<std::vector<std::string>> cmds;
    for (const auto& [key, at] : expire_at) {
      cmds.push_back({"GET", key});
      cmds.push_back({"EXISTS", key});
      cmds.push_back({"TYPE", key});
      cmds.push_back({"PTTL", key});
      cmds.push_back({"TOUCH", key});
    }
    // t0 and t1 bound the server's clock from below and above.
    const int64_t t0 = WallMs();
    auto got = Pipeline(c, cmds);
    const int64_t t1 = WallMs();
    ASSERT_EQ(got.size(), cmds.size());
    size_t i = 0;
    for (const auto& [key, at] : expire_at) {
      const bool expired = at <= t0;
      std::string get = Text(got[i++].get()), exists = Text(got[i++].get()),
                  type = Text(got[i++].get()), pttl = Text(got[i++].get()),
                  touch = Text(got[i++].get());
      if (expired) {
        EXPECT_EQ(get, "nil") << key;
        EXPECT_EQ(exists, ":0") << key;
        EXPECT_EQ(type, "+none") << key;
        EXPECT_EQ(pttl, ":-2") << key;
        EXPECT_EQ(touch, ":0") << key;
      }
      if (at > t1) {
        EXPECT_EQ(get, "\"v\"") << key << " went before its time";
      }
      if (get != "nil") all_gone = false;
    }
    // Whole-keyspace reads.
    int64_t t2 = WallMs();
    Reply keys = Command(c, {"KEYS", "ttl:*"});
    ASSERT_NE(keys, nullptr);
    for (const auto& k : Strings(keys.get())) {
      EXPECT_GT(expire_at[k], t2) << "KEYS returned expired " << k;
    }
    t2 = WallMs();
    ScanResult scan = ScanAll(c, {"COUNT", "5"});
    ASSERT_EQ(scan.error, "");
    for (const auto& k : scan.keys) EXPECT_GT(expire_at[k], t2) << "SCAN returned expired " << k;
    t2 = WallMs();
    Reply random = Command(c, {"RANDOMKEY"});
    ASSERT_NE(random, nullptr);
    if (random->type == REDIS_REPLY_STRING) {
      std::string k(random->str, random->len);
      EXPECT_GT(expire_at[k], t2) << "RANDOMKEY returned expired " << k;
    }
    // Writes that need the key to exist.
    for (const auto& [key, at] : expire_at) {
      if (at > WallMs()) continue;  // only keys expired before the requests are sent
      EXPECT_EQ(::redhub::integration::Run(c, {"PERSIST", key}), ":0") << key;
      EXPECT_EQ(::redhub::integration::Run(c, {"EXPIRE", key, "100"}), ":0") << key;
      EXPECT_EQ(::redhub::integration::Run(c, {"RENAME", key, "renamed"}), "-ERR no such key")
          << key;
    }
  }
  EXPECT_EQ(Run({"EXISTS", "renamed"}), ":0");
  EXPECT_TRUE(WaitUntil([&] { return Run({"DBSIZE"}) == ":0"; }, kExpiryDeadline));
  RecordProperty("rounds", rounds);
}

// Arity, flags and key positions as Redis 7.0's COMMAND INFO.
TEST_P(KeyspaceTest, CommandInfo) {
  struct Row {
    const char* name;
    int arity;
    std::vector<std::string> flags;
    int first, last, step;
  };
  const Row rows[] = {
      {"del", -2, {"write"}, 1, -1, 1},
      {"unlink", -2, {"write", "fast"}, 1, -1, 1},
      {"exists", -2, {"readonly", "fast"}, 1, -1, 1},
      {"type", 2, {"readonly", "fast"}, 1, 1, 1},
      {"keys", 2, {"readonly"}, 0, 0, 0},
      {"scan", -2, {"readonly"}, 0, 0, 0},
      {"randomkey", 1, {"readonly"}, 0, 0, 0},
      {"rename", 3, {"write"}, 1, 2, 1},
      {"renamenx", 3, {"write", "fast"}, 1, 2, 1},
      {"dbsize", 1, {"readonly", "fast"}, 0, 0, 0},
      {"flushdb", -1, {"write"}, 0, 0, 0},
      {"flushall", -1, {"write"}, 0, 0, 0},
      {"touch", -2, {"readonly", "fast"}, 1, -1, 1},
      {"expire", -3, {"write", "fast"}, 1, 1, 1},
      {"pexpire", -3, {"write", "fast"}, 1, 1, 1},
      {"expireat", -3, {"write", "fast"}, 1, 1, 1},
      {"pexpireat", -3, {"write", "fast"}, 1, 1, 1},
      {"ttl", 2, {"readonly", "fast"}, 1, 1, 1},
      {"pttl", 2, {"readonly", "fast"}, 1, 1, 1},
      {"expiretime", 2, {"readonly", "fast"}, 1, 1, 1},
      {"pexpiretime", 2, {"readonly", "fast"}, 1, 1, 1},
      {"persist", 2, {"write", "fast"}, 1, 1, 1},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    Reply r = Command(c_.get(), {"COMMAND", "INFO", row.name});
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY) << Text(r.get());
    ASSERT_EQ(r->elements, 1u);
    const redisReply* info = r->element[0];
    ASSERT_EQ(info->type, REDIS_REPLY_ARRAY) << Text(r.get());
    ASSERT_GE(info->elements, 6u);
    EXPECT_EQ(Text(info->element[0]), "\"" + std::string(row.name) + "\"");
    EXPECT_EQ(info->element[1]->integer, row.arity);
    std::vector<std::string> flags;
    for (size_t i = 0; i < info->element[2]->elements; i++) {
      flags.emplace_back(info->element[2]->element[i]->str, info->element[2]->element[i]->len);
    }
    EXPECT_EQ(flags, row.flags);
    EXPECT_EQ(info->element[3]->integer, row.first);
    EXPECT_EQ(info->element[4]->integer, row.last);
    EXPECT_EQ(info->element[5]->integer, row.step);
  }
}

// RESP3 byte for byte: the null of RANDOMKEY is "_", everything else is
// encoded as in RESP2.
TEST_P(KeyspaceTest, Resp3Replies) {
  Socket s = Socket::Connect(server_->port());
  ASSERT_TRUE(s.valid());
  // This hiredis predates RESP3: read HELLO's map up to its known last field.
  ASSERT_TRUE(s.SendAll(FormatCommand({"HELLO", "3"})));
  std::string hello = s.RecvUntil("$7\r\nmodules\r\n*0\r\n");
  ASSERT_TRUE(hello.starts_with("%7\r\n")) << hello;
  auto expect_raw = [&](const std::vector<std::string>& argv, const std::string& expected) {
    ASSERT_TRUE(s.SendAll(FormatCommand(argv)));
    EXPECT_EQ(s.RecvN(expected.size()), expected) << argv[0];
  };
  expect_raw({"RANDOMKEY"}, "_\r\n");
  expect_raw({"SCAN", "0"}, "*2\r\n$1\r\n0\r\n*0\r\n");
  expect_raw({"KEYS", "*"}, "*0\r\n");
  expect_raw({"TYPE", "k"}, "+none\r\n");
  expect_raw({"SET", "k", "v"}, "+OK\r\n");
  expect_raw({"TYPE", "k"}, "+string\r\n");
  expect_raw({"RANDOMKEY"}, "$1\r\nk\r\n");
  expect_raw({"TTL", "k"}, ":-1\r\n");
  expect_raw({"EXPIREAT", "k", "99999999999"}, ":1\r\n");
  expect_raw({"EXPIRETIME", "k"}, ":99999999999\r\n");
  expect_raw({"PERSIST", "k"}, ":1\r\n");
  expect_raw({"RENAME", "k", "k2"}, "+OK\r\n");
  expect_raw({"RENAME", "k", "k3"}, "-ERR no such key\r\n");
  expect_raw({"SCAN", "0", "COUNT", "100"}, "*2\r\n$1\r\n0\r\n*1\r\n$2\r\nk2\r\n");
  expect_raw({"DBSIZE"}, ":1\r\n");
}

// redis-cli -3 prints our replies as it prints Redis 7.0's (the expected
// outputs are redis-cli 7.0's against redis-server 7.0).
TEST_P(KeyspaceTest, RedisCliResp3) {
  if (std::string(REDIS_CLI_PATH).empty())
    FAIL() << "redis-cli not found (deploy/install-deps.sh installs it)";
  const std::string port = std::to_string(server_->port());
  auto cli = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {REDIS_CLI_PATH, "-3", "-h", "127.0.0.1", "-p", port};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = RunCommand(argv, kClientTimeout);
    EXPECT_TRUE(r.ok()) << ::testing::PrintToString(args) << ": " << r.Describe();
    return r.out;
  };
  EXPECT_EQ(cli({"RANDOMKEY"}), "\n");  // null
  EXPECT_EQ(cli({"KEYS", "*"}), "\n");  // empty array
  EXPECT_EQ(cli({"SET", "k", "v"}), "OK\n");
  EXPECT_EQ(cli({"PEXPIREAT", "k", "9999999999999"}), "1\n");
  EXPECT_EQ(cli({"TYPE", "k"}), "string\n");
  EXPECT_EQ(cli({"TYPE", "zz"}), "none\n");
  EXPECT_EQ(cli({"PTTL", "zz"}), "-2\n");
  EXPECT_EQ(cli({"EXPIRETIME", "k"}), "10000000000\n");
  EXPECT_EQ(cli({"PEXPIRETIME", "k"}), "9999999999999\n");
  EXPECT_EQ(cli({"EXISTS", "k", "zz"}), "1\n");
  EXPECT_EQ(cli({"KEYS", "*"}), "k\n");
  EXPECT_EQ(cli({"SCAN", "0", "MATCH", "k", "COUNT", "1000"}), "0\nk\n");
  EXPECT_EQ(cli({"RANDOMKEY"}), "k\n");
  EXPECT_EQ(cli({"RENAME", "zz", "y"}), "ERR no such key\n\n");
  EXPECT_EQ(cli({"RENAMENX", "k", "k"}), "0\n");
  EXPECT_EQ(cli({"RENAME", "k", "k"}), "OK\n");
  EXPECT_EQ(cli({"DBSIZE"}), "1\n");
  EXPECT_EQ(cli({"TOUCH", "k", "zz"}), "1\n");
  EXPECT_EQ(cli({"PERSIST", "k"}), "1\n");
  EXPECT_EQ(cli({"TTL", "k"}), "-1\n");
  EXPECT_EQ(cli({"EXPIRE", "k", "100", "NX", "XX"}),
            "ERR NX and XX, GT or LT options at the same time are not compatible\n\n");
  EXPECT_EQ(cli({"SCAN", "x"}), "ERR invalid cursor\n\n");
  EXPECT_EQ(cli({"UNLINK", "k"}), "1\n");
  EXPECT_EQ(cli({"FLUSHDB", "SYNC"}), "OK\n");
}

constexpr char kPythonScript[] = R"PY(
import sys
import time

import redis

r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=5)
assert r.flushdb(asynchronous=True) is True
assert r.randomkey() is None
with r.pipeline(transaction=False) as p:
    for i in range(500):
        p.set("py:%d" % i, i)
    p.set("other", "x")
    p.execute()
assert r.dbsize() == 501
assert set(r.scan_iter(match="py:*", count=25)) == {b"py:%d" % i for i in range(500)}
assert set(r.scan_iter(_type="string", count=1000)) == {b"py:%d" % i for i in range(500)} | {b"other"}
assert list(r.scan_iter(_type="list")) == []
assert sorted(r.keys("py:1?")) == sorted(b"py:%d" % i for i in range(10, 20))
assert r.exists("py:1", "py:2", "nope") == 2
assert r.type("py:1") == b"string" and r.type("nope") == b"none"
assert r.touch("py:1", "nope") == 1
assert r.randomkey() is not None

assert r.expire("py:1", 100, nx=True) is True
assert r.expire("py:1", 200, nx=True) is False
assert r.expire("py:1", 50, gt=True) is False
assert r.expire("py:1", 300, gt=True) is True
assert r.expire("py:1", 400, lt=True) is False
assert r.expire("py:1", 10, xx=True, lt=True) is True
assert 0 < r.ttl("py:1") <= 10
assert 0 < r.pttl("py:1") <= 10000
assert r.pexpire("py:2", 100000) is True
assert r.expireat("py:3", int(time.time()) + 1000) is True
assert r.pexpireat("py:4", 9999999999999) is True
assert r.execute_command("PEXPIRETIME", "py:4") == 9999999999999
assert r.execute_command("EXPIRETIME", "py:4") == 10000000000
assert r.ttl("nope") == -2 and r.ttl("py:5") == -1
assert r.persist("py:2") is True and r.persist("py:2") is False
try:
    r.expire("py:1", 10, nx=True, xx=True)
    raise AssertionError("NX XX accepted")
except redis.ResponseError as e:
    assert str(e) == "NX and XX, GT or LT options at the same time are not compatible", e
try:
    r.pexpire("py:1", 2**63 - 1)
    raise AssertionError("overflow accepted")
except redis.ResponseError as e:
    assert str(e) == "invalid expire time in 'pexpire' command", e

assert r.rename("py:4", "renamed") is True
assert r.execute_command("PEXPIRETIME", "renamed") == 9999999999999
assert r.renamenx("renamed", "py:5") is False
assert r.renamenx("renamed", "fresh") is True
try:
    r.rename("nope", "x")
    raise AssertionError("rename of a missing key accepted")
except redis.ResponseError as e:
    assert str(e) == "no such key", e
assert r.delete("fresh", "nope") == 1
assert r.unlink("py:5", "py:6") == 2
assert r.pexpire("py:7", 100) is True
deadline = time.time() + 15
while r.exists("py:7") and time.time() < deadline:
    time.sleep(0.01)
assert r.exists("py:7") == 0
assert r.flushall() is True and r.dbsize() == 0
print("ok")
)PY";

TEST_P(KeyspaceTest, RedisPy) {
  RunResult r = RunPython(kPythonScript, {std::to_string(server_->port())}, kClientTimeout);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.out, "ok\n") << r.Describe();
}

INSTANTIATE_TEST_SUITE_P(keyspace_commands, KeyspaceTest, ::testing::Values(2),
                         [](const auto& info) { return "workers" + std::to_string(info.param); });

// KEYS and SCAN MATCH read patterns exactly as redis-server 7.0 does, in
// every corner of the syntax (ranges over bytes past 0x7f, "[a-]", classes
// without ']', escapes, '^'): the same keys, the same patterns, the same
// answers from both servers.
TEST(KeysPatternTest, MatchesWhatRedisServerMatches) {
  auto redhub = StartRedhubd({"--workers", "2"});
  ASSERT_NE(redhub, nullptr);
  auto redis = StartRedisServer();
  ASSERT_NE(redis, nullptr);
  Context a = ConnectHiredis(redhub->port());
  Context b = ConnectHiredis(redis->port());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::string bytes = "aAbz-]^\\*?[_\x10\x7f\x80\xe9\xff";
  std::mt19937 rng(4242);
  auto random_string = [&](size_t max_len) {
    std::string s(1 + rng() % max_len, ' ');
    for (char& c : s) c = bytes[rng() % bytes.size()];
    return s;
  };
  for (int i = 0; i < 300; i++) {
    std::string key = random_string(4);
    for (redisContext* c : {a.get(), b.get()}) {
      ASSERT_EQ(DescribeReply(Command(c, {"SET", key, "v"}).get()), "+OK");
    }
  }
  auto sorted_keys = [](const redisReply* r) {
    std::vector<std::string> keys;
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return keys;
    for (size_t i = 0; i < r->elements; i++)
      keys.emplace_back(r->element[i]->str, r->element[i]->len);
    std::sort(keys.begin(), keys.end());
    return keys;
  };
  int nonempty = 0;
  // Patterns of a few tokens, classes with ranges among them.
  auto random_pattern = [&] {
    std::string p;
    for (int t = 1 + rng() % 3; t > 0; t--) {
      switch (rng() % 5) {
        case 0:
          p += '*';
          break;
        case 1:
        case 2: {
          p += '[';
          if (rng() % 4 == 0) p += '^';
          for (int m = 1 + rng() % 2; m > 0; m--) {
            p += bytes[rng() % bytes.size()];
            if (rng() % 2 == 0) p += '-';
          }
          if (t > 1 || rng() % 4 != 0) p += ']';
          break;
        }
        default:
          p += random_string(2);
          break;
      }
    }
    return p;
  };
  for (int i = 0; i < 600; i++) {
    std::string pattern = i % 3 == 0 ? random_string(6) : random_pattern();
    Reply ra = Command(a.get(), {"KEYS", pattern});
    Reply rb = Command(b.get(), {"KEYS", pattern});
    ASSERT_NE(ra, nullptr);
    ASSERT_NE(rb, nullptr);
    auto expected = sorted_keys(rb.get());
    EXPECT_EQ(sorted_keys(ra.get()), expected) << "KEYS '" << pattern << "'";
    if (!expected.empty()) nonempty++;
    Reply sa = Command(a.get(), {"SCAN", "0", "MATCH", pattern, "COUNT", "100000"});
    ASSERT_NE(sa, nullptr);
    ASSERT_EQ(sa->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(sa->elements, 2u);
    EXPECT_EQ(sorted_keys(sa->element[1]), expected) << "SCAN MATCH '" << pattern << "'";
  }
  EXPECT_GT(nonempty, 40);  // the patterns do match things
}

}  // namespace
}  // namespace redhub::integration
