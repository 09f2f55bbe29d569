// Access control across the daemon's processes: a change of the users made
// on one worker reaches connections on the other at their next command, the
// connections of a removed or disabled user close on every worker even when
// idle, users and each connection's authentication survive reload and
// upgrade, requirepass changes at reload, and protected mode refuses
// non-loopback clients with Redis's text.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <map>

#include "server_process.h"

namespace redhub::integration {
namespace {

std::string Cmd(Socket& s, const std::vector<std::string>& argv) {
  return DescribeReply(SocketCommand(s, argv).get());
}

// A connection authenticated as user, on worker slot `slot` (reconnecting
// until the kernel's SO_REUSEPORT choice lands there).
Socket ConnectAs(uint16_t port, const std::string& user, const std::string& pass, int slot) {
  for (int i = 0; i < 200; i++) {
    Socket s = Socket::Connect(port);
    if (!s.valid()) continue;
    if (Cmd(s, {"AUTH", user, pass}) != "+OK") return Socket();
    auto who = ServedBy(s);
    if (who && who->slot == slot) return s;
  }
  return Socket();
}

TEST(AuthTest, AChangeOnOneWorkerAppliesToAConnectionOnTheOther) {
  auto server = StartRedhubd({"--workers", "2", "--requirepass", "sec"});
  ASSERT_NE(server, nullptr);
  Socket admin = ConnectAs(server->port(), "default", "sec", 0);
  ASSERT_TRUE(admin.valid());
  ASSERT_EQ(Cmd(admin, {"ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all"}), "+OK");
  Socket on0 = ConnectAs(server->port(), "alice", "pw", 0);
  Socket on1 = ConnectAs(server->port(), "alice", "pw", 1);
  ASSERT_TRUE(on0.valid() && on1.valid()) << "no alice connection on each worker";
  EXPECT_EQ(Cmd(on1, {"SET", "k", "v"}), "+OK");
  // The change is made on worker 0; worker 1's connection sees it at its
  // next command, with nothing between but the shared users.
  ASSERT_EQ(Cmd(admin, {"ACL", "SETUSER", "alice", "-get"}), "+OK");
  EXPECT_EQ(Cmd(on1, {"GET", "k"}),
            "-NOPERM this user has no permissions to run the 'get' command");
  EXPECT_EQ(Cmd(on0, {"GET", "k"}),
            "-NOPERM this user has no permissions to run the 'get' command");
  EXPECT_EQ(Cmd(on1, {"STRLEN", "k"}), ":1");
  // And back, from worker 1 this time.
  ASSERT_EQ(Cmd(on1, {"ACL", "SETUSER", "alice", "+get", "resetkeys", "~k*"}), "+OK");
  EXPECT_EQ(Cmd(on0, {"GET", "k"}), "$1 v");
  EXPECT_EQ(Cmd(on0, {"GET", "other"}),
            "-NOPERM this user has no permissions to access one of the keys used as arguments");
  EXPECT_EQ(Cmd(admin, {"GET", "other"}), "(nil)");
}

// Parameter: the ACL SETUSER/DELUSER arguments that end alice's sessions.
class UserGoneTest : public ::testing::TestWithParam<std::vector<std::string>> {};

TEST_P(UserGoneTest, ItsIdleConnectionsCloseOnEveryWorker) {
  auto server = StartRedhubd({"--workers", "2", "--requirepass", "sec"});
  ASSERT_NE(server, nullptr);
  Socket admin = ConnectAs(server->port(), "default", "sec", 0);
  ASSERT_TRUE(admin.valid());
  ASSERT_EQ(Cmd(admin, {"ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all"}), "+OK");
  ASSERT_EQ(Cmd(admin, {"ACL", "SETUSER", "bob", "on", ">pw", "~*", "+@all"}), "+OK");
  Socket on0 = ConnectAs(server->port(), "alice", "pw", 0);
  Socket on1 = ConnectAs(server->port(), "alice", "pw", 1);
  Socket bob = ConnectAs(server->port(), "bob", "pw", 1);
  ASSERT_TRUE(on0.valid() && on1.valid() && bob.valid());
  std::vector<std::string> change = {"ACL"};
  change.insert(change.end(), GetParam().begin(), GetParam().end());
  const std::string answer = Cmd(admin, change);
  ASSERT_TRUE(answer == "+OK" || answer == ":1") << answer;
  // Neither sends anything: the worker's tick notices the change.
  std::string rest;
  EXPECT_TRUE(on0.WaitForClose(kTimeout, &rest)) << "worker 0 kept alice's connection";
  EXPECT_TRUE(on1.WaitForClose(kTimeout, &rest)) << "worker 1 kept alice's connection";
  // Other users' and the changer's connections stay.
  EXPECT_EQ(Cmd(bob, {"PING"}), "+PONG");
  EXPECT_EQ(Cmd(admin, {"PING"}), "+PONG");
  // A new AUTH as alice fails (removed, or disabled).
  Socket again = Socket::Connect(server->port());
  EXPECT_EQ(Cmd(again, {"AUTH", "alice", "pw"}),
            "-WRONGPASS invalid username-password pair or user is disabled.");
}

INSTANTIATE_TEST_SUITE_P(Changes, UserGoneTest,
                         ::testing::Values(std::vector<std::string>{"DELUSER", "alice"},
                                           std::vector<std::string>{"SETUSER", "alice", "off"}),
                         [](const auto& info) {
                           return std::string(info.param[0] == "DELUSER" ? "Removed" : "Disabled");
                         });

// A user created, a connection authenticated as it and one not
// authenticated: after the workers are replaced (reload) or the binary
// re-executed (upgrade), both connections are as they were.
class AuthAcrossTest : public ::testing::TestWithParam<int> {};

TEST_P(AuthAcrossTest, UsersAndEachConnectionsAuthenticationSurvive) {
  auto server = StartRedhubd({"--workers", "1", "--requirepass", "sec"});
  ASSERT_NE(server, nullptr);
  Socket admin = ConnectAs(server->port(), "default", "sec", 0);
  ASSERT_TRUE(admin.valid());
  ASSERT_EQ(Cmd(admin, {"ACL", "SETUSER", "alice", "on", ">pw", "~a*", "+@all", "-flushall"}),
            "+OK");
  Socket alice = ConnectAs(server->port(), "alice", "pw", 0);
  ASSERT_TRUE(alice.valid());
  Socket anonymous = Socket::Connect(server->port());
  ASSERT_EQ(Cmd(anonymous, {"GET", "a"}), "-NOAUTH Authentication required.");
  auto before = ServedBy(alice);
  ASSERT_TRUE(before.has_value());
  ASSERT_TRUE(server->Signal(GetParam()));
  // Done when alice's connection is served by another process.
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto now = ServedBy(alice);
        return now && now->pid != before->pid;
      },
      milliseconds(15000)))
      << "alice's connection did not move";
  EXPECT_EQ(Cmd(alice, {"ACL", "WHOAMI"}), "$5 alice");
  EXPECT_EQ(Cmd(alice, {"SET", "a1", "v"}), "+OK");
  EXPECT_EQ(Cmd(alice, {"SET", "b1", "v"}),
            "-NOPERM this user has no permissions to access one of the keys used as arguments");
  EXPECT_EQ(Cmd(alice, {"FLUSHALL"}),
            "-NOPERM this user has no permissions to run the 'flushall' command");
  EXPECT_EQ(Cmd(anonymous, {"GET", "a1"}), "-NOAUTH Authentication required.");
  EXPECT_EQ(Cmd(anonymous, {"AUTH", "alice", "pw"}), "+OK");
  EXPECT_EQ(Cmd(anonymous, {"GET", "a1"}), "$1 v");
  Socket fresh = Socket::Connect(server->port());
  EXPECT_EQ(Cmd(fresh, {"AUTH", "alice", "pw"}), "+OK");
  EXPECT_EQ(Cmd(fresh, {"AUTH", "sec"}), "+OK");
}

INSTANTIATE_TEST_SUITE_P(Signals, AuthAcrossTest, ::testing::Values(SIGHUP, SIGUSR2),
                         [](const auto& info) {
                           return std::string(info.param == SIGHUP ? "Reload" : "Upgrade");
                         });

TEST(AuthTest, RequirepassChangesAtReloadAndAuthenticatedClientsStay) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string config = dir.Write("redhub.conf", "requirepass = \"first\"\n");
  auto server = StartRedhubd({"--workers", "1", "--config", config}, {.auth = {"first"}});
  ASSERT_NE(server, nullptr);
  Socket old = Socket::Connect(server->port());
  ASSERT_EQ(Cmd(old, {"AUTH", "first"}), "+OK");
  dir.Write("redhub.conf", "requirepass = \"second\"\n");
  ASSERT_TRUE(server->Signal(SIGHUP));
  ASSERT_TRUE(WaitUntil([&] {
    Socket s = Socket::Connect(server->port());
    return Cmd(s, {"AUTH", "second"}) == "+OK";
  }));
  Socket s = Socket::Connect(server->port());
  EXPECT_EQ(Cmd(s, {"AUTH", "first"}),
            "-WRONGPASS invalid username-password pair or user is disabled.");
  EXPECT_EQ(Cmd(s, {"PING"}), "-NOAUTH Authentication required.");
  // Redis keeps clients authenticated before the change.
  EXPECT_EQ(Cmd(old, {"PING"}), "+PONG");
}

// ---- protected mode ----

// A TCP connection to 127.0.0.1:port whose source address is `source`.
Socket ConnectFrom(const char* source, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Socket();
  sockaddr_in from{};
  from.sin_family = AF_INET;
  inet_pton(AF_INET, source, &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    close(fd);
    return Socket();
  }
  return Socket(fd);
}

// What a server answers a client from 127.0.0.2 that sends PING, and
// whether it then closed the connection.
std::string AnswerFrom127002(uint16_t port, bool* closed) {
  Socket s = ConnectFrom("127.0.0.2", port);
  if (!s.valid()) return "(no connection)";
  if (!s.SendAll("PING\r\n")) return "(send failed)";
  std::string got;
  *closed = s.WaitForClose(kTimeout, &got);
  return got;
}

TEST(ProtectedModeTest, ANonLoopbackClientGetsRedissDeniedTextAndIsClosed) {
  // The reference: redis-server 7.0 in its default protected mode.
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  uint16_t redis_port = PickFreePort();
  ServerProcess redis("redis-server");
  ASSERT_NE(std::string(REDIS_SERVER_PATH), "") << "redis-server is not installed";
  ASSERT_TRUE(redis.Start(REDIS_SERVER_PATH, {"--port", std::to_string(redis_port), "--save", "",
                                              "--appendonly", "no", "--dir", dir.path()}));
  redis.set_port(redis_port);
  ASSERT_TRUE(redis.WaitReady());
  bool redis_closed = false;
  const std::string expected = AnswerFrom127002(redis_port, &redis_closed);
  ASSERT_EQ(expected.rfind("-DENIED Redis is running in protected mode", 0), 0u) << expected;

  auto server = StartRedhubd({"--workers", "1"});
  ASSERT_NE(server, nullptr);
  bool closed = false;
  EXPECT_EQ(AnswerFrom127002(server->port(), &closed), expected);
  EXPECT_TRUE(closed);
  EXPECT_EQ(redis_closed, closed);
  // Loopback itself is served, and sees the refusal counted.
  Socket local = ConnectFrom("127.0.0.1", server->port());
  EXPECT_EQ(Cmd(local, {"PING"}), "+PONG");
  Reply info = SocketCommand(local, {"INFO", "stats"});
  ASSERT_TRUE(info && info->type == REDIS_REPLY_STRING);
  EXPECT_EQ(InfoField(std::string_view(info->str, info->len), "protected_mode_rejections"), "1");
}

TEST(ProtectedModeTest, APasswordOrProtectedModeNoServesOtherAddresses) {
  {
    auto server = StartRedhubd({"--workers", "1", "--requirepass", "sec"});
    ASSERT_NE(server, nullptr);
    Socket s = ConnectFrom("127.0.0.2", server->port());
    EXPECT_EQ(Cmd(s, {"PING"}), "-NOAUTH Authentication required.");
    EXPECT_EQ(Cmd(s, {"AUTH", "sec"}), "+OK");
    EXPECT_EQ(Cmd(s, {"PING"}), "+PONG");
  }
  {
    auto server = StartRedhubd({"--workers", "1", "--protected-mode", "no"});
    ASSERT_NE(server, nullptr);
    Socket s = ConnectFrom("127.0.0.2", server->port());
    EXPECT_EQ(Cmd(s, {"PING"}), "+PONG");
  }
}

}  // namespace
}  // namespace redhub::integration
