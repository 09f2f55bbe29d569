// Real clients against both servers: redis-cli, redis-benchmark and redis-py,
// each run as a process with a deadline.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

constexpr milliseconds kClientTimeout{20000};

class ClientsTest : public ::testing::TestWithParam<ServerKind> {
 protected:
  void SetUp() override {
    server_ = StartServer(GetParam());
    ASSERT_NE(server_, nullptr);
    port_ = std::to_string(server_->port());
  }

  // redis-cli's output for one command; fails the test unless it exits 0.
  std::string Cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {REDIS_CLI_PATH, "-h", "127.0.0.1", "-p", port_};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = RunCommand(argv, kClientTimeout);
    EXPECT_TRUE(r.ok()) << "redis-cli " << ::testing::PrintToString(args) << ": " << r.Describe();
    return r.out;
  }

  std::unique_ptr<ServerProcess> server_;
  std::string port_;
};

TEST_P(ClientsTest, RedisCli) {
  if (std::string(REDIS_CLI_PATH).empty())
    FAIL() << "redis-cli not found (deploy/install-deps.sh installs it)";
  // Not on a terminal, redis-cli prints raw replies, one per line.
  EXPECT_EQ(Cli({"PING"}), "PONG\n");
  EXPECT_EQ(Cli({"SET", "a", "b"}), "OK\n");
  EXPECT_EQ(Cli({"GET", "a"}), "b\n");
  EXPECT_EQ(Cli({"SET", "spaced key", "two words"}), "OK\n");
  EXPECT_EQ(Cli({"GET", "spaced key"}), "two words\n");
  EXPECT_EQ(Cli({"DEL", "a"}), "1\n");
  EXPECT_EQ(Cli({"DEL", "a"}), "0\n");
  EXPECT_EQ(Cli({"GET", "a"}), "\n");  // nil
  EXPECT_EQ(Cli({"QUIT"}), "OK\n");
  // -r repeats the command on one connection.
  EXPECT_EQ(Cli({"-r", "3", "PING"}), "PONG\nPONG\nPONG\n");
}

TEST_P(ClientsTest, RedisBenchmark) {
  if (std::string(REDIS_BENCHMARK_PATH).empty())
    FAIL() << "redis-benchmark not found (deploy/install-deps.sh installs it)";
  RunResult r = RunCommand({REDIS_BENCHMARK_PATH, "-h", "127.0.0.1", "-p", port_, "-q", "-n",
                            "20000", "-t", "set,get", "-P", "16"},
                           std::chrono::seconds(30));
  ASSERT_TRUE(r.ok()) << r.Describe();
  // -q prints "SET: <n> requests per second, p50=<t> msec" per test, after
  // progress lines ending in '\r'.
  for (const char* test : {"SET", "GET"}) {
    std::regex line(std::string("(^|[\r\n])") + test + ": [0-9.]+ requests per second");
    EXPECT_TRUE(std::regex_search(r.out, line)) << "no " << test << " result; " << r.Describe();
  }
  // The SETs reached the server: without -r the key is literally
  // "key:__rand_int__", with a 3-byte value (-d's default).
  Context c = ConnectHiredis(server_->port());
  ASSERT_NE(c, nullptr);
  Reply value = Command(c.get(), {"GET", "key:__rand_int__"});
  ASSERT_NE(value, nullptr);
  EXPECT_EQ(value->type, REDIS_REPLY_STRING) << DescribeReply(value.get());
  EXPECT_EQ(value->len, 3u) << DescribeReply(value.get());
  std::string all = r.out + r.err;
  EXPECT_EQ(all.find("ERR"), std::string::npos) << r.Describe();
  EXPECT_EQ(all.find("rror"), std::string::npos) << r.Describe();  // Error, error
}

// redis-py 4.3 speaks RESP2 only: its parser rejects RESP3's '%' map (a newer
// one returns the map). The script therefore also checks HELLO 3 at the byte
// level on a redis-py connection, then uses that connection in RESP3.
constexpr char kPythonScript[] = R"PY(
import socket
import sys

import redis

port = int(sys.argv[1])
full = sys.argv[2] == "redhubd"

r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
assert r.ping() is True
assert r.set("py:key", "caf\u00e9 \r\n value") is True
got = r.get("py:key")
assert got == "caf\u00e9 \r\n value".encode(), got
assert r.get("py:missing") is None
assert r.delete("py:key") == 1
assert r.get("py:key") is None

if full:
    assert r.echo("hello") == b"hello"
    with r.pipeline(transaction=False) as p:
        for i in range(100):
            p.set("py:%d" % i, str(i))
            p.get("py:%d" % i)
        replies = p.execute()
    assert replies == [x for i in range(100) for x in (True, str(i).encode())], replies

    # HELLO 2 answers with a flat list, as Redis 7.0 does.
    hello2 = r.execute_command("HELLO", "2")
    assert isinstance(hello2, list) and b"proto" in hello2, hello2
    assert hello2[hello2.index(b"proto") + 1] == 2, hello2

    # HELLO 3 through redis-py's parser, on a connection of its own.
    c = redis.connection.Connection(host="127.0.0.1", port=port, socket_timeout=5)
    c.send_command("HELLO", "3")
    try:
        hello3 = c.read_response()
        # A RESP3-capable redis-py: a dict, or a flat list.
        if isinstance(hello3, dict):
            assert hello3.get(b"proto", hello3.get("proto")) == 3, hello3
        else:
            assert hello3[hello3.index(b"proto") + 1] == 3, hello3
    except redis.exceptions.InvalidResponse as e:
        # redis-py 4.3 stops at the RESP3 map header and drops the connection.
        assert "%7" in str(e), e
    c.disconnect()

    # And byte for byte: redis-py sends HELLO 3, the reply is read off its
    # socket.
    c = redis.connection.Connection(host="127.0.0.1", port=port, socket_timeout=5)
    c.send_command("HELLO", "3")
    raw = b""
    while not raw.endswith(b"$7\r\nmodules\r\n*0\r\n"):
        chunk = c._sock.recv(65536)
        assert chunk, raw
        raw += chunk
    assert raw.startswith(b"%7\r\n"), raw
    assert b"$5\r\nproto\r\n:3\r\n" in raw, raw
    assert b"$6\r\nserver\r\n$6\r\nredhub\r\n" in raw, raw
    # The connection now speaks RESP3; SET and GET replies look the same.
    c.send_command("SET", "py3:key", "v3")
    assert c.read_response() == b"OK"
    c.send_command("GET", "py3:key")
    assert c.read_response() == b"v3"
    c.disconnect()
    assert r.get("py3:key") == b"v3"

print("ok")
)PY";

TEST_P(ClientsTest, RedisPy) {
  RunResult r = RunPython(kPythonScript, {port_, KindName(GetParam())}, kClientTimeout);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.out, "ok\n") << r.Describe();
}

INSTANTIATE_TEST_SUITE_P(Servers, ClientsTest,
                         ::testing::Values(ServerKind::kRedhubd, ServerKind::kMemoryKv),
                         [](const auto& info) { return KindName(info.param); });

}  // namespace
}  // namespace redhub::integration
