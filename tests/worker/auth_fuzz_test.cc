// No command runs before authentication, whatever bytes come first: a
// CommandService over a real store and a real shared ACL area whose default
// user has a password gets random and mutated RESP, inline and garbage
// streams (seeded), split at random points, through resp::Parser into
// Dispatch, each stream on a new connection. Every reply must be NOAUTH,
// WRONGPASS, an unknown-command or arity error, or AUTH's, HELLO's or QUIT's
// own; the store keeps exactly its one sentinel key and the users never
// change. After a correct AUTH, commands run. Also: a user deleted and
// created again is another incarnation (a new id), and its old connections
// are closed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "acl_area.h"
#include "acl_registry.h"
#include "command_util.h"
#include "commands.h"
#include "detached_conn.h"
#include "store.h"

namespace redhub::worker {
namespace {

constexpr char kPassword[] = "s3cr3t-Pa55-xyzzy";

// A connection whose close the test can see.
class TestConn : public DetachedConn {
 public:
  bool closing() const { return close_requested_; }
};

class AuthFuzzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    name_ = "/redhub-auth-fuzz-test-" + std::to_string(getpid()) + "-" + std::to_string(++n);
    std::string error;
    shm::StoreOptions o;
    o.name = name_;
    o.maxmemory = 64ull << 20;
    o.stripes = 16;
    o.if_exists = shm::IfExists::kReplace;
    store_ = shm::Store::Create(o, &error);
    ASSERT_NE(store_, nullptr) << error;
    area_ = shm::AclArea::Create({.text_capacity = 1 << 16, .log_capacity = 64}, &error);
    ASSERT_NE(area_, nullptr) << error;
    ASSERT_EQ(acl::Registry::Initialize(area_.get(),
                                        [](acl::Users& users, uint64_t&) {
                                          auto d =
                                              std::make_shared<acl::User>(*users["default"].user);
                                          std::string e =
                                              d->ApplyAll(std::string("resetpass >") + kPassword);
                                          users["default"].user = d;
                                          return e;
                                        }),
              "");
    service_ = std::make_unique<CommandService>(ServiceInfo{}, store_.get());
    service_->set_acl_area(area_.get());
    handlers_ = service_->MakeHandlers();
    {
      auto txn = store_->Lock("sentinel");
      ASSERT_EQ(txn.Put("sentinel", "untouched"), shm::Status::kOk);
    }
  }
  void TearDown() override {
    service_.reset();
    store_.reset();
    shm::Store::Remove(name_);
  }

  std::unique_ptr<TestConn> Open() {
    auto c = std::make_unique<TestConn>();
    std::string out;
    resp::Writer w(out);
    handlers_.on_open(*c, w);
    EXPECT_EQ(out, "");
    return c;
  }

  std::string Run(TestConn& c, std::vector<std::string> argv, Action* action = nullptr) {
    std::vector<std::string_view> args(argv.begin(), argv.end());
    resp::Command cmd;
    cmd.args = args;
    std::string out;
    resp::Writer w(out);
    Action a = service_->Dispatch(c, cmd, w);
    if (action != nullptr) *action = a;
    return out;
  }

  std::string Sentinel() {
    auto txn = store_->Lock("sentinel");
    auto e = txn.Find("sentinel");
    return e ? std::string(e->value) : "<missing>";
  }

  std::string name_;
  std::unique_ptr<shm::Store> store_;
  std::unique_ptr<shm::AclArea> area_;
  std::unique_ptr<CommandService> service_;
  Handlers handlers_;
};

// A reply an unauthenticated connection may get: a refusal, or the reply of
// a command that runs before authentication (AUTH, HELLO, QUIT) and did not
// authenticate.
bool AllowedBeforeAuth(std::string_view name, const std::string& reply) {
  auto starts = [&](std::string_view p) { return reply.rfind(p, 0) == 0; };
  if (reply == "-NOAUTH Authentication required.\r\n") return true;
  if (reply == "-WRONGPASS invalid username-password pair or user is disabled.\r\n") return true;
  if (starts("-ERR unknown command '")) return true;
  if (starts("-ERR wrong number of arguments for '")) return true;
  if (EqualsNoCase(name, "auth")) return reply == "-ERR syntax error\r\n";
  if (EqualsNoCase(name, "hello")) {
    return starts("-NOAUTH HELLO must be called with the client already authenticated") ||
           reply == "-ERR Protocol version is not an integer or out of range\r\n" ||
           reply == "-NOPROTO unsupported protocol version\r\n" ||
           starts("-ERR Syntax error in HELLO option '") ||
           starts("-ERR Client names cannot contain");
  }
  if (EqualsNoCase(name, "quit")) return reply == "+OK\r\n";
  // An HTTP request line: the connection is aborted, nothing is written.
  if (EqualsNoCase(name, "post") || EqualsNoCase(name, "host:")) return reply.empty();
  return false;
}

// Requests an attacker would like to run, and ones that run before AUTH.
const std::vector<std::vector<std::string>>& Requests() {
  static const std::vector<std::vector<std::string>> r = {
      {"SET", "k", "v"},
      {"set", "sentinel", "overwritten"},
      {"FLUSHALL"},
      {"FLUSHDB"},
      {"DEL", "sentinel"},
      {"UNLINK", "sentinel"},
      {"INCR", "n"},
      {"MSET", "a", "1", "b", "2"},
      {"APPEND", "sentinel", "x"},
      {"RENAME", "sentinel", "moved"},
      {"EXPIRE", "sentinel", "1"},
      {"GETDEL", "sentinel"},
      {"GETSET", "sentinel", "x"},
      {"SETNX", "new", "1"},
      {"GET", "sentinel"},
      {"KEYS", "*"},
      {"DBSIZE"},
      {"PING"},
      {"ECHO", "x"},
      {"SELECT", "0"},
      {"CLIENT", "SETNAME", "x"},
      {"CLIENT", "LIST"},
      {"CONFIG", "GET", "*"},
      {"INFO"},
      {"MULTI"},
      {"EXEC"},
      {"ACL", "SETUSER", "evil", "on", "nopass", "+@all", "~*"},
      {"ACL", "SETUSER", "default", "nopass"},
      {"ACL", "DELUSER", "default"},
      {"ACL", "LOG", "RESET"},
      {"ACL", "WHOAMI"},
      {"AUTH", "wrong"},
      {"AUTH", "default", "wrong"},
      {"AUTH", "nosuchuser", kPassword},
      {"AUTH", "evil", ""},
      {"AUTH", "a", "b", "c"},
      {"AUTH"},
      {"HELLO"},
      {"HELLO", "3"},
      {"HELLO", "2", "SETNAME", "x"},
      {"HELLO", "3", "AUTH", "default", "wrong"},
      {"HELLO", "3", "AUTH", "default"},
      {"HELLO", "x"},
      {"HELLO", "4"},
      {"HELLO", "3", "SETNAME", "bad name"},
      {"NOSUCHCOMMAND", "a"},
      {"GET"},
      {"SET", "k"},
  };
  return r;
}

std::string Multibulk(const std::vector<std::string>& argv) {
  std::string s = "*" + std::to_string(argv.size()) + "\r\n";
  for (const std::string& a : argv) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

std::string Inline(const std::vector<std::string>& argv) {
  std::string s;
  for (const std::string& a : argv) {
    if (!s.empty()) s += ' ';
    s += a.find(' ') != std::string::npos ? "\"" + a + "\"" : a;
  }
  return s + "\r\n";
}

std::string RandomCase(std::string s, std::mt19937_64& rng) {
  for (char& c : s) {
    if (rng() % 2 == 0)
      c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
    else
      c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

// One stream: a pipeline of requests (either form, names in any case) with
// garbage between them, then byte-level mutations; or bytes at random.
std::string RandomStream(std::mt19937_64& rng) {
  static const char* kGarbage[] = {"*-1\r\n",
                                   "*0\r\n",
                                   "\r\n",
                                   "$",
                                   "*",
                                   "*3\r\n$3\r\nSET\r\n",
                                   "*1\r\n$-1\r\n",
                                   "$5 GET k\r\n",
                                   "\n",
                                   "*2\r\n$100\r\nab",
                                   "\"unbalanced\r\n",
                                   "POST / HTTP/1.1\r\n",
                                   "\x00\xff\r\n"};
  std::string s;
  if (rng() % 10 == 0) {
    const size_t n = rng() % 300;
    for (size_t i = 0; i < n; i++) s.push_back(static_cast<char>(rng()));
    return s;
  }
  const int requests = 1 + static_cast<int>(rng() % 20);
  for (int i = 0; i < requests; i++) {
    std::vector<std::string> argv = Requests()[rng() % Requests().size()];
    argv[0] = RandomCase(argv[0], rng);
    s += rng() % 3 == 0 ? Inline(argv) : Multibulk(argv);
    if (rng() % 8 == 0) s += kGarbage[rng() % std::size(kGarbage)];
  }
  const int mutations = static_cast<int>(rng() % 4);
  for (int m = 0; m < mutations && !s.empty(); m++) {
    const size_t at = rng() % s.size();
    switch (rng() % 5) {
      case 0:
        s[at] = static_cast<char>(rng());
        break;
      case 1:
        s.insert(s.begin() + static_cast<ptrdiff_t>(at), static_cast<char>(rng()));
        break;
      case 2:
        s.erase(at, 1 + rng() % 8);
        break;
      case 3:
        s.insert(at, s.substr(at, rng() % 32));
        break;
      case 4:
        s.resize(at);
        break;
    }
  }
  return s;
}

TEST_F(AuthFuzzTest, NothingRunsBeforeAuthWhateverTheBytes) {
  std::mt19937_64 rng(0xA117);
  const uint64_t generation = area_->generation();
  size_t commands = 0, refused_noauth = 0, streams_closed = 0;
  for (int stream = 0; stream < 10000; stream++) {
    const std::string bytes = RandomStream(rng);
    auto conn = Open();
    resp::Parser parser;
    std::string buf;
    size_t fed = 0;
    bool open = true;
    // Arriving in random pieces, as reads do.
    while (open && fed < bytes.size()) {
      const size_t piece = std::min(bytes.size() - fed, 1 + rng() % 64);
      buf.append(bytes, fed, piece);
      fed += piece;
      while (open) {
        resp::Command cmd;
        size_t used = 0;
        const resp::ParseStatus st = parser.Parse(buf.data(), buf.size(), &cmd, &used);
        if (st == resp::ParseStatus::kNeedMore) break;
        if (st == resp::ParseStatus::kError) {
          open = false;  // the loop sends the protocol error and closes
          ASSERT_EQ(parser.Error().rfind("ERR Protocol error", 0), 0u) << parser.Error();
          break;
        }
        commands++;
        std::string out;
        resp::Writer w(out);
        const Action action = service_->Dispatch(*conn, cmd, w);
        const std::string name(cmd.args[0]);
        ASSERT_TRUE(AllowedBeforeAuth(name, out)) << "stream " << stream << ": " << name << " ("
                                                  << cmd.args.size() << " args) answered " << out;
        ASSERT_EQ(conn->session_flags() & kSessionAuthenticated, 0u) << "stream " << stream;
        if (out.rfind("-NOAUTH", 0) == 0) refused_noauth++;
        if (action != Action::kNone || conn->closing()) {
          open = false;
          streams_closed++;
        }
        buf.erase(0, used);
      }
    }
  }
  // The store kept exactly its sentinel, and nobody changed the users.
  EXPECT_EQ(store_->stats().keys, 1u);
  EXPECT_EQ(Sentinel(), "untouched");
  EXPECT_EQ(area_->generation(), generation);
  EXPECT_EQ(service_->acl()->Find("evil"), nullptr);
  EXPECT_FALSE(service_->acl()->default_user().nopass());
  // Only failed AUTHs were logged.
  for (const shm::AclLogEntry& e : area_->LogGet(1000)) EXPECT_EQ(e.reason, "auth");
  // The fuzz reached the step under test.
  EXPECT_GT(commands, 30000u);
  EXPECT_GT(refused_noauth, 20000u);
  EXPECT_GT(streams_closed, 200u);

  // After a correct AUTH, commands run.
  auto conn = Open();
  EXPECT_EQ(Run(*conn, {"SET", "k", "v"}), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(Run(*conn, {"AUTH", "wrong"}),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  EXPECT_EQ(Run(*conn, {"AUTH", kPassword}), "+OK\r\n");
  EXPECT_EQ(Run(*conn, {"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(Run(*conn, {"GET", "sentinel"}), "$9\r\nuntouched\r\n");
  EXPECT_EQ(store_->stats().keys, 2u);
  // HELLO AUTH authenticates too.
  auto hello = Open();
  const std::string r = Run(*hello, {"HELLO", "2", "AUTH", "default", kPassword});
  EXPECT_EQ(r[0], '*') << r;
  EXPECT_EQ(Run(*hello, {"DEL", "k"}), ":1\r\n");
  EXPECT_EQ(Run(*hello, {"FLUSHALL"}), "+OK\r\n");
  EXPECT_EQ(store_->stats().keys, 0u);
}

// A user deleted and created again (ACL DELUSER, ACL SETUSER) is a new
// incarnation: a new id, and a connection authenticated as the old one is
// closed at its next command rather than becoming the new one.
TEST_F(AuthFuzzTest, DeletedAndRecreatedUserIsANewIncarnation) {
  auto admin = Open();
  ASSERT_EQ(Run(*admin, {"AUTH", kPassword}), "+OK\r\n");
  ASSERT_EQ(Run(*admin, {"ACL", "SETUSER", "alice", "on", ">a", "~*", "+@all"}), "+OK\r\n");
  const uint64_t first = service_->acl()->Find("alice")->id;
  auto alice = Open();
  ASSERT_EQ(Run(*alice, {"AUTH", "alice", "a"}), "+OK\r\n");
  ASSERT_EQ(Run(*alice, {"SET", "x", "1"}), "+OK\r\n");
  // Changing her rules keeps the id and the connection.
  ASSERT_EQ(Run(*admin, {"ACL", "SETUSER", "alice", "-flushall"}), "+OK\r\n");
  EXPECT_EQ(service_->acl()->Find("alice")->id, first);
  EXPECT_EQ(Run(*alice, {"GET", "x"}), "$1\r\n1\r\n");
  EXPECT_FALSE(alice->closing());

  ASSERT_EQ(Run(*admin, {"ACL", "DELUSER", "alice"}), ":1\r\n");
  ASSERT_EQ(Run(*admin, {"ACL", "SETUSER", "alice", "on", ">a", "~*", "+@all"}), "+OK\r\n");
  const uint64_t second = service_->acl()->Find("alice")->id;
  EXPECT_NE(second, first);
  // The old connection (the same worker's: its sweep ran at the change).
  EXPECT_TRUE(alice->closing());
  auto again = Open();
  ASSERT_EQ(Run(*again, {"AUTH", "alice", "a"}), "+OK\r\n");
  EXPECT_EQ(Run(*again, {"GET", "x"}), "$1\r\n1\r\n");
  // The default user keeps its id through everything.
  EXPECT_FALSE(admin->closing());
  EXPECT_EQ(Run(*admin, {"PING"}), "+PONG\r\n");
}

// The same on another worker, which sees the deletion and the new user only
// together, at its next command: the name is there, its id is not the one
// the connection authenticated as, so the connection closes unrun.
TEST_F(AuthFuzzTest, OtherWorkerClosesTheOldIncarnationsConnections) {
  CommandService other(ServiceInfo{}, store_.get());
  other.set_acl_area(area_.get());
  Handlers other_handlers = other.MakeHandlers();
  auto admin = Open();
  ASSERT_EQ(Run(*admin, {"AUTH", kPassword}), "+OK\r\n");
  ASSERT_EQ(Run(*admin, {"ACL", "SETUSER", "bob", "on", ">b", "~*", "+@all"}), "+OK\r\n");
  TestConn bob;
  std::string out;
  resp::Writer w(out);
  other_handlers.on_open(bob, w);
  auto run_other = [&](std::vector<std::string> argv) {
    std::vector<std::string_view> args(argv.begin(), argv.end());
    resp::Command cmd;
    cmd.args = args;
    std::string reply;
    resp::Writer rw(reply);
    other.Dispatch(bob, cmd, rw);
    return reply;
  };
  ASSERT_EQ(run_other({"AUTH", "bob", "b"}), "+OK\r\n");
  ASSERT_EQ(run_other({"SET", "y", "1"}), "+OK\r\n");
  ASSERT_EQ(Run(*admin, {"ACL", "DELUSER", "bob"}), ":1\r\n");
  ASSERT_EQ(Run(*admin, {"ACL", "SETUSER", "bob", "on", ">b", "~*", "+@all"}), "+OK\r\n");
  EXPECT_FALSE(bob.closing());  // that worker has not looked yet
  // Dropped without a reply, as Redis frees a removed user's clients.
  EXPECT_EQ(run_other({"DEL", "y"}), "");
  EXPECT_TRUE(bob.closing());
  EXPECT_EQ(Sentinel(), "untouched");
  EXPECT_EQ(store_->stats().keys, 2u);  // y was not deleted
  bob.context().reset();                // its session goes before the service
}

}  // namespace
}  // namespace redhub::worker
