// Access control end to end: redhubd with --requirepass or --aclfile
// against redis-server 7.0 given the same settings, byte for byte where the
// two can agree (NOAUTH, AUTH and HELLO AUTH, every ACL subcommand and its
// errors, NOPERM for commands, keys and subcommands, the ACL LOG's fields);
// real clients authenticating (redis-cli, redis-py, redis_exporter); the
// ACL file at start, ACL SAVE in Redis's format (loaded by redis-server),
// ACL LOAD closing the connections of the users it replaces; and the denial
// counters in INFO and /metrics.
//
// What cannot agree, and is not compared: HELLO's map (server, version,
// id), client ids, ACL LOG's age-seconds and client-info, ACL CAT <category>
// (our table is smaller), ACL GENPASS's random text, and the order of
// single commands in a user's description (Redis writes them in its
// command dict's order, which is a hash order; we compare those as sets).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

constexpr char kPassword[] = "s3cret";

// ---- RESP3 bytes ----

std::string Raw3(Socket& s, const std::vector<std::string>& argv) { return RawReply(s, argv); }

// ---- helpers ----

// A connection, authenticated with AUTH's arguments if any are given.
Socket Connect(uint16_t port, const std::vector<std::string>& auth = {}) {
  Socket s = Socket::Connect(port);
  if (s.valid() && !auth.empty()) {
    std::vector<std::string> argv = {"AUTH"};
    argv.insert(argv.end(), auth.begin(), auth.end());
    EXPECT_EQ(RawCommand(s, argv), "+OK\r\n") << ::testing::PrintToString(argv);
  }
  return s;
}

// The words of each line of an ACL LIST reply, so that lines whose single
// commands Redis writes in its hash order still compare.
std::vector<std::multiset<std::string>> ListWords(const redisReply* r) {
  std::vector<std::multiset<std::string>> out;
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return out;
  for (size_t i = 0; i < r->elements; i++) {
    std::istringstream line(std::string(r->element[i]->str, r->element[i]->len));
    std::multiset<std::string> words;
    for (std::string w; line >> w;) words.insert(w);
    out.push_back(std::move(words));
  }
  return out;
}

// ACL LOG's entries (RESP2: arrays of name, value pairs) with their field
// names in order and every value but age-seconds' and client-info's.
std::vector<std::vector<std::string>> LogEntries(const redisReply* r) {
  std::vector<std::vector<std::string>> out;
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) {
    ADD_FAILURE() << "ACL LOG: " << DescribeReply(r);
    return out;
  }
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply* e = r->element[i];
    std::vector<std::string> fields;
    for (size_t j = 0; j + 1 < e->elements; j += 2) {
      std::string name(e->element[j]->str, e->element[j]->len);
      fields.push_back(name);
      const redisReply* v = e->element[j + 1];
      if (name == "age-seconds" || name == "client-info") continue;
      fields.push_back(v->type == REDIS_REPLY_INTEGER ? std::to_string(v->integer)
                                                      : std::string(v->str, v->len));
    }
    out.push_back(std::move(fields));
  }
  return out;
}

// redhubd and redis-server, both with the same requirepass.
class AclParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ours_ = StartRedhubd({"--workers", "2", "--maxmemory", "8mb", "--requirepass", kPassword},
                         {.auth = {kPassword}});
    ASSERT_NE(ours_, nullptr);
    ref_ = StartRedisServer({"--requirepass", kPassword}, {kPassword});
    ASSERT_NE(ref_, nullptr);
  }
  // Both sides' connections, authenticated with auth if given.
  std::pair<Socket, Socket> Pair(const std::vector<std::string>& auth = {}) {
    return {Connect(ours_->port(), auth), Connect(ref_->port(), auth)};
  }
  void Expect(const std::vector<std::vector<std::string>>& script,
              const std::vector<std::string>& auth = {kPassword}) {
    auto [ours, ref] = Pair(auth);
    ExpectRepliesAsReference(ours, ref, script);
  }
  // Runs argv on both (as the default user) and compares the ACL LIST
  // words of each user, whatever the order of single commands.
  void ExpectListAsReference() {
    Context a = ConnectHiredis(ours_->port()), b = ConnectHiredis(ref_->port());
    ASSERT_TRUE(a && b);
    ASSERT_EQ(DescribeReply(Command(a.get(), {"AUTH", kPassword}).get()), "+OK");
    ASSERT_EQ(DescribeReply(Command(b.get(), {"AUTH", kPassword}).get()), "+OK");
    Reply x = Command(a.get(), {"ACL", "LIST"}), y = Command(b.get(), {"ACL", "LIST"});
    EXPECT_EQ(ListWords(x.get()), ListWords(y.get()))
        << DescribeReply(x.get()) << "\nreference: " << DescribeReply(y.get());
  }

  std::unique_ptr<ServerProcess> ours_;
  std::unique_ptr<ServerProcess> ref_;
};

// Before AUTH only AUTH, HELLO and QUIT run; unknown commands and wrong
// arity are answered first, as Redis's processCommand orders its checks;
// AUTH's one- and two-argument forms, right and wrong, and HELLO AUTH.
TEST_F(AclParityTest, UnauthenticatedClientsAnswerAsRedis) {
  auto [ours, ref] = Pair();
  ASSERT_NO_FATAL_FAILURE(ExpectRepliesAsReference(
      ours, ref,
      {
          {"GET", "k"},
          {"PING"},
          {"SET", "k", "v"},
          {"ACL", "WHOAMI"},
          {"NOSUCHCOMMAND", "a"},
          {"GET"},
          {"HELLO"},
          {"HELLO", "3"},
          // Redis 7.0 sets the name as it meets SETNAME, before the NOAUTH.
          {"HELLO", "2", "SETNAME", "early"},
          {"AUTH", "a", "b", "c"},
          {"AUTH", "wrong"},
          {"AUTH", "default", "wrong"},
          {"AUTH", "nosuchuser", kPassword},
          {"HELLO", "3", "AUTH", "default", "wrong"},
          {"HELLO", "2", "AUTH", "nosuchuser", kPassword},
          {"GET", "k"},
          {"AUTH", kPassword},
          {"GET", "k"},
          {"CLIENT", "GETNAME"},
          {"ACL", "WHOAMI"},
          {"AUTH", "wrong"},  // a failed AUTH leaves the connection as it was
          {"GET", "k"},
          {"AUTH", "default", kPassword},
          {"ACL", "WHOAMI"},
      }));
  // QUIT needs no password.
  auto [ours2, ref2] = Pair();
  ASSERT_NO_FATAL_FAILURE(ExpectRepliesAsReference(ours2, ref2, {{"QUIT"}}));
  EXPECT_TRUE(ours2.WaitForClose());
  EXPECT_TRUE(ref2.WaitForClose());

  // HELLO 2 AUTH: the map names the server, so only its shape compares.
  auto [ours3, ref3] = Pair();
  for (Socket* s : {&ours3, &ref3}) {
    std::string hello = RawCommand(*s, {"HELLO", "2", "AUTH", "default", kPassword});
    EXPECT_EQ(hello.rfind("*14\r\n$6\r\nserver\r\n", 0), 0u) << hello;
    EXPECT_NE(hello.find("$5\r\nproto\r\n:2\r\n"), std::string::npos) << hello;
  }
  ASSERT_NO_FATAL_FAILURE(ExpectRepliesAsReference(ours3, ref3, {{"GET", "k"}, {"ACL", "WHOAMI"}}));
}

// HELLO 3 AUTH right: RESP3 from then on, ACL GETUSER as a map, ACL LOG's
// age as a double (only its type compares).
TEST_F(AclParityTest, Hello3AuthAndGetuserInResp3AnswerAsRedis) {
  Expect({{"ACL", "SETUSER", "alice", "on", ">apw", "#" + std::string(64, 'a'), "~a*", "%R~r*",
           "%W~w*", "&news.*", "-@all", "+@string", "+config|get"}});
  // (One single command only: Redis lists several in its command dict's
  // order, which its random hash seed changes from run to run.)
  auto [ours, ref] = Pair();
  for (Socket* s : {&ours, &ref}) {
    std::string hello = Raw3(*s, {"HELLO", "3", "AUTH", "default", kPassword});
    EXPECT_EQ(hello.rfind("%7\r\n$6\r\nserver\r\n", 0), 0u) << hello;
  }
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {"ACL", "GETUSER", "alice"},
           {"ACL", "GETUSER", "default"},
           {"ACL", "GETUSER", "nosuchuser"},
           {"ACL", "WHOAMI"},
           {"ACL", "USERS"},
           {"ACL", "DRYRUN", "alice", "set", "a1", "v"},
           {"ACL", "DRYRUN", "alice", "get", "b"},
           {"ACL", "LOG", "RESET"},
       }) {
    std::string expected = Raw3(ref, argv);
    ASSERT_FALSE(expected.empty()) << ::testing::PrintToString(argv);
    EXPECT_EQ(Raw3(ours, argv), expected) << ::testing::PrintToString(argv);
  }
  Socket a = Connect(ours_->port()), b = Connect(ref_->port());
  EXPECT_EQ(RawCommand(a, {"AUTH", "alice", "nope"}), RawCommand(b, {"AUTH", "alice", "nope"}));
  std::string x = Raw3(ours, {"ACL", "LOG"}), y = Raw3(ref, {"ACL", "LOG"});
  size_t ax = x.find("$11\r\nage-seconds\r\n,"), ay = y.find("$11\r\nage-seconds\r\n,");
  EXPECT_NE(ax, std::string::npos) << x;
  EXPECT_NE(ay, std::string::npos) << y;
  // Everything before the age is the same.
  EXPECT_EQ(x.substr(0, ax), y.substr(0, ay));
}

// Each rule kind of ACL SETUSER, as ACL GETUSER and ACL LIST show it, and
// every error text.
TEST_F(AclParityTest, SetuserRulesAnswerAsRedis) {
  const std::string hash(64, 'b');
  std::vector<std::vector<std::string>> script = {
      {"ACL", "SETUSER", "u", "on", ">p1", ">p2", "#" + hash, "<p1", "!" + hash},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "nopass"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", ">p3", "resetpass", "off"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "~a*", "%R~r*", "%W~w*", "%RW~rw*", "&ch*"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "allkeys", "allchannels"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "resetkeys", "resetchannels", "~x", "&y"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "+@all", "-@dangerous"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "allcommands", "-get"},
      {"ACL", "GETUSER", "u"},
      // (A category's commands are listed one by one when they do not make
      // the whole category: ours has fewer and Redis lists them in its hash
      // order, so not compared: "nocommands +@string -@write".)
      {"ACL", "SETUSER", "u", "-@all", "+get"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "-@all", "+config|get"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "-@all", "+client|list", "+client|id"},
      {"ACL", "SETUSER", "u", "+@all", "-config|get"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "sanitize-payload"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "skip-sanitize-payload", "ON", "+@ALL", "ALLKEYS"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "reset"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u", "~a", "allkeys"},  // a pattern before allkeys is fine
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "v"},
      {"ACL", "GETUSER", "v"},
      // Odd but valid patterns.
      {"ACL", "SETUSER", "p1", "%R"},
      {"ACL", "SETUSER", "p2", "%rw~k", "%WR~j", "%W~k"},
      {"ACL", "SETUSER", "p3", "%R~", "~", "&"},
      {"ACL", "SETUSER", "p4", "%R~*", "%W~*"},
      // (Not compared: "%RW~*" then "~x", which Redis takes, as "%RW~*" is
      // not allkeys there, and describes as "~* ~x", a line it cannot load.)
      {"ACL", "SETUSER", "p6", "~k", "%R~k"},
      {"ACL", "GETUSER", "p1"},
      {"ACL", "GETUSER", "p2"},
      {"ACL", "GETUSER", "p3"},
      {"ACL", "GETUSER", "p4"},
      {"ACL", "GETUSER", "p6"},
      {"ACL", "SETUSER", "w", "on", "nopass", "~*", "&*", "+@all"},
      {"ACL", "GETUSER", "w"},
      // The errors, in Redis's words; nothing of a refused SETUSER applies.
      {"ACL", "SETUSER", "u", "on", "bogus"},
      {"ACL", "SETUSER", "u", "+nosuchcommand"},
      {"ACL", "SETUSER", "u", "+@nosuchcategory"},
      {"ACL", "SETUSER", "u", "-get|key"},
      {"ACL", "SETUSER", "u", "+config|get|x"},
      {"ACL", "SETUSER", "u", "#abc"},
      {"ACL", "SETUSER", "u", "!" + std::string(64, 'B')},
      {"ACL", "SETUSER", "u", "<neverset"},
      {"ACL", "SETUSER", "u", "!" + hash},
      {"ACL", "SETUSER", "u", "%X~k"},  // allkeys is checked first
      {"ACL", "SETUSER", "u", "%~k"},
      {"ACL", "SETUSER", "u", "~a b"},
      {"ACL", "SETUSER", "u", "+client|x|y"},
      {"ACL", "SETUSER", "u", "+nosuch|x"},
      {"ACL", "SETUSER", "u", "-config|get|x"},
      {"ACL", "SETUSER", "u", "+select|0|1"},
      {"ACL", "SETUSER", "u", "+config|"},
      {"ACL", "SETUSER", "u", "-config|"},
      {"ACL", "SETUSER", "u", "allkeys", "~k"},
      {"ACL", "SETUSER", "u", "allchannels", "&c"},
      {"ACL", "SETUSER", "u", "a b"},
      {"ACL", "SETUSER", "bad name", "on"},
      {"ACL", "SETUSER", "u", "reset", "%X~k"},
      {"ACL", "SETUSER", "u", "reset", "%~k"},
      {"ACL", "SETUSER", "u", "reset", "%RR~k"},
      {"ACL", "SETUSER", "u", "reset", "~a b"},
      {"ACL", "SETUSER", "u", "reset", "%R~a b"},
      {"ACL", "SETUSER", "u", "reset", "&a b"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER", "u"},
      {"ACL", "GETUSER", "u"},
      {"ACL", "SETUSER"},
      {"ACL", "GETUSER"},
      {"ACL", "GETUSER", "nosuchuser"},
  };
  // Selectors ("(...)", clearselectors) are refused by design: not compared.
  ASSERT_NO_FATAL_FAILURE(Expect(script));
  ASSERT_NO_FATAL_FAILURE(ExpectListAsReference());
}

// A line of ACL LIST for rules whose single commands Redis orders by hash:
// compared byte for byte only where at most one single command is listed.
TEST_F(AclParityTest, AclListAnswersAsRedis) {
  ASSERT_NO_FATAL_FAILURE(Expect({
      {"ACL", "SETUSER", "a", "on", ">pa", "~a*", "+@all", "-@dangerous"},
      {"ACL", "SETUSER", "b", "off", "nopass", "%R~r*", "&b*", "-@all", "+get"},
      {"ACL", "SETUSER", "c", "on", "#" + std::string(64, 'c'), "allkeys", "+@read", "-@admin"},
      {"ACL", "SETUSER", "d", "-@all", "+config|get"},
      {"ACL", "LIST"},
      {"ACL", "USERS"},
      {"ACL", "SETUSER", "e", "-@all", "+get", "+set", "+del", "+client|list"},
  }));
  ASSERT_NO_FATAL_FAILURE(ExpectListAsReference());
}

// ACL USERS, WHOAMI, CAT, GENPASS, DELUSER, DRYRUN, HELP and the arity and
// subcommand errors.
TEST_F(AclParityTest, AclSubcommandsAnswerAsRedis) {
  ASSERT_NO_FATAL_FAILURE(Expect({
      {"ACL", "SETUSER", "alice", "on", "nopass", "~k*", "+@all", "-@dangerous"},
      {"ACL", "SETUSER", "bob", "on", "nopass", "%W~w*", "-@all", "+set", "+get"},
      {"ACL", "SETUSER", "carol"},
      {"ACL", "USERS"},
      {"ACL", "WHOAMI"},
      {"ACL", "CAT"},
      {"ACL", "CAT", "nosuchcategory"},
      {"ACL", "CAT", "a", "b"},
      {"ACL", "GENPASS", "0"},
      {"ACL", "GENPASS", "4097"},
      {"ACL", "GENPASS", "-5"},
      {"ACL", "GENPASS", "x"},
      {"ACL", "GENPASS", "1", "2"},
      {"ACL", "LOG", "1", "2"},
      {"acl", "cat", "a", "b"},
      {"ACL", "USERS", "x"},
      {"ACL", "LIST", "x"},
      {"ACL", "DELUSER"},
      {"ACL", "GETUSER", "a", "b"},
      {"ACL", "DELUSER", "default"},
      {"ACL", "DELUSER", "carol", "default"},
      {"ACL", "USERS"},  // nothing deleted
      {"ACL", "DELUSER", "carol", "nosuchuser", "carol"},
      {"ACL", "DELUSER", "nosuchuser"},
      {"ACL", "USERS"},
      {"ACL", "DRYRUN", "alice", "get", "k1"},
      {"ACL", "DRYRUN", "alice", "get", "x"},
      {"ACL", "DRYRUN", "alice", "config", "get", "maxmemory"},
      {"ACL", "DRYRUN", "alice", "client", "list"},
      {"ACL", "DRYRUN", "alice", "client", "id"},
      {"ACL", "DRYRUN", "bob", "set", "w1", "v"},
      {"ACL", "DRYRUN", "bob", "get", "w1"},
      {"ACL", "DRYRUN", "bob", "set", "w1", "v", "GET"},
      {"ACL", "DRYRUN", "bob", "del", "w1"},
      {"ACL", "DRYRUN", "nosuchuser", "get", "k"},
      {"ACL", "DRYRUN", "alice", "nosuchcommand"},
      {"ACL", "DRYRUN", "alice", "get"},
      {"ACL", "DRYRUN", "alice"},
      {"ACL", "HELP"},
      {"ACL", "WHOAMI", "x"},
      {"ACL", "NOSUCH"},
      {"ACL"},
      {"ACL", "SAVE"},  // neither has an ACL file
      {"ACL", "LOAD"},
  }));
  // GENPASS is random: its length only (hex digits, bits/4 rounded up).
  auto [ours, ref] = Pair({kPassword});
  for (const char* bits : {"", "1", "5", "256", "4096"}) {
    std::vector<std::string> argv = {"ACL", "GENPASS"};
    if (*bits != 0) argv.push_back(bits);
    Reply x = SocketCommand(ours, argv), y = SocketCommand(ref, argv);
    ASSERT_TRUE(x && y && x->type == REDIS_REPLY_STRING && y->type == REDIS_REPLY_STRING) << bits;
    EXPECT_EQ(x->len, y->len) << bits;
    std::string text(x->str, x->len);
    EXPECT_EQ(text.find_first_not_of("0123456789abcdef"), std::string::npos) << text;
  }
  EXPECT_NE(RawCommand(ours, {"ACL", "GENPASS"}), RawCommand(ours, {"ACL", "GENPASS"}));
}

// NOPERM for a command, for a key outside ~, for %R~ and %W~ keys (SET ...
// GET needs both), EXISTS (any key outside is refused), and +config|get
// with CONFIG's other subcommands refused; AUTH as another user and back.
TEST_F(AclParityTest, NopermAnswersAsRedis) {
  ASSERT_NO_FATAL_FAILURE(Expect({
      {"ACL", "SETUSER", "keys", "on", ">kp", "~k*", "-@all", "+get", "+set", "+exists",
       "+config|get", "+acl|whoami"},
      {"ACL", "SETUSER", "rw", "on", ">rp", "%R~r*", "%W~w*", "~both*", "+@all"},
  }));
  ASSERT_NO_FATAL_FAILURE(Expect(
      {
          {"ACL", "WHOAMI"},
          {"GET", "k1"},
          {"SET", "k1", "v"},
          {"GET", "x"},
          {"SET", "x", "v"},
          {"DEL", "k1"},
          {"EXISTS", "k1", "k2"},
          {"EXISTS", "k1", "x"},
          {"CONFIG", "GET", "maxclients"},
          {"CONFIG", "RESETSTAT"},
          {"CONFIG", "SET", "maxclients", "10"},
          {"ACL", "WHOAMI"},
          {"PING"},
          {"NOSUCHCOMMAND"},
          {"GET"},
          {"AUTH", "default", kPassword},
          {"DEL", "k1"},
      },
      {"keys", "kp"}));
  ASSERT_NO_FATAL_FAILURE(Expect(
      {
          {"GET", "r1"},
          {"SET", "r1", "v"},
          {"SET", "w1", "v"},
          {"GET", "w1"},
          {"SET", "w1", "v", "GET"},
          {"SET", "both1", "v", "GET"},
          {"SET", "r1", "v", "GET"},
          {"EXISTS", "r1"},
          {"EXISTS", "w1"},
          {"EXISTS", "r1", "both1"},
          {"MGET", "r1", "w1"},
          {"MSET", "w1", "a", "w2", "b"},
          {"MSET", "w1", "a", "r2", "b"},
          {"DEL", "w1", "both1"},
          {"APPEND", "w1", "x"},
          {"INCR", "r1"},
          {"GET", "x"},
      },
      {"rw", "rp"}));
}

// The ACL LOG's entries: auth, command and key refusals, grouped as Redis
// groups them (count), newest first, with the same fields; RESET.
TEST_F(AclParityTest, AclLogAnswersAsRedis) {
  ASSERT_NO_FATAL_FAILURE(Expect({
      {"ACL", "LOG", "RESET"},
      {"ACL", "SETUSER", "alice", "on", ">apw", "~a*", "-@all", "+get", "+config|get"},
  }));
  ASSERT_NO_FATAL_FAILURE(Expect({{"AUTH", "wrong"},
                                  {"AUTH", "nosuchuser", "x"},
                                  {"auth", "default", "wrong"},
                                  {"AUTH", "wrong"},
                                  {"HELLO", "2", "AUTH", "alice", "wrong"}},
                                 {}));
  ASSERT_NO_FATAL_FAILURE(Expect({{"GET", "b"},
                                  {"GET", "b"},
                                  {"GET", "c"},
                                  {"SET", "a1", "v"},
                                  {"CONFIG", "RESETSTAT"},
                                  {"CONFIG", "GET", "maxclients"},
                                  {"GET", "a1"}},
                                 {"alice", "apw"}));
  Context a = ConnectHiredis(ours_->port()), b = ConnectHiredis(ref_->port());
  ASSERT_TRUE(a && b);
  ASSERT_EQ(DescribeReply(Command(a.get(), {"AUTH", kPassword}).get()), "+OK");
  ASSERT_EQ(DescribeReply(Command(b.get(), {"AUTH", kPassword}).get()), "+OK");
  Reply x = Command(a.get(), {"ACL", "LOG"}), y = Command(b.get(), {"ACL", "LOG"});
  std::vector<std::vector<std::string>> ours = LogEntries(x.get()), ref = LogEntries(y.get());
  EXPECT_EQ(ours, ref);
  EXPECT_EQ(ours.size(), 8u);
  // client-info is CLIENT INFO's line of the refused client, at the command.
  ASSERT_EQ(x->type, REDIS_REPLY_ARRAY);
  ASSERT_GE(x->elements, 1u);
  const redisReply* newest = x->element[0];
  ASSERT_EQ(newest->elements, 14u);
  std::string info(newest->element[13]->str, newest->element[13]->len);
  EXPECT_NE(info.find(" user=alice "), std::string::npos) << info;
  EXPECT_NE(info.find(" cmd=config|resetstat "), std::string::npos) << info;
  // A count, and RESET.
  x = Command(a.get(), {"ACL", "LOG", "2"});
  y = Command(b.get(), {"ACL", "LOG", "2"});
  EXPECT_EQ(LogEntries(x.get()), LogEntries(y.get()));
  ASSERT_NO_FATAL_FAILURE(
      Expect({{"ACL", "LOG", "0"}, {"ACL", "LOG", "x"}, {"ACL", "LOG", "RESET"}, {"ACL", "LOG"}}));
}

// The denial counters of INFO stats, as Redis counts them, and their
// Prometheus families on the admin endpoint.
TEST(AclStatsTest, DenialsAreCountedInInfoAndMetrics) {
  const uint16_t admin = PickFreePort();
  ASSERT_NE(admin, 0);
  auto ours = StartRedhubd({"--workers", "2", "--maxmemory", "8mb", "--requirepass", kPassword,
                            "--admin-port", std::to_string(admin)},
                           {.auth = {kPassword}});
  ASSERT_NE(ours, nullptr);
  auto ref = StartRedisServer({"--requirepass", kPassword}, {kPassword});
  ASSERT_NE(ref, nullptr);
  const std::vector<std::vector<std::string>> as_default = {
      {"ACL", "SETUSER", "alice", "on", ">apw", "~a*", "-@all", "+get"}};
  const std::vector<std::vector<std::string>> unauthenticated = {
      {"AUTH", "wrong"}, {"AUTH", "alice", "wrong"}, {"HELLO", "3", "AUTH", "x", "y"}};
  const std::vector<std::vector<std::string>> as_alice = {
      {"GET", "b"}, {"GET", "c"}, {"SET", "a", "v"}, {"GET", "a"}};
  for (ServerProcess* server : {ours.get(), ref.get()}) {
    Socket d = Connect(server->port(), {kPassword});
    for (const auto& argv : as_default) RawCommand(d, argv);
    Socket u = Connect(server->port());
    for (const auto& argv : unauthenticated) RawCommand(u, argv);
    Socket s = Connect(server->port(), {"alice", "apw"});
    for (const auto& argv : as_alice) RawCommand(s, argv);
  }
  Context a = ConnectHiredis(ours->port()), b = ConnectHiredis(ref->port());
  ASSERT_TRUE(a && b);
  ASSERT_EQ(DescribeReply(Command(a.get(), {"AUTH", kPassword}).get()), "+OK");
  ASSERT_EQ(DescribeReply(Command(b.get(), {"AUTH", kPassword}).get()), "+OK");
  const std::map<std::string, int64_t> expected = {
      {"acl_access_denied_auth", 3}, {"acl_access_denied_cmd", 1}, {"acl_access_denied_key", 2}};
  for (const auto& [field, n] : expected) {
    // (redis-server 7.0.15 has none of these fields: they came with 7.2,
    // whose counting the expected figures follow.)
    EXPECT_EQ(InfoInt(a.get(), "stats", field), n) << field;
  }
  // /metrics: the admin process sums the workers' blocks.
  const std::map<std::string, int> families = {{"redhub_acl_denied_auth_total", 3},
                                               {"redhub_acl_denied_commands_total", 1},
                                               {"redhub_acl_denied_keys_total", 2}};
  std::string body;
  bool all = WaitUntil([&] {
    Socket h = Socket::Connect(admin);
    body.clear();
    if (!h.valid() || !h.SendAll("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n") ||
        !h.WaitForClose(kTimeout, &body)) {
      return false;
    }
    for (const auto& [name, n] : families) {
      if (body.find("\n" + name + " " + std::to_string(n) + "\n") == std::string::npos) {
        return false;
      }
    }
    return true;
  });
  EXPECT_TRUE(all) << body;
}

// Known divergences, failing until fixed (see the report of fix/acltest):
// subcommands Redis has and we do not serve get no categories here, so
// "+@all -@dangerous" leaves CONFIG SET and CLIENT KILL allowed (DRYRUN
// says OK; the command answers "unknown subcommand" where Redis says
// NOPERM); an unknown subcommand of a restricted user is refused by the
// ACL (and logged) where Redis answers "unknown subcommand"; and a
// category none of whose commands we have ("+@hash") drops out of the
// user's description, so ACL SAVE writes a file that grants Redis less.
TEST_F(AclParityTest, SubcommandsAndCategoriesOutsideOurTableAnswerAsRedis) {
  ASSERT_NO_FATAL_FAILURE(Expect({
      {"ACL", "SETUSER", "ops", "on", ">op", "allkeys", "+@all", "-@dangerous"},
      {"ACL", "SETUSER", "cfg", "on", ">cp", "allkeys", "-@all", "+config|get"},
      {"ACL", "SETUSER", "h", "-@all", "+@hash"},
      {"ACL", "GETUSER", "h"},
  }));
  // Not compared: CONFIG NOSUCH for cfg. Redis looks the subcommand up
  // first (unknown subcommand); here a subcommand this server does not
  // serve is judged by the user's rules, so cfg gets NOPERM (not run
  // either way), while CONFIG SET and RESETSTAT get Redis's NOPERM.
  Socket cfg = Connect(ours_->port(), {"cfg", "cp"});
  EXPECT_EQ(RawCommand(cfg, {"CONFIG", "NOSUCH"}),
            "-NOPERM this user has no permissions to run the 'config|nosuch' command\r\n");
}

// Subcommands Redis has and this server does not serve (CONFIG SET, CLIENT
// KILL) are not run for anyone. Under "+@all -@dangerous" Redis refuses
// them by their categories (NOPERM); here they have none, the container's
// bit lets them through, and the handler answers unknown subcommand.
// Documented in worker/README.md.
TEST_F(AclParityTest, SubcommandsThisServerDoesNotServeRunForNobody) {
  Socket d = Connect(ours_->port(), {kPassword});
  ASSERT_EQ(
      RawCommand(d, {"ACL", "SETUSER", "ops", "on", ">op", "allkeys", "+@all", "-@dangerous"}),
      "+OK\r\n");
  Socket ops = Connect(ours_->port(), {"ops", "op"});
  EXPECT_EQ(RawCommand(ops, {"CONFIG", "SET", "maxclients", "10"}),
            "-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n");
  EXPECT_EQ(RawCommand(ops, {"CLIENT", "KILL", "1.2.3.4:5"}),
            "-ERR unknown subcommand 'KILL'. Try CLIENT HELP.\r\n");
  // What it serves follows the rules: CLIENT LIST is @admin @dangerous.
  EXPECT_EQ(RawCommand(ops, {"CLIENT", "LIST"}),
            "-NOPERM this user has no permissions to run the 'client|list' command\r\n");
}

// ---- real clients ----

class AclClientsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartRedhubd({"--workers", "1", "--maxmemory", "8mb", "--requirepass", kPassword},
                           {.auth = {kPassword}});
    ASSERT_NE(server_, nullptr);
    Socket d = Connect(server_->port(), {kPassword});
    ASSERT_EQ(RawCommand(d, {"ACL", "SETUSER", "app", "on", ">apppw", "~*", "+@all"}), "+OK\r\n");
    ASSERT_EQ(RawCommand(d, {"SET", "greeting", "hello"}), "+OK\r\n");
  }
  RunResult Cli(const std::vector<std::string>& args, const std::string& env = "") {
    std::vector<std::string> argv;
    if (!env.empty()) argv = {"/usr/bin/env", env};
    argv.insert(argv.end(), {REDIS_CLI_PATH, "-p", std::to_string(server_->port())});
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, kTimeout);
  }
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(AclClientsTest, RedisCliAuthenticatesByEveryMeans) {
  if (std::string(REDIS_CLI_PATH).empty()) GTEST_SKIP() << "redis-cli not installed";
  RunResult r = Cli({"--no-auth-warning", "-a", kPassword, "GET", "greeting"});
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.out, "hello\n") << r.Describe();
  r = Cli({"--no-auth-warning", "--user", "app", "--pass", "apppw", "ACL", "WHOAMI"});
  EXPECT_EQ(r.out, "app\n") << r.Describe();
  r = Cli({"ACL", "WHOAMI"}, std::string("REDISCLI_AUTH=") + kPassword);
  EXPECT_EQ(r.out, "default\n") << r.Describe();
  // Wrong: redis-cli reports the failed AUTH, and the command is refused.
  for (const auto& [args, env] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--no-auth-warning", "-a", "wrong", "GET", "greeting"}, ""},
           {{"--no-auth-warning", "--user", "app", "--pass", "wrong", "GET", "greeting"}, ""},
           {{"GET", "greeting"}, "REDISCLI_AUTH=wrong"}}) {
    r = Cli(args, env);
    EXPECT_NE(r.err.find("AUTH failed: WRONGPASS invalid username-password pair or user is "
                         "disabled."),
              std::string::npos)
        << r.Describe();
    EXPECT_EQ(r.out, "NOAUTH Authentication required.\n\n") << r.Describe();
  }
  r = Cli({"GET", "greeting"});
  EXPECT_EQ(r.out, "NOAUTH Authentication required.\n\n") << r.Describe();
}

TEST_F(AclClientsTest, RedisPyAuthenticatesWithPasswordAndUsername) {
  if (std::string(PYTHON3_PATH).empty()) GTEST_SKIP() << "python3 not installed";
  const std::string script = R"(
import sys, redis
port = int(sys.argv[1])
def attempt(**kw):
    try:
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, **kw)
        return "%s %s" % (r.get("greeting").decode(), r.acl_whoami())
    except redis.exceptions.ResponseError as e:
        return "ResponseError " + str(e)
    except redis.exceptions.AuthenticationError as e:
        return "AuthenticationError " + str(e)
print(attempt(password=sys.argv[2]))
print(attempt(username="app", password="apppw"))
print(attempt(password="wrong"))
print(attempt(username="app", password="wrong"))
print(attempt())
)";
  RunResult r = RunPython(script, {std::to_string(server_->port()), kPassword}, kTimeout);
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.out,
            "hello default\n"
            "hello app\n"
            "ResponseError WRONGPASS invalid username-password pair or user is disabled.\n"
            "ResponseError WRONGPASS invalid username-password pair or user is disabled.\n"
            "AuthenticationError Authentication required.\n")
      << r.Describe();
}

// Debian's prometheus-redis-exporter with REDIS_PASSWORD: redis_up is 1
// with the right password and 0 with a wrong one.
TEST_F(AclClientsTest, RedisExporterScrapesWithAPassword) {
  const char* exporter = "/usr/bin/prometheus-redis-exporter";
  ASSERT_EQ(access(exporter, X_OK), 0)
      << exporter << " missing (deploy/install-deps.sh installs it)";
  for (const auto& [password, up] :
       std::vector<std::pair<std::string, std::string>>{{kPassword, "1"}, {"wrong", "0"}}) {
    uint16_t port = PickFreePort();
    ServerProcess exp("redis_exporter");
    exp.set_env({"REDIS_PASSWORD=" + password});
    ASSERT_TRUE(
        exp.Start(exporter, {"--redis.addr=redis://127.0.0.1:" + std::to_string(server_->port()),
                             "--web.listen-address=127.0.0.1:" + std::to_string(port)}));
    std::string body;
    EXPECT_TRUE(WaitUntil([&] {
      Socket h = Socket::Connect(port, milliseconds(200));
      body.clear();
      return h.valid() && h.SendAll("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n") &&
             h.WaitForClose(kTimeout, &body) && body.find("\nredis_up ") != std::string::npos;
    })) << exp.Log();
    EXPECT_NE(body.find("\nredis_up " + up + "\n"), std::string::npos) << password << "\n" << body;
    if (up == "1") {
      EXPECT_NE(body.find("\nredis_db_keys{db=\"db0\"} 1\n"), std::string::npos) << body;
    }
    exp.Signal(SIGTERM);
    int status = 0;
    EXPECT_TRUE(exp.WaitExit(kTimeout, &status));
  }
}

// ---- the ACL file ----

class AclFileTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  std::unique_ptr<ServerProcess> StartOurs(const std::string& file) {
    return StartRedhubd({"--workers", "2", "--maxmemory", "8mb", "--aclfile", file});
  }
  TempDir dir_;
};

constexpr char kUsersFile[] =
    "user default on nopass ~* &* +@all\n"
    "user alice on >apw ~a* resetchannels -@all +get +set\n"
    "user bob off #" /* sha256("bpw") */
    "9310c3b61938c1dad30836509b0802e94943c56221c6e1b077bbd7c8ed5a427e %R~r* &news -@all +@read\n";

TEST_F(AclFileTest, UsersOfTheFileWorkFromTheStart) {
  auto ours = StartOurs(dir_.Write("users.acl", kUsersFile));
  ASSERT_NE(ours, nullptr);
  auto ref = StartRedisServer({"--aclfile", dir_.File("users.acl")});
  ASSERT_NE(ref, nullptr);
  Socket a = Connect(ours->port()), b = Connect(ref->port());
  ASSERT_NO_FATAL_FAILURE(ExpectRepliesAsReference(a, b,
                                                   {
                                                       {"AUTH", "alice", "apw"},
                                                       {"ACL", "WHOAMI"},
                                                       {"SET", "a1", "v"},
                                                       {"GET", "a1"},
                                                       {"GET", "b1"},
                                                       {"DEL", "a1"},
                                                       {"AUTH", "bob", "bpw"},  // off
                                                       {"AUTH", "alice", "wrong"},
                                                   }));
  Socket x = Connect(ours->port()), y = Connect(ref->port());
  Reply lx = SocketCommand(x, {"ACL", "LIST"}), ly = SocketCommand(y, {"ACL", "LIST"});
  EXPECT_EQ(ListWords(lx.get()), ListWords(ly.get())) << DescribeReply(lx.get());
}

// A file with an error: no start, exit status 1, Redis's text in the log
// (as redis-server logs it for the same file).
TEST_F(AclFileTest, AnInvalidFileRefusesTheStartWithRedisText) {
  const std::string file =
      dir_.Write("bad.acl", "user default on nopass ~* &* +@all\nuser carol on +nosuchcommand\n");
  // (With --port 0 redis-server exits before it reads the file.)
  RunResult redis = RunCommand({REDIS_SERVER_PATH, "--bind", "127.0.0.1", "--port",
                                std::to_string(PickFreePort()), "--save", "", "--aclfile", file},
                               kTimeout);
  ASSERT_FALSE(redis.ok()) << redis.Describe();
  static constexpr std::string_view kPrefix = "Aborting Redis startup because of ACL errors: ";
  size_t at = redis.out.find(kPrefix);
  ASSERT_NE(at, std::string::npos) << redis.Describe();
  std::string text = redis.out.substr(at + kPrefix.size());
  text = text.substr(0, text.find('\n'));
  // Redis 7.0.15: "<file>:2: Error in applying operation '+nosuchcommand':
  // Unknown command or category name in ACL. WARNING: ACL errors detected,
  // no change to the previously active ACL rules was performed".
  EXPECT_NE(text.find(file + ":2: "), std::string::npos) << text;

  ServerProcess ours("redhubd");
  ASSERT_TRUE(
      ours.Start(REDHUBD_PATH, {"--bind", "127.0.0.1", "--port", std::to_string(PickFreePort()),
                                "--admin-port", "0", "--maxmemory", "8mb", "--aclfile", file}));
  int status = 0;
  ASSERT_TRUE(ours.WaitExit(kTimeout, &status)) << ours.Log();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << status << "\n" << ours.Log();
  EXPECT_NE(ours.Log().find(text), std::string::npos) << "Redis: " << text << "\n" << ours.Log();
  ours.Stop();

  // A missing file too.
  ServerProcess missing("redhubd");
  ASSERT_TRUE(missing.Start(
      REDHUBD_PATH,
      {"--bind", "127.0.0.1", "--port", std::to_string(PickFreePort()), "--admin-port", "0",
       "--maxmemory", "8mb", "--aclfile", dir_.File("nosuchfile.acl")}));
  ASSERT_TRUE(missing.WaitExit(kTimeout, &status)) << missing.Log();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << status << "\n" << missing.Log();
  missing.Stop();
}

// ACL SAVE writes Redis's format: redis-server started on the saved file
// lists the same users.
TEST_F(AclFileTest, SaveWritesAFileRedisLoads) {
  const std::string file = dir_.Write("users.acl", kUsersFile);
  auto ours = StartOurs(file);
  ASSERT_NE(ours, nullptr);
  Socket d = Connect(ours->port());
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {"ACL", "SETUSER", "carol", "on", ">c1", ">c2", "~c*", "%W~w*", "&ch", "+@all",
            "-@dangerous", "-get"},
           {"ACL", "SETUSER", "dave", "on", "nopass", "allkeys", "allchannels", "-@all",
            "+config|get"},
           {"ACL", "SETUSER", "erin", "skip-sanitize-payload", "-@all", "+@string", "-set"},
       }) {
    ASSERT_EQ(RawCommand(d, argv), "+OK\r\n") << ::testing::PrintToString(argv);
  }
  ASSERT_EQ(RawCommand(d, {"ACL", "DELUSER", "bob"}), ":1\r\n");
  ASSERT_EQ(RawCommand(d, {"ACL", "SAVE"}), "+OK\r\n");
  std::string saved;
  {
    std::ifstream in(file);
    saved.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_EQ(saved.find("bob"), std::string::npos) << saved;
  EXPECT_EQ(saved.rfind("user alice ", 0), 0u) << saved;  // sorted by name, one a line
  auto ref = StartRedisServer({"--aclfile", file});
  ASSERT_NE(ref, nullptr) << saved;
  // Single commands compare as sets (Redis writes them in hash order).
  Socket r = Connect(ref->port());
  Reply x = SocketCommand(d, {"ACL", "LIST"}), y = SocketCommand(r, {"ACL", "LIST"});
  EXPECT_EQ(ListWords(x.get()), ListWords(y.get()))
      << saved << "\nreference: " << DescribeReply(y.get());
  // And the file is what ACL LIST says, line for line.
  Reply list = SocketCommand(d, {"ACL", "LIST"});
  ASSERT_NE(list, nullptr);
  std::string lines;
  for (size_t i = 0; i < list->elements; i++) {
    lines += std::string(list->element[i]->str, list->element[i]->len) + "\n";
  }
  EXPECT_EQ(saved, lines);
}

// ACL LOAD: the file's users replace the running ones; connections of the
// replaced users close (their next command meets a closed connection),
// the default user's stay.
TEST_F(AclFileTest, LoadAppliesTheFileAndClosesReplacedUsersConnections) {
  const std::string file = dir_.Write("users.acl", kUsersFile);
  auto ours = StartOurs(file);
  ASSERT_NE(ours, nullptr);
  Socket d = Connect(ours->port());
  // Several of alice's connections, so that both workers hold some.
  std::vector<Socket> alice;
  for (int i = 0; i < 6; i++) alice.push_back(Connect(ours->port(), {"alice", "apw"}));
  for (Socket& s : alice) ASSERT_EQ(RawCommand(s, {"GET", "a1"}), "$-1\r\n");
  dir_.Write("users.acl",
             "user default on nopass ~* &* +@all\n"
             "user alice on >newpw ~x* resetchannels -@all +get\n"
             "user frank on >fpw ~* resetchannels +@all\n");
  EXPECT_EQ(RawCommand(d, {"ACL", "LOAD"}), "+OK\r\n");
  for (Socket& s : alice) {
    std::string data;
    bool closed = s.SendAll(FormatCommand({"GET", "a1"})) && s.WaitForClose(kTimeout, &data);
    EXPECT_TRUE(closed);
    // Redis frees the client at ACL LOAD: nothing is answered.
    EXPECT_EQ(data, "");
  }
  EXPECT_EQ(RawCommand(d, {"ACL", "WHOAMI"}), "$7\r\ndefault\r\n");
  EXPECT_EQ(RawCommand(d, {"ACL", "USERS"}),
            "*3\r\n$5\r\nalice\r\n$7\r\ndefault\r\n$5\r\nfrank\r\n");
  Socket old_pw = Connect(ours->port());
  EXPECT_EQ(RawCommand(old_pw, {"AUTH", "alice", "apw"}),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  Socket s = Connect(ours->port(), {"alice", "newpw"});
  EXPECT_EQ(RawCommand(s, {"GET", "x1"}), "$-1\r\n");
  EXPECT_EQ(RawCommand(s, {"SET", "x1", "v"}),
            "-NOPERM this user has no permissions to run the 'set' command\r\n");
  Socket f = Connect(ours->port(), {"frank", "fpw"});
  EXPECT_EQ(RawCommand(f, {"ACL", "WHOAMI"}), "$5\r\nfrank\r\n");
}

// An invalid file at ACL LOAD: Redis's error, users unchanged, no
// connection closed. Both servers load the same path, so the texts (which
// name it) compare byte for byte.
TEST_F(AclFileTest, AnInvalidFileAtLoadLeavesTheUsers) {
  const std::string file = dir_.Write("users.acl", kUsersFile);
  auto ours = StartOurs(file);
  ASSERT_NE(ours, nullptr);
  auto ref = StartRedisServer({"--aclfile", file});
  ASSERT_NE(ref, nullptr);
  Socket a = Connect(ours->port()), b = Connect(ref->port());
  Socket alice_a = Connect(ours->port(), {"alice", "apw"});
  Socket alice_b = Connect(ref->port(), {"alice", "apw"});
  for (const std::string& text : {
           std::string("user default on nopass ~* &* +@all\nuser alice on +nosuchcommand\n"),
           std::string("user default on nopass ~* &* +@all\nuser alice on ~a* bogus\n"),
           std::string("user default on nopass ~* &* +@all\nnot a user line\n"),
           std::string("user default on nopass ~* &* +@all\nuser alice on\nuser alice off\n"),
           std::string("user bad name on\n"),
       }) {
    dir_.Write("users.acl", text);
    ASSERT_NO_FATAL_FAILURE(ExpectRepliesAsReference(a, b, {{"ACL", "LOAD"}, {"ACL", "USERS"}}))
        << text;
    Reply x = SocketCommand(a, {"ACL", "LIST"}), y = SocketCommand(b, {"ACL", "LIST"});
    EXPECT_EQ(ListWords(x.get()), ListWords(y.get())) << DescribeReply(x.get());
  }
  unlink(file.c_str());
  ASSERT_NO_FATAL_FAILURE(ExpectRepliesAsReference(a, b, {{"ACL", "LOAD"}}));
  ASSERT_NO_FATAL_FAILURE(
      ExpectRepliesAsReference(alice_a, alice_b, {{"ACL", "WHOAMI"}, {"GET", "a1"}}));
}

}  // namespace
}  // namespace redhub::integration
