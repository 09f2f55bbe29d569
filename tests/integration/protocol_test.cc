// The wire protocol as clients see it, byte for byte, against both servers:
// inline and Tile38 requests, protocol errors (reply, then close), QUIT, and
// redhubd's Redis 7.0 error wording.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

class ProtocolTest : public ::testing::TestWithParam<ServerKind> {
 protected:
  void SetUp() override {
    server_ = StartServer(GetParam());
    ASSERT_NE(server_, nullptr);
  }

  Socket Connect() {
    std::string error;
    Socket s = Socket::Connect(server_->port(), kTimeout, &error);
    EXPECT_TRUE(s.valid()) << error;
    return s;
  }

  std::unique_ptr<ServerProcess> server_;
};

TEST_P(ProtocolTest, InlinePing) {
  Socket s = Connect();
  ASSERT_TRUE(s.SendAll("PING\r\n"));
  EXPECT_EQ(s.RecvN(7), "+PONG\r\n");
  // A bare "\n" ends an inline request too, as in Redis.
  ASSERT_TRUE(s.SendAll("PING\n"));
  EXPECT_EQ(s.RecvN(7), "+PONG\r\n");
}

TEST_P(ProtocolTest, Tile38NativePing) {
  Socket s = Connect();
  ASSERT_TRUE(s.SendAll("$4 PING\r\n"));
  EXPECT_EQ(s.RecvN(7), "+PONG\r\n");
}

TEST_P(ProtocolTest, InlineQuotedArgumentsThenMultibulkGet) {
  Socket s = Connect();
  ASSERT_TRUE(s.SendAll("SET \"a b\" \"c\\x41\"\r\n"));
  EXPECT_EQ(s.RecvN(5), "+OK\r\n");
  ASSERT_TRUE(s.SendAll("*2\r\n$3\r\nGET\r\n$3\r\na b\r\n"));
  EXPECT_EQ(s.RecvN(8), "$2\r\ncA\r\n");
}

// Pipelined commands in one packet are answered in order with no bytes in
// between, whatever the request forms.
TEST_P(ProtocolTest, MixedFormsInOnePacket) {
  Socket s = Connect();
  ASSERT_TRUE(s.SendAll("PING\r\n$4 PING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nGET k\r\n"));
  const std::string expected = "+PONG\r\n+PONG\r\n+OK\r\n$1\r\nv\r\n";
  EXPECT_EQ(s.RecvN(expected.size()), expected);
}

struct ProtocolErrorCase {
  const char* name;
  const char* request;
  const char* reply;                    // everything the server sends before it closes
  const char* unwritten_key = nullptr;  // set by a command after the error: must not exist
};

void PrintTo(const ProtocolErrorCase& c, std::ostream* os) { *os << c.name; }

const ProtocolErrorCase kProtocolErrors[] = {
    {"MultibulkLengthTooBig", "*3000000000\r\n",
     "-ERR Protocol error: invalid multibulk length\r\n"},
    {"ExpectedDollar", "*1\r\nfoo=bar\r\n", "-ERR Protocol error: expected '$', got 'f'\r\n"},
    {"NegativeBulkLength", "*1\r\n$-10\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
    {"UnbalancedQuotes", "SET \"a b\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
    {"UnbalancedSingleQuotes", "GET 'x\r\n",
     "-ERR Protocol error: unbalanced quotes in request\r\n"},
    {"CommandsBeforeTheErrorAreAnswered", "PING\r\n*1\r\nfoo\r\n",
     "+PONG\r\n-ERR Protocol error: expected '$', got 'f'\r\n"},
    {"CommandsAfterTheErrorAreNotRun",
     "*1\r\n$-10\r\nPING\r\n*3\r\n$3\r\nSET\r\n$11\r\nafter-error\r\n$3\r\nran\r\nPING\r\n",
     "-ERR Protocol error: invalid bulk length\r\n", "after-error"},
};

class ProtocolErrorTest
    : public ::testing::TestWithParam<std::tuple<ServerKind, ProtocolErrorCase>> {};

// The bad connection gets exactly the error and is closed; a connection
// opened before it is not disturbed.
TEST_P(ProtocolErrorTest, RepliesThenCloses) {
  const auto& [kind, c] = GetParam();
  auto server = StartServer(kind);
  ASSERT_NE(server, nullptr);
  Socket bystander = Socket::Connect(server->port());
  ASSERT_TRUE(bystander.valid());
  ASSERT_TRUE(bystander.SendAll("PING\r\n"));
  ASSERT_EQ(bystander.RecvN(7), "+PONG\r\n");

  Socket bad = Socket::Connect(server->port());
  ASSERT_TRUE(bad.valid());
  ASSERT_TRUE(bad.SendAll(c.request));
  std::string got;
  EXPECT_TRUE(bad.WaitForClose(kTimeout, &got)) << "the server did not close; got: " << got;
  EXPECT_EQ(got, c.reply);

  ASSERT_TRUE(bystander.SendAll("PING\r\n"));
  EXPECT_EQ(bystander.RecvN(7), "+PONG\r\n");
  ASSERT_TRUE(
      bystander.SendAll("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
  EXPECT_EQ(bystander.RecvN(12), "+OK\r\n$1\r\nv\r\n");
  if (c.unwritten_key != nullptr) {
    // Not answered is not enough: the write after the error did not run.
    Reply r = SocketCommand(bystander, {"GET", c.unwritten_key});
    EXPECT_EQ(DescribeReply(r.get()), "(nil)") << "a command after the protocol error ran";
  }
}

TEST_P(ProtocolTest, QuitStopsThePacket) {
  Socket s = Connect();
  ASSERT_TRUE(s.SendAll("PING\r\nQUIT\r\nPING\r\n"));
  std::string got;
  EXPECT_TRUE(s.WaitForClose(kTimeout, &got)) << "the server did not close; got: " << got;
  EXPECT_EQ(got, "+PONG\r\n+OK\r\n");
}

// redhubd counts commands: the PING after QUIT must not have run. One
// worker, so that INFO counts the commands of every connection.
TEST(RedhubdProtocolTest, QuitDoesNotRunLaterCommands) {
  auto server = StartRedhubd({"--workers", "1"});
  ASSERT_NE(server, nullptr);
  std::string error;
  Context ctl = ConnectHiredis(server->port(), kTimeout, &error);
  ASSERT_NE(ctl, nullptr) << error;
  std::optional<int64_t> before = InfoInt(ctl.get(), "stats", "total_commands_processed");
  ASSERT_TRUE(before.has_value());

  Socket s = Socket::Connect(server->port());
  ASSERT_TRUE(s.valid());
  ASSERT_TRUE(s.SendAll("PING\r\nQUIT\r\nPING\r\n"));
  std::string got;
  EXPECT_TRUE(s.WaitForClose(kTimeout, &got));
  EXPECT_EQ(got, "+PONG\r\n+OK\r\n");

  std::optional<int64_t> after = InfoInt(ctl.get(), "stats", "total_commands_processed");
  ASSERT_TRUE(after.has_value());
  // The first INFO, PING and QUIT; the second INFO counts once it is done.
  EXPECT_EQ(*after - *before, 3);
}

// Redis 7.0's wording, byte for byte, so clients and tools that match on it
// keep working.
TEST(RedhubdProtocolTest, UnknownCommandAndWrongArity) {
  auto server = StartRedhubd();
  ASSERT_NE(server, nullptr);
  Socket s = Socket::Connect(server->port());
  ASSERT_TRUE(s.valid());

  const std::string unknown = "-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n";
  ASSERT_TRUE(s.SendAll("*2\r\n$3\r\nFOO\r\n$3\r\nbar\r\n"));
  EXPECT_EQ(s.RecvN(unknown.size()), unknown);
  ASSERT_TRUE(s.SendAll("FOO bar\r\n"));
  EXPECT_EQ(s.RecvN(unknown.size()), unknown);

  const std::string no_args = "-ERR unknown command 'FOO', with args beginning with: \r\n";
  ASSERT_TRUE(s.SendAll("FOO\r\n"));
  EXPECT_EQ(s.RecvN(no_args.size()), no_args);

  const std::string arity = "-ERR wrong number of arguments for 'get' command\r\n";
  ASSERT_TRUE(s.SendAll("*1\r\n$3\r\nGET\r\n"));
  EXPECT_EQ(s.RecvN(arity.size()), arity);
  ASSERT_TRUE(s.SendAll("get\r\n"));
  EXPECT_EQ(s.RecvN(arity.size()), arity);

  // The connection is still usable after error replies.
  ASSERT_TRUE(s.SendAll("PING\r\n"));
  EXPECT_EQ(s.RecvN(7), "+PONG\r\n");
}

// An HTTP request sent to the RESP port (cross-protocol scripting from a
// browser page): redis-server closes the connection on the "POST" or
// "Host:" line without a reply, so the body's commands never run; redhubd
// the same, and logs it. Both servers, the same bytes.
TEST(CrossProtocolTest, AnHttpRequestIsClosedUnansweredAndItsBodyNeverRuns) {
  auto redis = StartRedisServer();
  auto redhub = StartRedhubd();
  ASSERT_NE(redis, nullptr);
  ASSERT_NE(redhub, nullptr);
  const std::string requests[] = {
      "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 31\r\n\r\n"
      "SET pwn owned\r\nSET pwn2 owned\r\n",
      // A GET request: its request line is an inline GET of the wrong
      // arity, whose error reply is dropped with the connection when the
      // Host: line comes (redis-server frees the client before writing).
      "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nSET pwn owned\r\n",
  };
  for (ServerProcess* server : {redis.get(), redhub.get()}) {
    std::vector<std::string> got;
    for (const std::string& request : requests) {
      std::string error;
      Socket s = Socket::Connect(server->port(), kTimeout, &error);
      ASSERT_TRUE(s.valid()) << error;
      ASSERT_TRUE(s.SendAll(request));
      std::string reply;
      char buf[4096];
      ssize_t n;
      while ((n = s.RecvOnce(buf, sizeof(buf), kTimeout)) > 0) reply.append(buf, n);
      EXPECT_EQ(n, 0) << server->name() << ": the server must close the connection";
      got.push_back(reply);
    }
    EXPECT_EQ(got[0], "") << server->name();
    EXPECT_EQ(got[1], "") << server->name();
    std::string error;
    Socket check = Socket::Connect(server->port(), kTimeout, &error);
    ASSERT_TRUE(check.valid()) << error;
    EXPECT_EQ(RawCommand(check, {"EXISTS", "pwn", "pwn2"}), ":0\r\n") << server->name();
  }
  EXPECT_TRUE(redhub->WaitForLogLine("Possible SECURITY ATTACK detected").has_value())
      << redhub->Log();
}

INSTANTIATE_TEST_SUITE_P(Servers, ProtocolTest,
                         ::testing::Values(ServerKind::kRedhubd, ServerKind::kMemoryKv),
                         [](const auto& info) { return KindName(info.param); });

INSTANTIATE_TEST_SUITE_P(Servers, ProtocolErrorTest,
                         ::testing::Combine(::testing::Values(ServerKind::kRedhubd,
                                                              ServerKind::kMemoryKv),
                                            ::testing::ValuesIn(kProtocolErrors)),
                         [](const auto& info) {
                           return KindName(std::get<0>(info.param)) + "_" +
                                  std::get<1>(info.param).name;
                         });

}  // namespace
}  // namespace redhub::integration
