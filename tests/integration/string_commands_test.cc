// The string family against the real redhubd (two workers over the shared
// store), checked reply by reply against what Redis 7.0 answers: every SET
// and GETEX option, the syntax and expire-time errors, the counters and
// INCRBYFLOAT's formatting, APPEND/SETRANGE/GETRANGE edge cases and limits,
// keyspace hits and misses, a full store's OOM errors, and RESP3 replies (raw
// bytes, and redis-cli -3).
//
// Expiry is observed through PTTL ranges and by waiting, with a deadline,
// for a key to disappear: nothing asserts how long anything took.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

constexpr char kOom[] = "-OOM command not allowed when used memory > 'maxmemory'.";
constexpr char kSyntax[] = "-ERR syntax error";
constexpr char kNotInt[] = "-ERR value is not an integer or out of range";
constexpr char kNotFloat[] = "-ERR value is not a valid float";

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class StringCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({"--workers", "2", "--maxmemory", "32mb"}); }

  void Start(const std::vector<std::string>& args) {
    c_.reset();
    server_ = StartRedhubd(args);
    ASSERT_NE(server_, nullptr);
    // Both workers up before the test (and so before its SIGTERM): the
    // master can miss a stop that comes while a worker is still starting.
    ASSERT_TRUE(server_->WaitForLogLine("Worker 0 (pid"));
    ASSERT_TRUE(server_->WaitForLogLine("Worker 1 (pid"));
    c_ = ConnectHiredis(server_->port());
    ASSERT_NE(c_, nullptr);
  }

  // The reply as DescribeReply's text ("+OK", ":1", "$3 abc", "(nil)",
  // "-ERR ...", "*2 [$1 a, (nil)]"), so one EXPECT_EQ states a whole reply.
  std::string Do(const std::vector<std::string>& argv) {
    Reply r = Command(c_.get(), argv);
    return DescribeReply(r.get());
  }

  // A bulk reply's full bytes; "(not a string: ...)" otherwise.
  std::string Value(const std::vector<std::string>& argv) {
    Reply r = Command(c_.get(), argv);
    if (r == nullptr || r->type != REDIS_REPLY_STRING) {
      return "(not a string: " + DescribeReply(r.get()) + ")";
    }
    return std::string(r->str, r->len);
  }

  int64_t Pttl(const std::string& key) {
    Reply r = Command(c_.get(), {"PTTL", key});
    EXPECT_NE(r, nullptr);
    if (r == nullptr || r->type != REDIS_REPLY_INTEGER) {
      ADD_FAILURE() << "PTTL " << key << ": " << DescribeReply(r.get());
      return -3;
    }
    return r->integer;
  }

  // A PTTL in (0, ms]: the key has an expire time at most ms away.
  void ExpectTtlWithin(const std::string& key, int64_t ms) {
    int64_t pttl = Pttl(key);
    EXPECT_GT(pttl, 0) << key;
    EXPECT_LE(pttl, ms) << key;
  }

  // Waits, with the usual deadline, for GET key to answer nil.
  bool WaitGone(const std::string& key) {
    return WaitUntil([&] { return Do({"GET", key}) == "(nil)"; });
  }

  std::unique_ptr<ServerProcess> server_;
  Context c_;
};

TEST_F(StringCommandsTest, SetAndGet) {
  EXPECT_EQ(Do({"GET", "k"}), "(nil)");
  EXPECT_EQ(Do({"SET", "k", "v"}), "+OK");
  EXPECT_EQ(Do({"GET", "k"}), "$1 v");
  EXPECT_EQ(Do({"SET", "k", "w"}), "+OK");
  EXPECT_EQ(Do({"GET", "k"}), "$1 w");
  // Binary-safe keys and values, and the empty string.
  std::string binary("a\0b\r\nc", 6);
  EXPECT_EQ(Do({"SET", binary, binary}), "+OK");
  EXPECT_EQ(Value({"GET", binary}), binary);
  EXPECT_EQ(Do({"SET", "", ""}), "+OK");
  EXPECT_EQ(Value({"GET", ""}), "");
  // Options are case-insensitive.
  EXPECT_EQ(Do({"SET", "k", "x", "xX", "gEt"}), "$1 w");
  EXPECT_EQ(Do({"GET", "k"}), "$1 x");
  EXPECT_EQ(Do({"GET"}), "-ERR wrong number of arguments for 'get' command");
  EXPECT_EQ(Do({"GET", "a", "b"}), "-ERR wrong number of arguments for 'get' command");
  EXPECT_EQ(Do({"SET", "k"}), "-ERR wrong number of arguments for 'set' command");
}

TEST_F(StringCommandsTest, SetNxXxGet) {
  EXPECT_EQ(Do({"SET", "k", "1", "XX"}), "(nil)");
  EXPECT_EQ(Do({"GET", "k"}), "(nil)");
  EXPECT_EQ(Do({"SET", "k", "1", "NX"}), "+OK");
  EXPECT_EQ(Do({"SET", "k", "2", "NX"}), "(nil)");
  EXPECT_EQ(Do({"GET", "k"}), "$1 1");
  EXPECT_EQ(Do({"SET", "k", "3", "XX"}), "+OK");
  EXPECT_EQ(Do({"GET", "k"}), "$1 3");
  // GET: the old value, whether or not NX/XX let the write happen (Redis 7.0
  // allows NX with GET).
  EXPECT_EQ(Do({"SET", "k", "4", "GET"}), "$1 3");
  EXPECT_EQ(Do({"SET", "k", "5", "NX", "GET"}), "$1 4");
  EXPECT_EQ(Do({"GET", "k"}), "$1 4");
  EXPECT_EQ(Do({"SET", "k", "6", "XX", "GET"}), "$1 4");
  EXPECT_EQ(Do({"GET", "k"}), "$1 6");
  EXPECT_EQ(Do({"SET", "new", "1", "XX", "GET"}), "(nil)");
  EXPECT_EQ(Do({"GET", "new"}), "(nil)");
  EXPECT_EQ(Do({"SET", "new", "1", "NX", "GET"}), "(nil)");
  EXPECT_EQ(Do({"GET", "new"}), "$1 1");
  EXPECT_EQ(Do({"SET", "new2", "1", "GET"}), "(nil)");
  EXPECT_EQ(Do({"GET", "new2"}), "$1 1");
  // Repeating a flag is allowed.
  EXPECT_EQ(Do({"SET", "k", "7", "GET", "GET", "XX", "XX"}), "$1 6");
}

TEST_F(StringCommandsTest, SetSyntaxErrors) {
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {"SET", "k", "v", "NX", "XX"},
           {"SET", "k", "v", "XX", "NX"},
           {"SET", "k", "v", "EX"},
           {"SET", "k", "v", "PX"},
           {"SET", "k", "v", "EXAT"},
           {"SET", "k", "v", "PXAT"},
           {"SET", "k", "v", "EX", "10", "PX", "10"},
           {"SET", "k", "v", "EX", "10", "EXAT", "10"},
           {"SET", "k", "v", "PXAT", "10", "EX", "10"},
           {"SET", "k", "v", "EX", "10", "KEEPTTL"},
           {"SET", "k", "v", "KEEPTTL", "PX", "10"},
           {"SET", "k", "v", "EX", "10", "EX"},
           {"SET", "k", "v", "PERSIST"},
           {"SET", "k", "v", "foo"},
           {"SET", "k", "v", "NXX"},
           {"SET", "k", "v", "10"},
       }) {
    EXPECT_EQ(Do(argv), kSyntax) << ::testing::PrintToString(argv);
  }
  EXPECT_EQ(Do({"GET", "k"}), "(nil)");
  // The same expire option twice is allowed; the last one wins.
  EXPECT_EQ(Do({"SET", "k", "v", "EX", "1000", "EX", "2000"}), "+OK");
  int64_t pttl = Pttl("k");
  EXPECT_GT(pttl, 1000 * 1000);
  EXPECT_LE(pttl, 2000 * 1000);
}

TEST_F(StringCommandsTest, SetInvalidExpireTimes) {
  const std::string invalid = "-ERR invalid expire time in 'set' command";
  EXPECT_EQ(Do({"SET", "k", "v", "EX", "0"}), invalid);
  EXPECT_EQ(Do({"SET", "k", "v", "EX", "-1"}), invalid);
  EXPECT_EQ(Do({"SET", "k", "v", "PX", "0"}), invalid);
  EXPECT_EQ(Do({"SET", "k", "v", "EXAT", "0"}), invalid);
  EXPECT_EQ(Do({"SET", "k", "v", "PXAT", "-5"}), invalid);
  // Seconds that overflow when turned into ms; ms that overflow when added
  // to now.
  EXPECT_EQ(Do({"SET", "k", "v", "EX", "9223372036854776"}), invalid);
  EXPECT_EQ(Do({"SET", "k", "v", "EXAT", "9223372036854776"}), invalid);
  EXPECT_EQ(Do({"SET", "k", "v", "PX", "9223372036854775807"}), invalid);
  EXPECT_EQ(Do({"SET", "k", "v", "EX", "abc"}), kNotInt);
  EXPECT_EQ(Do({"SET", "k", "v", "PX", "1.5"}), kNotInt);
  EXPECT_EQ(Do({"SET", "k", "v", "EX", "99999999999999999999"}), kNotInt);
  EXPECT_EQ(Do({"GET", "k"}), "(nil)");
  // The largest absolute times are fine.
  EXPECT_EQ(Do({"SET", "k", "v", "EXAT", "9223372036854775"}), "+OK");
  EXPECT_EQ(Do({"SET", "k", "v", "PXAT", "9223372036854775807"}), "+OK");
  EXPECT_GT(Pttl("k"), 0);
  EXPECT_EQ(Do({"SETEX", "k", "0", "v"}), "-ERR invalid expire time in 'setex' command");
  EXPECT_EQ(Do({"SETEX", "k", "x", "v"}), kNotInt);
  EXPECT_EQ(Do({"PSETEX", "k", "-1", "v"}), "-ERR invalid expire time in 'psetex' command");
  // An invalid expire time comes before GET's reply and NX/XX.
  EXPECT_EQ(Do({"SET", "k", "v", "GET", "EX", "0"}), invalid);
}

TEST_F(StringCommandsTest, SetExpireOptions) {
  EXPECT_EQ(Do({"SET", "ex", "v", "EX", "100"}), "+OK");
  ExpectTtlWithin("ex", 100 * 1000);
  EXPECT_EQ(Do({"SET", "px", "v", "PX", "100000"}), "+OK");
  ExpectTtlWithin("px", 100 * 1000);
  const int64_t in_100s = NowMs() + 100 * 1000;
  EXPECT_EQ(Do({"SET", "exat", "v", "EXAT", std::to_string(in_100s / 1000 + 1)}), "+OK");
  ExpectTtlWithin("exat", 102 * 1000);
  EXPECT_EQ(Do({"SET", "pxat", "v", "PXAT", std::to_string(in_100s)}), "+OK");
  ExpectTtlWithin("pxat", 101 * 1000);

  // KEEPTTL keeps it; a plain SET drops it.
  EXPECT_EQ(Do({"SET", "ex", "w", "KEEPTTL"}), "+OK");
  ExpectTtlWithin("ex", 100 * 1000);
  EXPECT_EQ(Do({"GET", "ex"}), "$1 w");
  EXPECT_EQ(Do({"SET", "ex", "w", "KEEPTTL", "GET"}), "$1 w");
  ExpectTtlWithin("ex", 100 * 1000);
  EXPECT_EQ(Do({"SET", "ex", "x"}), "+OK");
  EXPECT_EQ(Pttl("ex"), -1);
  // KEEPTTL on a new key: no TTL.
  EXPECT_EQ(Do({"SET", "fresh", "v", "KEEPTTL"}), "+OK");
  EXPECT_EQ(Pttl("fresh"), -1);

  // A short PX expires (waited for, not timed); an EXAT in the past is set
  // already expired, as Redis 7.0 does.
  EXPECT_EQ(Do({"SET", "short", "v", "PX", "50"}), "+OK");
  EXPECT_TRUE(WaitGone("short"));
  EXPECT_EQ(Do({"SET", "past", "v", "EXAT", "1"}), "+OK");
  EXPECT_EQ(Do({"GET", "past"}), "(nil)");
  EXPECT_EQ(Do({"SET", "past", "v", "PXAT", "1", "GET"}), "(nil)");
  EXPECT_EQ(Do({"EXISTS", "past"}), ":0");
}

TEST_F(StringCommandsTest, SetnxSetexPsetex) {
  EXPECT_EQ(Do({"SETNX", "k", "1"}), ":1");
  EXPECT_EQ(Do({"SETNX", "k", "2"}), ":0");
  EXPECT_EQ(Do({"GET", "k"}), "$1 1");
  EXPECT_EQ(Do({"SETNX", "k"}), "-ERR wrong number of arguments for 'setnx' command");

  EXPECT_EQ(Do({"SETEX", "k", "100", "v"}), "+OK");
  EXPECT_EQ(Do({"GET", "k"}), "$1 v");
  ExpectTtlWithin("k", 100 * 1000);
  EXPECT_EQ(Do({"PSETEX", "p", "100000", "w"}), "+OK");
  EXPECT_EQ(Do({"GET", "p"}), "$1 w");
  ExpectTtlWithin("p", 100 * 1000);
  EXPECT_EQ(Do({"PSETEX", "short", "50", "w"}), "+OK");
  EXPECT_TRUE(WaitGone("short"));
  EXPECT_EQ(Do({"SETEX", "k", "100"}), "-ERR wrong number of arguments for 'setex' command");
  EXPECT_EQ(Do({"PSETEX", "k", "100", "v", "x"}),
            "-ERR wrong number of arguments for 'psetex' command");
}

TEST_F(StringCommandsTest, GetsetGetdel) {
  EXPECT_EQ(Do({"GETSET", "k", "1"}), "(nil)");
  EXPECT_EQ(Do({"GETSET", "k", "2"}), "$1 1");
  EXPECT_EQ(Do({"GET", "k"}), "$1 2");
  // GETSET drops the TTL, as SET does.
  EXPECT_EQ(Do({"SET", "t", "v", "EX", "100"}), "+OK");
  EXPECT_EQ(Do({"GETSET", "t", "w"}), "$1 v");
  EXPECT_EQ(Pttl("t"), -1);

  EXPECT_EQ(Do({"GETDEL", "k"}), "$1 2");
  EXPECT_EQ(Do({"GETDEL", "k"}), "(nil)");
  EXPECT_EQ(Do({"EXISTS", "k"}), ":0");
  EXPECT_EQ(Do({"GETDEL", "k", "x"}), "-ERR wrong number of arguments for 'getdel' command");
}

TEST_F(StringCommandsTest, Getex) {
  EXPECT_EQ(Do({"GETEX", "nokey"}), "(nil)");
  EXPECT_EQ(Do({"SET", "k", "v"}), "+OK");
  EXPECT_EQ(Do({"GETEX", "k"}), "$1 v");
  EXPECT_EQ(Pttl("k"), -1);
  EXPECT_EQ(Do({"GETEX", "k", "EX", "100"}), "$1 v");
  ExpectTtlWithin("k", 100 * 1000);
  EXPECT_EQ(Do({"GETEX", "k"}), "$1 v");  // no option: the TTL stays
  ExpectTtlWithin("k", 100 * 1000);
  EXPECT_EQ(Do({"GETEX", "k", "PERSIST"}), "$1 v");
  EXPECT_EQ(Pttl("k"), -1);
  EXPECT_EQ(Do({"GETEX", "k", "PX", "200000"}), "$1 v");
  ExpectTtlWithin("k", 200 * 1000);
  EXPECT_EQ(Do({"GETEX", "k", "EXAT", std::to_string(NowMs() / 1000 + 300)}), "$1 v");
  ExpectTtlWithin("k", 300 * 1000);
  EXPECT_EQ(Do({"GETEX", "k", "PXAT", std::to_string(NowMs() + 400 * 1000)}), "$1 v");
  ExpectTtlWithin("k", 400 * 1000);
  EXPECT_EQ(Do({"GETEX", "k", "ex", "10", "ex", "500"}), "$1 v");
  int64_t pttl = Pttl("k");
  EXPECT_GT(pttl, 10 * 1000);
  EXPECT_LE(pttl, 500 * 1000);

  // Syntax: no SET options, one expire kind, PERSIST alone.
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {"GETEX", "k", "NX"},
           {"GETEX", "k", "XX"},
           {"GETEX", "k", "GET"},
           {"GETEX", "k", "KEEPTTL"},
           {"GETEX", "k", "EX"},
           {"GETEX", "k", "PERSIST", "EX", "1"},
           {"GETEX", "k", "EX", "1", "PERSIST"},
           {"GETEX", "k", "EX", "1", "PX", "1"},
           {"GETEX", "k", "foo"},
       }) {
    EXPECT_EQ(Do(argv), kSyntax) << ::testing::PrintToString(argv);
  }
  // Syntax errors even for a missing key; a bad expire time only for an
  // existing one (the lookup comes first).
  EXPECT_EQ(Do({"GETEX", "nokey", "EX"}), kSyntax);
  EXPECT_EQ(Do({"GETEX", "nokey", "EX", "0"}), "(nil)");
  EXPECT_EQ(Do({"GETEX", "k", "EX", "0"}), "-ERR invalid expire time in 'getex' command");
  EXPECT_EQ(Do({"GETEX", "k", "PXAT", "-1"}), "-ERR invalid expire time in 'getex' command");
  EXPECT_EQ(Do({"GETEX", "k", "EX", "9223372036854776"}),
            "-ERR invalid expire time in 'getex' command");
  EXPECT_EQ(Do({"GETEX", "k", "EX", "x"}), kNotInt);
  EXPECT_GT(Pttl("k"), 0);  // unchanged by the errors

  // An EXAT/PXAT already past: the value, then the key is gone.
  EXPECT_EQ(Do({"GETEX", "k", "EXAT", "1"}), "$1 v");
  EXPECT_EQ(Do({"EXISTS", "k"}), ":0");
  EXPECT_EQ(Do({"SET", "k", "w"}), "+OK");
  EXPECT_EQ(Do({"GETEX", "k", "PXAT", std::to_string(NowMs() - 1000)}), "$1 w");
  EXPECT_EQ(Do({"GET", "k"}), "(nil)");
  // A short PX expires.
  EXPECT_EQ(Do({"SET", "k", "x"}), "+OK");
  EXPECT_EQ(Do({"GETEX", "k", "PX", "50"}), "$1 x");
  EXPECT_TRUE(WaitGone("k"));
  EXPECT_EQ(Do({"GETEX"}), "-ERR wrong number of arguments for 'getex' command");
}

TEST_F(StringCommandsTest, MgetMsetMsetnx) {
  EXPECT_EQ(Do({"MSET", "a", "1", "b", "2", "c", "3"}), "+OK");
  EXPECT_EQ(Do({"MGET", "a", "nokey", "b", "c"}), "*4 [$1 1, (nil), $1 2, $1 3]");
  EXPECT_EQ(Do({"MGET", "nokey"}), "*1 [(nil)]");
  EXPECT_EQ(Do({"MSET", "a", "1", "b"}), "-ERR wrong number of arguments for 'mset' command");
  EXPECT_EQ(Do({"MSET", "a"}), "-ERR wrong number of arguments for 'mset' command");
  EXPECT_EQ(Do({"MSETNX", "a", "1", "b"}), "-ERR wrong number of arguments for 'msetnx' command");
  EXPECT_EQ(Do({"MGET"}), "-ERR wrong number of arguments for 'mget' command");
  // A repeated key: the last value wins.
  EXPECT_EQ(Do({"MSET", "a", "x", "a", "y"}), "+OK");
  EXPECT_EQ(Do({"GET", "a"}), "$1 y");
  // MSET drops TTLs.
  EXPECT_EQ(Do({"SET", "t", "v", "EX", "100"}), "+OK");
  EXPECT_EQ(Do({"MSET", "t", "w", "u", "x"}), "+OK");
  EXPECT_EQ(Pttl("t"), -1);

  // MSETNX: all or nothing.
  EXPECT_EQ(Do({"MSETNX", "a", "9", "d", "4"}), ":0");
  EXPECT_EQ(Do({"MGET", "a", "d"}), "*2 [$1 y, (nil)]");
  EXPECT_EQ(Do({"MSETNX", "d", "4", "e", "5"}), ":1");
  EXPECT_EQ(Do({"MGET", "d", "e"}), "*2 [$1 4, $1 5]");
  EXPECT_EQ(Do({"MSETNX", "g", "1", "g", "2"}), ":1");
  EXPECT_EQ(Do({"GET", "g"}), "$1 2");

  // Many keys (more than fit on the handler's stack), binary values.
  std::vector<std::string> mset = {"MSET"};
  std::vector<std::string> mget = {"MGET"};
  for (int i = 0; i < 300; i++) {
    mset.push_back("many:" + std::to_string(i));
    mset.push_back(std::string("v\0", 2) + std::to_string(i));
    mget.push_back("many:" + std::to_string(i));
  }
  EXPECT_EQ(Do(mset), "+OK");
  Reply r = Command(c_.get(), mget);
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY) << DescribeReply(r.get());
  ASSERT_EQ(r->elements, 300u);
  for (size_t i = 0; i < 300; i++) {
    EXPECT_EQ(std::string(r->element[i]->str, r->element[i]->len),
              std::string("v\0", 2) + std::to_string(i));
  }
}

// MSET holds all its keys' stripes at once, and so does MGET: a reader never
// sees half of another client's MSET, whichever workers serve the two.
TEST_F(StringCommandsTest, MsetIsAtomicForOtherClients) {
  // Many keys, so that they span many stripes and an MGET takes a while.
  std::vector<std::string> keys;
  for (int i = 0; i < 200; i++) keys.push_back("atomic:" + std::to_string(i));
  std::vector<std::string> mset0 = {"MSET"};
  for (const auto& k : keys) {
    mset0.push_back(k);
    mset0.push_back("0");
  }
  ASSERT_EQ(Do(mset0), "+OK");

  std::atomic<bool> stop{false};
  std::atomic<int> writer_errors{0};
  // Stops and joins the writer however this test returns.
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread thread;
    ~Joiner() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } writer{stop, std::thread([&] {
             Context w = ConnectHiredis(server_->port());
             if (w == nullptr) {
               writer_errors++;
               return;
             }
             for (int i = 1; !stop.load(); i++) {
               std::vector<std::string> argv = {"MSET"};
               for (const auto& k : keys) {
                 argv.push_back(k);
                 argv.push_back(std::to_string(i));
               }
               Reply r = Command(w.get(), argv);
               if (r == nullptr || r->type != REDIS_REPLY_STATUS) writer_errors++;
             }
           })};
  // Several readers, so that both workers very likely serve some.
  std::vector<Context> readers;
  for (int i = 0; i < 4; i++) {
    readers.push_back(ConnectHiredis(server_->port()));
    ASSERT_NE(readers.back(), nullptr);
  }
  std::vector<std::string> mget = {"MGET"};
  mget.insert(mget.end(), keys.begin(), keys.end());
  int torn = 0;
  std::string example;
  for (int round = 0; round < 500; round++) {
    for (auto& reader : readers) {
      Reply r = Command(reader.get(), mget);
      ASSERT_NE(r, nullptr);
      ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
      ASSERT_EQ(r->elements, keys.size());
      std::string first(r->element[0]->str, r->element[0]->len);
      for (size_t i = 1; i < r->elements; i++) {
        if (std::string(r->element[i]->str, r->element[i]->len) != first) {
          torn++;
          example = keys[0] + " = " + first + " but " + keys[i] + " = " +
                    std::string(r->element[i]->str, r->element[i]->len);
          break;
        }
      }
    }
  }
  stop = true;
  writer.thread.join();
  EXPECT_EQ(writer_errors.load(), 0);
  EXPECT_EQ(torn, 0) << "e.g. " << example;
}

TEST_F(StringCommandsTest, IncrDecr) {
  EXPECT_EQ(Do({"INCR", "n"}), ":1");
  EXPECT_EQ(Do({"INCR", "n"}), ":2");
  EXPECT_EQ(Do({"DECR", "n"}), ":1");
  EXPECT_EQ(Do({"INCRBY", "n", "10"}), ":11");
  EXPECT_EQ(Do({"INCRBY", "n", "-20"}), ":-9");
  EXPECT_EQ(Do({"DECRBY", "n", "-9"}), ":0");
  EXPECT_EQ(Do({"DECRBY", "n", "5"}), ":-5");
  EXPECT_EQ(Do({"GET", "n"}), "$2 -5");
  EXPECT_EQ(Do({"DECR", "m"}), ":-1");

  // Overflow, in both directions.
  EXPECT_EQ(Do({"SET", "n", "9223372036854775807"}), "+OK");
  EXPECT_EQ(Do({"INCR", "n"}), "-ERR increment or decrement would overflow");
  EXPECT_EQ(Do({"INCRBY", "n", "1"}), "-ERR increment or decrement would overflow");
  EXPECT_EQ(Do({"DECRBY", "n", "-1"}), "-ERR increment or decrement would overflow");
  EXPECT_EQ(Do({"DECR", "n"}), ":9223372036854775806");
  EXPECT_EQ(Do({"SET", "n", "-9223372036854775808"}), "+OK");
  EXPECT_EQ(Do({"DECR", "n"}), "-ERR increment or decrement would overflow");
  EXPECT_EQ(Do({"INCRBY", "n", "-1"}), "-ERR increment or decrement would overflow");
  EXPECT_EQ(Do({"INCRBY", "n", "9223372036854775807"}), ":-1");
  EXPECT_EQ(Do({"DECRBY", "n", "-9223372036854775808"}), "-ERR decrement would overflow");
  EXPECT_EQ(Do({"DECRBY", "nokey", "-9223372036854775808"}), "-ERR decrement would overflow");
  EXPECT_EQ(Do({"GET", "n"}), "$2 -1");

  // Values and increments Redis's string2ll refuses.
  for (const char* bad : {"abc", " 1", "1 ", "01", "-0", "+1", "1.0", "", "9223372036854775808",
                          "123456789012345678901"}) {
    EXPECT_EQ(Do({"SET", "bad", bad}), "+OK");
    EXPECT_EQ(Do({"INCR", "bad"}), kNotInt) << "'" << bad << "'";
    EXPECT_EQ(Do({"INCRBY", "n", bad}), kNotInt) << "'" << bad << "'";
    EXPECT_EQ(Do({"DECRBY", "n", bad}), kNotInt) << "'" << bad << "'";
  }
  EXPECT_EQ(Do({"GET", "n"}), "$2 -1");
  // A key named like a number is just a key.
  EXPECT_EQ(Do({"INCR", " 1"}), ":1");

  // The TTL is kept.
  EXPECT_EQ(Do({"SET", "t", "5", "EX", "100"}), "+OK");
  EXPECT_EQ(Do({"INCR", "t"}), ":6");
  EXPECT_EQ(Do({"DECRBY", "t", "2"}), ":4");
  ExpectTtlWithin("t", 100 * 1000);
  EXPECT_EQ(Do({"INCR"}), "-ERR wrong number of arguments for 'incr' command");
  EXPECT_EQ(Do({"INCRBY", "n"}), "-ERR wrong number of arguments for 'incrby' command");
}

TEST_F(StringCommandsTest, Incrbyfloat) {
  // The examples of Redis's documentation, and its "human" formatting:
  // 17 decimals, trailing zeros removed, no exponent, "-0" as "0".
  EXPECT_EQ(Do({"SET", "f", "10.50"}), "+OK");
  EXPECT_EQ(Do({"INCRBYFLOAT", "f", "0.1"}), "$4 10.6");
  EXPECT_EQ(Do({"INCRBYFLOAT", "f", "-5"}), "$3 5.6");
  EXPECT_EQ(Do({"SET", "f", "5.0e3"}), "+OK");
  EXPECT_EQ(Do({"INCRBYFLOAT", "f", "2.0e2"}), "$4 5200");
  EXPECT_EQ(Do({"GET", "f"}), "$4 5200");
  EXPECT_EQ(Do({"INCRBYFLOAT", "new", "1.5"}), "$3 1.5");
  EXPECT_EQ(Do({"INCRBYFLOAT", "new", "3.0e-1"}), "$3 1.8");
  EXPECT_EQ(Do({"INCRBYFLOAT", "z", "-0"}), "$1 0");
  EXPECT_EQ(Do({"INCRBYFLOAT", "z2", "-0.0000000000000000001"}), "$1 0");
  EXPECT_EQ(Do({"INCRBYFLOAT", "hex", "0x10"}), "$2 16");
  EXPECT_EQ(Do({"INCRBYFLOAT", "i", "3"}), "$1 3");
  EXPECT_EQ(Do({"INCR", "i"}), ":4");  // an integer result stays an integer
  // A denormal long double is accepted (only overflow and underflow to zero
  // are refused).
  EXPECT_EQ(Do({"INCRBYFLOAT", "tiny", "1e-4940"}), "$1 0");
  // Large values are printed in full.
  EXPECT_EQ(Value({"INCRBYFLOAT", "big", "1e20"}), "100000000000000000000");

  EXPECT_EQ(Do({"SET", "f", "1e308"}), "+OK");
  EXPECT_EQ(Do({"INCRBYFLOAT", "f", "inf"}), "-ERR increment would produce NaN or Infinity");
  EXPECT_EQ(Do({"INCRBYFLOAT", "f", "-infinity"}), "-ERR increment would produce NaN or Infinity");
  EXPECT_EQ(Do({"INCRBYFLOAT", "f", "1e5000"}), kNotFloat);  // out of range
  for (const char* bad : {"abc", " 1", "1 ", "", "nan", "1.5x", "--1"}) {
    EXPECT_EQ(Do({"INCRBYFLOAT", "f", bad}), kNotFloat) << "'" << bad << "'";
    EXPECT_EQ(Do({"SET", "bad", bad}), "+OK");
    EXPECT_EQ(Do({"INCRBYFLOAT", "bad", "1"}), kNotFloat) << "'" << bad << "'";
  }
  EXPECT_EQ(Do({"GET", "f"}), "$5 1e308");

  // The TTL is kept.
  EXPECT_EQ(Do({"SET", "t", "1", "PX", "100000"}), "+OK");
  EXPECT_EQ(Do({"INCRBYFLOAT", "t", "0.5"}), "$3 1.5");
  ExpectTtlWithin("t", 100 * 1000);
}

// A NUL byte inside a number, in the stored value or in the argument: Redis
// parses the whole length (string2ld, string2ll), so "1\0" "3" is no number;
// a parser that stops at the NUL would read 1. Replies compared byte for byte
// with redis-server's, and the values left unchanged.
TEST_F(StringCommandsTest, NumbersWithANulByteAreRefusedAsByRedis) {
  auto redis = StartRedisServer();
  ASSERT_NE(redis, nullptr);
  const std::string nul_mid("1\0003", 3), nul_end("1\0", 2), nul_start("\0001", 2),
      float_nul("1.5\0", 4);
  std::vector<std::vector<std::string>> script;
  for (const std::string& v : {nul_mid, nul_end, nul_start, float_nul}) {
    script.push_back({"SET", "k", v});
    script.push_back({"INCRBYFLOAT", "k", "1"});
    script.push_back({"INCR", "k"});
    script.push_back({"DECR", "k"});
    script.push_back({"INCRBY", "k", "1"});
    script.push_back({"DECRBY", "k", "1"});
    script.push_back({"GET", "k"});
    // In the increment, on a key that exists and on one that does not.
    script.push_back({"SET", "n", "10"});
    script.push_back({"INCRBYFLOAT", "n", v});
    script.push_back({"INCRBY", "n", v});
    script.push_back({"DECRBY", "n", v});
    script.push_back({"INCRBYFLOAT", "missing", v});
    script.push_back({"INCRBY", "missing", v});
    script.push_back({"GET", "n"});
    script.push_back({"EXISTS", "missing"});
  }
  // Without the NUL all of it works, identically.
  script.push_back({"SET", "k", "1.5"});
  script.push_back({"INCRBYFLOAT", "k", "1"});
  script.push_back({"SET", "k", "13"});
  script.push_back({"INCRBY", "k", "3"});
  Socket ours = Socket::Connect(server_->port());
  Socket ref = Socket::Connect(redis->port());
  ASSERT_NO_FATAL_FAILURE(ExpectRepliesAsReference(ours, ref, script));
  // Spelled out, so the expectation does not rest on the reference alone.
  EXPECT_EQ(Do({"SET", "k", nul_mid}), "+OK");
  EXPECT_EQ(Do({"INCRBYFLOAT", "k", "1"}), kNotFloat);
  EXPECT_EQ(Do({"INCRBYFLOAT", "n", nul_mid}), kNotFloat);
  EXPECT_EQ(Do({"INCR", "k"}), kNotInt);
  EXPECT_EQ(Value({"GET", "k"}), nul_mid);
}

TEST_F(StringCommandsTest, AppendStrlen) {
  EXPECT_EQ(Do({"STRLEN", "s"}), ":0");
  EXPECT_EQ(Do({"APPEND", "s", "Hello"}), ":5");
  EXPECT_EQ(Do({"APPEND", "s", " World"}), ":11");
  EXPECT_EQ(Do({"GET", "s"}), "$11 Hello World");
  EXPECT_EQ(Do({"STRLEN", "s"}), ":11");
  EXPECT_EQ(Do({"APPEND", "s", ""}), ":11");
  // APPEND of "" still creates the key.
  EXPECT_EQ(Do({"APPEND", "empty", ""}), ":0");
  EXPECT_EQ(Do({"EXISTS", "empty"}), ":1");
  // Binary data, and a value past the store's small size classes.
  std::string binary("\0\r\n\xff", 4);
  EXPECT_EQ(Do({"APPEND", "bin", binary}), ":4");
  EXPECT_EQ(Do({"APPEND", "bin", binary}), ":8");
  EXPECT_EQ(Value({"GET", "bin"}), binary + binary);
  std::string chunk(40000, 'x');
  EXPECT_EQ(Do({"APPEND", "bin", chunk}), ":40008");
  EXPECT_EQ(Value({"GET", "bin"}), binary + binary + chunk);
  EXPECT_EQ(Do({"STRLEN", "bin"}), ":40008");
  // The TTL is kept.
  EXPECT_EQ(Do({"SET", "t", "v", "EX", "100"}), "+OK");
  EXPECT_EQ(Do({"APPEND", "t", "w"}), ":2");
  ExpectTtlWithin("t", 100 * 1000);
  EXPECT_EQ(Do({"STRLEN", "a", "b"}), "-ERR wrong number of arguments for 'strlen' command");
  EXPECT_EQ(Do({"APPEND", "a"}), "-ERR wrong number of arguments for 'append' command");
}

TEST_F(StringCommandsTest, GetrangeSubstr) {
  EXPECT_EQ(Do({"GETRANGE", "nokey", "0", "-1"}), "$0 ");
  EXPECT_EQ(Do({"SET", "s", "Hello"}), "+OK");
  EXPECT_EQ(Do({"GETRANGE", "s", "0", "-1"}), "$5 Hello");
  EXPECT_EQ(Do({"GETRANGE", "s", "1", "3"}), "$3 ell");
  EXPECT_EQ(Do({"GETRANGE", "s", "0", "100"}), "$5 Hello");
  EXPECT_EQ(Do({"GETRANGE", "s", "4", "100"}), "$1 o");
  EXPECT_EQ(Do({"GETRANGE", "s", "5", "100"}), "$0 ");
  EXPECT_EQ(Do({"GETRANGE", "s", "1", "0"}), "$0 ");
  EXPECT_EQ(Do({"GETRANGE", "s", "-3", "-1"}), "$3 llo");
  EXPECT_EQ(Do({"GETRANGE", "s", "-100", "1"}), "$2 He");
  EXPECT_EQ(Do({"GETRANGE", "s", "-1", "-5"}), "$0 ");
  EXPECT_EQ(Do({"GETRANGE", "s", "-100", "-200"}), "$0 ");
  EXPECT_EQ(Do({"GETRANGE", "s", "-200", "-100"}), "$1 H");
  EXPECT_EQ(Do({"GETRANGE", "s", "9223372036854775807", "-9223372036854775808"}), "$0 ");
  EXPECT_EQ(Do({"GETRANGE", "s", "-9223372036854775808", "9223372036854775807"}), "$5 Hello");
  EXPECT_EQ(Do({"GETRANGE", "s", "a", "1"}), kNotInt);
  EXPECT_EQ(Do({"GETRANGE", "s", "1", "1.5"}), kNotInt);
  EXPECT_EQ(Do({"GETRANGE", "nokey", "x", "1"}), kNotInt);
  EXPECT_EQ(Do({"SET", "e", ""}), "+OK");
  EXPECT_EQ(Do({"GETRANGE", "e", "0", "0"}), "$0 ");
  EXPECT_EQ(Do({"GETRANGE", "e", "-1", "0"}), "$0 ");
  EXPECT_EQ(Do({"SUBSTR", "s", "1", "3"}), "$3 ell");
  EXPECT_EQ(Do({"SUBSTR", "s", "-3", "-1"}), "$3 llo");
  EXPECT_EQ(Do({"SUBSTR", "nokey", "0", "1"}), "$0 ");
  EXPECT_EQ(Do({"GETRANGE", "s", "0"}), "-ERR wrong number of arguments for 'getrange' command");
  EXPECT_EQ(Do({"SUBSTR", "s", "0"}), "-ERR wrong number of arguments for 'substr' command");
}

TEST_F(StringCommandsTest, Setrange) {
  EXPECT_EQ(Do({"SET", "s", "Hello World"}), "+OK");
  EXPECT_EQ(Do({"SETRANGE", "s", "6", "Redis"}), ":11");
  EXPECT_EQ(Do({"GET", "s"}), "$11 Hello Redis");
  EXPECT_EQ(Do({"SETRANGE", "s", "1", "ipp"}), ":11");
  EXPECT_EQ(Do({"GET", "s"}), "$11 Hippo Redis");
  // Past the end: zero bytes in between.
  EXPECT_EQ(Do({"SETRANGE", "s", "13", "!"}), ":14");
  EXPECT_EQ(Value({"GET", "s"}), std::string("Hippo Redis\0\0!", 14));
  // A missing key is padded from 0.
  EXPECT_EQ(Do({"SETRANGE", "new", "3", "ab"}), ":5");
  EXPECT_EQ(Value({"GET", "new"}), std::string("\0\0\0ab", 5));
  // An empty value changes nothing, creates nothing, and is not checked
  // against the size limit.
  EXPECT_EQ(Do({"SETRANGE", "none", "0", ""}), ":0");
  EXPECT_EQ(Do({"SETRANGE", "none", "536870912", ""}), ":0");
  EXPECT_EQ(Do({"EXISTS", "none"}), ":0");
  EXPECT_EQ(Do({"SETRANGE", "s", "100", ""}), ":14");
  EXPECT_EQ(Do({"STRLEN", "s"}), ":14");

  EXPECT_EQ(Do({"SETRANGE", "s", "-1", "x"}), "-ERR offset is out of range");
  EXPECT_EQ(Do({"SETRANGE", "s", "abc", "x"}), kNotInt);
  EXPECT_EQ(Do({"SETRANGE", "s", "9223372036854775808", "x"}), kNotInt);
  // Over 512 MB (proto-max-bulk-len's default), and overflowing.
  const std::string too_big = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)";
  EXPECT_EQ(Do({"SETRANGE", "s", "536870912", "x"}), too_big);
  EXPECT_EQ(Do({"SETRANGE", "s", "536870911", "xy"}), too_big);
  EXPECT_EQ(Do({"SETRANGE", "nokey", "536870912", "x"}), too_big);
  EXPECT_EQ(Do({"SETRANGE", "s", "9223372036854775807", "x"}), too_big);
  EXPECT_EQ(Do({"EXISTS", "nokey"}), ":0");

  // The TTL is kept.
  EXPECT_EQ(Do({"SET", "t", "value", "EX", "100"}), "+OK");
  EXPECT_EQ(Do({"SETRANGE", "t", "0", "V"}), ":5");
  EXPECT_EQ(Do({"GET", "t"}), "$5 Value");
  ExpectTtlWithin("t", 100 * 1000);
  EXPECT_EQ(Do({"SETRANGE", "t", "0"}), "-ERR wrong number of arguments for 'setrange' command");
}

// APPEND and SETRANGE check the result against proto-max-bulk-len, as Redis
// 7.0 does; here a small one.
TEST_F(StringCommandsTest, ResultLimitIsProtoMaxBulkLen) {
  Start({"--workers", "2", "--maxmemory", "32mb", "--proto-max-bulk-len", "1kb"});
  const std::string too_big = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)";
  EXPECT_EQ(Do({"SET", "s", std::string(600, 'a')}), "+OK");
  EXPECT_EQ(Do({"APPEND", "s", std::string(424, 'b')}), ":1024");
  EXPECT_EQ(Do({"APPEND", "s", "c"}), too_big);
  EXPECT_EQ(Do({"STRLEN", "s"}), ":1024");
  EXPECT_EQ(Do({"SETRANGE", "s", "1023", "d"}), ":1024");
  EXPECT_EQ(Do({"SETRANGE", "s", "1023", "de"}), too_big);
  EXPECT_EQ(Do({"SETRANGE", "new", "1024", "x"}), too_big);
  EXPECT_EQ(Do({"EXISTS", "new"}), ":0");
  EXPECT_EQ(Do({"APPEND", "s", ""}), ":1024");
}

// Reads count keyspace hits and misses as Redis does (writes' lookups do
// not). The counters are per worker; one connection stays on one worker.
TEST_F(StringCommandsTest, KeyspaceHitsAndMisses) {
  ASSERT_EQ(Do({"SET", "a", "1"}), "+OK");
  auto hits0 = InfoInt(c_.get(), "stats", "keyspace_hits");
  auto misses0 = InfoInt(c_.get(), "stats", "keyspace_misses");
  ASSERT_TRUE(hits0 && misses0);
  const std::vector<std::vector<std::string>> commands = {
      {"GET", "a"},                     // hit
      {"GET", "nokey"},                 // miss
      {"SET", "a", "2", "GET"},         // hit
      {"SET", "nk", "2", "GET"},        // miss
      {"SET", "a", "3", "NX", "GET"},   // hit
      {"GETSET", "a", "4"},             // hit
      {"GETSET", "nk2", "4"},           // miss
      {"GETDEL", "a"},                  // hit
      {"GETDEL", "a"},                  // miss
      {"GETEX", "nk2"},                 // hit
      {"GETEX", "nokey"},               // miss
      {"GETEX", "nk2", "EX", "0"},      // hit (then the error)
      {"MGET", "nk2", "nokey", "nk"},   // hit, miss, hit
      {"STRLEN", "nk2"},                // hit
      {"STRLEN", "nokey"},              // miss
      {"GETRANGE", "nk2", "0", "1"},    // hit
      {"GETRANGE", "nokey", "0", "1"},  // miss
      {"SUBSTR", "nk2", "0", "1"},      // hit
      // Writes: no lookups counted.
      {"INCR", "c"},
      {"APPEND", "c", "1"},
      {"SETRANGE", "c", "0", "1"},
      {"INCRBYFLOAT", "c", "1"},
      {"SETNX", "c", "1"},
      {"MSETNX", "c", "1"},
      {"SET", "c", "1", "NX"},
      {"SET", "c", "1", "XX"},
      {"MSET", "c", "1"},
  };
  for (const auto& argv : commands) ASSERT_NE(Command(c_.get(), argv), nullptr);
  EXPECT_EQ(InfoInt(c_.get(), "stats", "keyspace_hits"), *hits0 + 12);
  EXPECT_EQ(InfoInt(c_.get(), "stats", "keyspace_misses"), *misses0 + 8);
}

TEST_F(StringCommandsTest, CommandInfoKeyPositions) {
  struct Expected {
    const char* name;
    int64_t arity, first, last, step;
  };
  for (const Expected& e : {
           Expected{"get", 2, 1, 1, 1},      Expected{"set", -3, 1, 1, 1},
           Expected{"getex", -2, 1, 1, 1},   Expected{"getdel", 2, 1, 1, 1},
           Expected{"getset", 3, 1, 1, 1},   Expected{"setnx", 3, 1, 1, 1},
           Expected{"setex", 4, 1, 1, 1},    Expected{"psetex", 4, 1, 1, 1},
           Expected{"mget", -2, 1, -1, 1},   Expected{"mset", -3, 1, -1, 2},
           Expected{"msetnx", -3, 1, -1, 2}, Expected{"incr", 2, 1, 1, 1},
           Expected{"decr", 2, 1, 1, 1},     Expected{"incrby", 3, 1, 1, 1},
           Expected{"decrby", 3, 1, 1, 1},   Expected{"incrbyfloat", 3, 1, 1, 1},
           Expected{"append", 3, 1, 1, 1},   Expected{"strlen", 2, 1, 1, 1},
           Expected{"getrange", 4, 1, 1, 1}, Expected{"setrange", 4, 1, 1, 1},
           Expected{"substr", 4, 1, 1, 1},
       }) {
    Reply r = Command(c_.get(), {"COMMAND", "INFO", e.name});
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY) << DescribeReply(r.get());
    ASSERT_EQ(r->elements, 1u);
    const redisReply* info = r->element[0];
    ASSERT_EQ(info->type, REDIS_REPLY_ARRAY) << e.name << ": " << DescribeReply(info);
    ASSERT_GE(info->elements, 6u);
    EXPECT_EQ(std::string(info->element[0]->str, info->element[0]->len), e.name);
    EXPECT_EQ(info->element[1]->integer, e.arity) << e.name;
    EXPECT_EQ(info->element[3]->integer, e.first) << e.name;
    EXPECT_EQ(info->element[4]->integer, e.last) << e.name;
    EXPECT_EQ(info->element[5]->integer, e.step) << e.name;
  }
}

// SETs prefix<i> = value until the store refuses one with the OOM error;
// returns how many were stored, or -1 if it never refused within limit.
int FillUntilOom(redisContext* c, const std::string& prefix, const std::string& value, int limit) {
  for (int i = 0; i < limit; i++) {
    Reply r = Command(c, {"SET", prefix + std::to_string(i), value});
    std::string got = DescribeReply(r.get());
    if (got == kOom) return i;
    if (got != "+OK") {
      ADD_FAILURE() << "SET " << prefix << i << ": " << got;
      return -1;
    }
  }
  return -1;
}

// A full store (noeviction) refuses every write with Redis's exact OOM
// error, and nothing else: reads keep working, a refused SET ... GET or
// GETSET sends only the error, and a refused MSET or MSETNX changes none of
// its keys.
TEST_F(StringCommandsTest, FullStoreAnswersOom) {
  Start({"--workers", "2", "--maxmemory", "2mb"});
  ASSERT_EQ(Do({"SET", "counter", "10"}), "+OK");
  ASSERT_EQ(Do({"SET", "float", "1.5"}), "+OK");
  ASSERT_EQ(Do({"SET", "text", "abc"}), "+OK");
  // Large values first, then smaller ones, down to entries of the smallest
  // size the writes below need: then none of them fits.
  ASSERT_GE(FillUntilOom(c_.get(), "big:", std::string(64 * 1024, 'b'), 100), 3);
  ASSERT_GE(FillUntilOom(c_.get(), "mid:", std::string(1024, 'm'), 1000), 0);
  ASSERT_GE(FillUntilOom(c_.get(), "t:", "", 100000), 0);

  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {"SET", "k", "v"},
           {"SET", "counter", "v"},
           {"SET", "k", "v", "NX"},
           {"SET", "counter", "1", "XX"},
           {"SET", "k", "v", "EX", "100"},
           {"SETNX", "k", "v"},
           {"SETEX", "k", "100", "v"},
           {"PSETEX", "k", "100000", "v"},
           {"MSET", "k", "v", "k2", "v2"},
           {"MSETNX", "k", "v", "k2", "v2"},
           {"INCR", "counter"},
           {"DECR", "counter"},
           {"INCRBY", "counter", "5"},
           {"DECRBY", "counter", "5"},
           {"INCR", "newcounter"},
           {"INCRBYFLOAT", "float", "1"},
           {"APPEND", "text", "more"},
           {"APPEND", "newtext", "more"},
           {"SETRANGE", "text", "0", "x"},
           {"SETRANGE", "text", "100", "x"},
       }) {
    EXPECT_EQ(Do(argv), kOom) << ::testing::PrintToString(argv);
  }
  // Nothing else is in the reply of a refused SET ... GET or GETSET: the
  // next reply on the connection is the next command's.
  EXPECT_EQ(Do({"SET", "counter", "1", "GET"}), kOom);
  EXPECT_EQ(Do({"GETSET", "counter", "1"}), kOom);
  EXPECT_EQ(Do({"SET", "k", "1", "GET"}), kOom);
  EXPECT_EQ(Do({"PING"}), "+PONG");

  // Reads work, and nothing changed.
  EXPECT_EQ(Do({"GET", "counter"}), "$2 10");
  EXPECT_EQ(Do({"GET", "float"}), "$3 1.5");
  EXPECT_EQ(Do({"GET", "text"}), "$3 abc");
  EXPECT_EQ(Do({"MGET", "counter", "k", "k2"}), "*3 [$2 10, (nil), (nil)]");
  EXPECT_EQ(Do({"STRLEN", "big:0"}), ":65536");
  EXPECT_EQ(Do({"GETRANGE", "text", "1", "2"}), "$2 bc");
  EXPECT_EQ(Do({"GETEX", "text"}), "$3 abc");
  EXPECT_EQ(Do({"EXISTS", "k", "k2", "newcounter", "newtext"}), ":0");
  // Writes that need no memory still work: an empty SETRANGE, a failed NX.
  EXPECT_EQ(Do({"SETRANGE", "text", "0", ""}), ":3");
  EXPECT_EQ(Do({"SETNX", "counter", "1"}), ":0");
  EXPECT_EQ(Do({"MSETNX", "counter", "1", "k", "v"}), ":0");

  // Room for 64 KB, not for 100 KB: MSETNX's first key fits, its second
  // does not, and the first is taken back.
  ASSERT_EQ(Do({"DEL", "big:0"}), ":1");
  EXPECT_EQ(Do({"MSETNX", "small", "", "huge", std::string(100 * 1024, 'h')}), kOom);
  EXPECT_EQ(Do({"EXISTS", "small", "huge"}), ":0");
  // MSET likewise: its existing keys' new values fit, the new huge one does
  // not, and the whole command changes nothing.
  EXPECT_EQ(Do({"MSET", "counter", "99", "text", "xyz", "small", "", "huge",
                std::string(100 * 1024, 'h')}),
            kOom);
  EXPECT_EQ(Do({"MGET", "counter", "text", "small", "huge"}), "*4 [$2 10, $3 abc, (nil), (nil)]");
  EXPECT_EQ(Do({"EXISTS", "small", "huge"}), ":0");

  // Freeing memory makes writes work again.
  ASSERT_EQ(Do({"DEL", "big:1", "big:2"}), ":2");
  EXPECT_EQ(Do({"INCR", "counter"}), ":11");
  EXPECT_EQ(Do({"APPEND", "text", "d"}), ":4");
  EXPECT_EQ(Do({"SET", "counter", "20", "GET"}), "$2 11");
  EXPECT_EQ(Do({"GET", "counter"}), "$2 20");
}

// RESP3 (HELLO 3): byte for byte over a raw socket, then through redis-cli -3.
TEST_F(StringCommandsTest, Resp3Replies) {
  Socket s = Socket::Connect(server_->port());
  ASSERT_TRUE(s.valid());
  ASSERT_TRUE(s.SendAll(FormatCommand({"HELLO", "3"})));
  std::string hello = s.RecvUntil("$7\r\nmodules\r\n*0\r\n");
  ASSERT_TRUE(hello.starts_with("%7\r\n")) << hello;
  const std::vector<std::pair<std::vector<std::string>, std::string>> exchanges = {
      {{"GET", "nokey"}, "_\r\n"},
      {{"GETEX", "nokey"}, "_\r\n"},
      {{"GETEX", "nokey", "PERSIST"}, "_\r\n"},
      {{"GETDEL", "nokey"}, "_\r\n"},
      {{"GETSET", "gs", "v"}, "_\r\n"},
      {{"SET", "a", "1"}, "+OK\r\n"},
      {{"SET", "a", "2", "NX"}, "_\r\n"},
      {{"SET", "n", "2", "XX"}, "_\r\n"},
      {{"SET", "n", "2", "XX", "GET"}, "_\r\n"},
      {{"SET", "a", "3", "GET"}, "$1\r\n1\r\n"},
      {{"MGET", "a", "nokey", "gs"}, "*3\r\n$1\r\n3\r\n_\r\n$1\r\nv\r\n"},
      {{"GETEX", "a", "EX", "100"}, "$1\r\n3\r\n"},
      {{"INCRBYFLOAT", "f", "1.5"}, "$3\r\n1.5\r\n"},  // a bulk string, not a double
      {{"INCR", "c"}, ":1\r\n"},
      {{"SETNX", "a", "x"}, ":0\r\n"},
      {{"MSETNX", "a", "x"}, ":0\r\n"},
      {{"MSET", "m", "1"}, "+OK\r\n"},
      {{"GETRANGE", "nokey", "0", "1"}, "$0\r\n\r\n"},
      {{"STRLEN", "a"}, ":1\r\n"},
      {{"SET", "a", "1", "EX", "0"}, "-ERR invalid expire time in 'set' command\r\n"},
  };
  for (const auto& [argv, expected] : exchanges) {
    ASSERT_TRUE(s.SendAll(FormatCommand(argv)));
    EXPECT_EQ(s.RecvN(expected.size()), expected) << ::testing::PrintToString(argv);
  }

  if (std::string(REDIS_CLI_PATH).empty())
    FAIL() << "redis-cli not found (deploy/install-deps.sh installs it)";
  const std::string port = std::to_string(server_->port());
  auto cli = [&](const std::vector<std::string>& args) {
    // --no-raw: the typed form ("(nil)", "(integer) 1", "\"text\"") even
    // off a terminal.
    std::vector<std::string> argv = {REDIS_CLI_PATH, "-3", "--no-raw", "-h",
                                     "127.0.0.1",    "-p", port};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = RunCommand(argv, std::chrono::seconds(20));
    EXPECT_TRUE(r.ok()) << r.Describe();
    return r.out;
  };
  EXPECT_EQ(cli({"MGET", "a", "nokey", "gs"}), "1) \"3\"\n2) (nil)\n3) \"v\"\n");
  EXPECT_EQ(cli({"GETEX", "nokey"}), "(nil)\n");
  EXPECT_EQ(cli({"GETEX", "a", "PERSIST"}), "\"3\"\n");
  EXPECT_EQ(cli({"INCRBYFLOAT", "f", "1"}), "\"2.5\"\n");
  EXPECT_EQ(cli({"SET", "a", "4", "NX"}), "(nil)\n");
  EXPECT_EQ(cli({"SET", "a", "4", "GET"}), "\"3\"\n");
  EXPECT_EQ(cli({"SETNX", "a", "5"}), "(integer) 0\n");
  EXPECT_EQ(cli({"INCRBY", "c", "41"}), "(integer) 42\n");
  EXPECT_EQ(cli({"GETDEL", "nokey"}), "(nil)\n");
  EXPECT_EQ(cli({"GETRANGE", "a", "0", "0"}), "\"4\"\n");
  EXPECT_EQ(cli({"SET", "a", "1", "NX", "XX"}), "(error) ERR syntax error\n");
}

}  // namespace
}  // namespace redhub::integration
