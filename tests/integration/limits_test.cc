// redhubd's limits, with one worker process so that INFO's counters cover
// every connection: maxclients, the output buffer hard limit (a client that
// never reads is cut off, nobody else is) and the soft limit's backpressure
// (a slow reader is paused, not cut off, and loses nothing).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

std::string Ping(Socket& s) {
  if (!s.SendAll("PING\r\n")) return "(send failed)";
  return s.RecvN(7);
}

TEST(LimitsTest, MaxClients) {
  auto server = StartRedhubd({"--workers", "1", "--maxclients", "2"});
  ASSERT_NE(server, nullptr);
  Socket a = Socket::Connect(server->port());
  Socket b = Socket::Connect(server->port());
  ASSERT_TRUE(a.valid() && b.valid());
  // Both are accepted and counted once they have been answered.
  ASSERT_EQ(Ping(a), "+PONG\r\n");
  ASSERT_EQ(Ping(b), "+PONG\r\n");

  Socket c = Socket::Connect(server->port());
  ASSERT_TRUE(c.valid());
  std::string got;
  EXPECT_TRUE(c.WaitForClose(kTimeout, &got)) << "the third client was not closed; got: " << got;
  EXPECT_EQ(got, "-ERR max number of clients reached\r\n");

  Reply info = SocketCommand(a, {"INFO", "stats"});
  ASSERT_NE(info, nullptr);
  ASSERT_EQ(info->type, REDIS_REPLY_STRING) << DescribeReply(info.get());
  std::string_view text(info->str, info->len);
  EXPECT_EQ(InfoField(text, "rejected_connections"), "1");

  // Once b is gone (QUIT, then EOF: the server has closed its side), a new
  // client is accepted.
  ASSERT_TRUE(b.SendAll("QUIT\r\n"));
  ASSERT_EQ(b.RecvN(5), "+OK\r\n");
  ASSERT_TRUE(b.WaitForClose());
  Socket d = Socket::Connect(server->port());
  ASSERT_TRUE(d.valid());
  EXPECT_EQ(Ping(d), "+PONG\r\n");
  EXPECT_EQ(Ping(a), "+PONG\r\n");
}

// 4 KB values: 22 bytes of "GET key" ask for 4 KB of reply.
const std::string kValue = [] {
  std::string v;
  for (int i = 0; v.size() < 4096; i++) v += static_cast<char>('a' + i % 26);
  return v;
}();

std::string RepeatedGets(size_t bytes) {
  const std::string get = FormatCommand({"GET", "key"});
  std::string out;
  out.reserve(bytes + get.size());
  while (out.size() < bytes) out += get;
  return out;
}

TEST(LimitsTest, OutputBufferHardLimitClosesOnlyTheFloodingClient) {
  auto server = StartRedhubd(
      {"--workers", "1", "--output-buffer-soft-limit", "1mb", "--output-buffer-hard-limit", "4mb"});
  ASSERT_NE(server, nullptr);
  std::string error;
  Context ctl = ConnectHiredis(server->port(), kTimeout, &error);
  ASSERT_NE(ctl, nullptr) << error;
  Reply set = Command(ctl.get(), {"SET", "key", kValue});
  ASSERT_EQ(DescribeReply(set.get()), "+OK");
  Socket bystander = Socket::Connect(server->port());
  ASSERT_TRUE(bystander.valid());
  ASSERT_EQ(Ping(bystander), "+PONG\r\n");

  // 10 MB of GETs in 1 MB sends, never reading. The server reads 64 KB at a
  // time; one read asks for ~12 MB of replies, over the 4 MB hard limit.
  const std::string flood = RepeatedGets(10 * 1024 * 1024);
  Socket flooder = Socket::Connect(server->port());
  ASSERT_TRUE(flooder.valid());
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  size_t sent = 0;
  int send_error = 0;
  while (sent < flood.size() && send_error == 0 && Clock::now() < deadline) {
    std::string_view rest(flood.data() + sent, std::min<size_t>(flood.size() - sent, 1 << 20));
    ssize_t n = flooder.SendSome(rest, &send_error);
    if (n > 0) {
      sent += n;
    } else if (n == 0) {
      pollfd p{flooder.fd(), POLLOUT, 0};
      poll(&p, 1, 100);
    }
  }
  if (send_error != 0) {
    EXPECT_TRUE(send_error == EPIPE || send_error == ECONNRESET)
        << "send failed with " << strerror(send_error);
  } else {
    // Everything fitted in the socket buffers, or the deadline passed: the
    // server must close the connection anyway (EOF or a reset).
    ASSERT_EQ(sent, flood.size()) << "the server neither read the flood nor closed the client";
    std::string got;
    EXPECT_TRUE(flooder.WaitForClose(kTimeout, &got)) << "the flooding client was not closed";
  }

  // Everyone else is served as before.
  EXPECT_EQ(Ping(bystander), "+PONG\r\n");
  Reply get = SocketCommand(bystander, {"GET", "key"});
  ASSERT_NE(get, nullptr);
  EXPECT_EQ(get->type, REDIS_REPLY_STRING);
  EXPECT_EQ(std::string(get->str, get->len), kValue);
  EXPECT_EQ(DescribeReply(Command(ctl.get(), {"PING"}).get()), "+PONG");

  EXPECT_EQ(InfoInt(ctl.get(), "stats", "client_output_buffer_limit_disconnections"), 1);
  // The flooder's buffers are freed and it is no longer counted: ctl and
  // the bystander remain.
  std::optional<int64_t> buffers, clients;
  EXPECT_TRUE(WaitUntil([&] {
    buffers = InfoInt(ctl.get(), "clients", "client_buffers_bytes");
    clients = InfoInt(ctl.get(), "clients", "connected_clients");
    return buffers && *buffers < 1024 * 1024 && clients == 2;
  })) << "client_buffers_bytes="
      << buffers.value_or(-1) << " connected_clients=" << clients.value_or(-1);
}

// With the default limits (8 MB soft, 256 MB hard) a client that pipelines
// ~2 MB of GETs of a 4 KB value (~390 MB of replies) and does not read is
// paused, not closed, and then gets every reply in order.
TEST(LimitsTest, BackpressurePausesASlowReaderWithoutLoss) {
  auto server = StartRedhubd({"--workers", "1"});
  ASSERT_NE(server, nullptr);
  std::string error;
  Context ctl = ConnectHiredis(server->port(), kTimeout, &error);
  ASSERT_NE(ctl, nullptr) << error;
  // GETs cycle through 61 keys with distinct 4 KB values, so a lost,
  // repeated or reordered reply shows.
  constexpr size_t kKeys = 61;
  std::vector<std::string> values;
  for (size_t k = 0; k < kKeys; k++) {
    std::string v = "value " + std::to_string(k) + " ";
    for (size_t i = 0; v.size() < 4096; i++) v += static_cast<char>('a' + (k + i) % 26);
    values.push_back(v);
    ASSERT_EQ(DescribeReply(Command(ctl.get(), {"SET", "key" + std::to_string(k), v}).get()),
              "+OK");
  }
  std::string gets;
  size_t count = 0;
  for (; gets.size() < 2 * 1024 * 1024; count++) {
    gets += FormatCommand({"GET", "key" + std::to_string(count % kKeys)});
  }
  Socket client = Socket::Connect(server->port());
  ASSERT_TRUE(client.valid());

  // The requests go out from a thread: while the server is paused they fill
  // the socket buffers, and only our reading lets them all through.
  bool send_ok = false;
  int send_error = 0;
  struct Sender {
    Socket& s;
    std::thread t;
    ~Sender() {
      if (t.joinable()) {  // a failed assertion: unblock and stop the thread
        shutdown(s.fd(), SHUT_RDWR);
        t.join();
      }
    }
  } sender{client, std::thread([&] {
             send_ok = client.SendAll(gets, std::chrono::seconds(30), &send_error);
           })};

  std::optional<int64_t> paused;
  ASSERT_TRUE(WaitUntil([&] {
    paused = InfoInt(ctl.get(), "clients", "clients_paused_by_backpressure");
    return paused == 1;
  })) << "clients_paused_by_backpressure="
      << paused.value_or(-1);
  EXPECT_EQ(InfoInt(ctl.get(), "stats", "client_output_buffer_limit_disconnections"), 0);

  // Now read everything.
  ReplyReader reader;
  for (size_t i = 0; i < count; i++) {
    Reply r = reader.Read(client);
    ASSERT_NE(r, nullptr) << "reply " << i << " of " << count << " did not come";
    ASSERT_EQ(r->type, REDIS_REPLY_STRING) << "reply " << i << ": " << DescribeReply(r.get());
    ASSERT_TRUE(std::string_view(r->str, r->len) == values[i % kKeys])
        << "reply " << i << " is not the value of key" << i % kKeys << ": "
        << DescribeReply(r.get());
  }
  EXPECT_EQ(reader.buffered(), 0u);
  sender.t.join();
  EXPECT_TRUE(send_ok) << "send failed: " << strerror(send_error);

  ASSERT_TRUE(client.SendAll("PING\r\n"));
  EXPECT_EQ(client.RecvN(7), "+PONG\r\n");
  EXPECT_EQ(InfoInt(ctl.get(), "stats", "client_output_buffer_limit_disconnections"), 0);
  EXPECT_EQ(InfoInt(ctl.get(), "clients", "clients_paused_by_backpressure"), 0);
  EXPECT_EQ(InfoInt(ctl.get(), "clients", "connected_clients"), 2);
}

}  // namespace
}  // namespace redhub::integration
