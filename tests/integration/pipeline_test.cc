// Deep pipelines: 10,000 commands in one write, and the same bytes one byte
// at a time; every reply must come back correct and in order.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

constexpr int kCommands = 10000;

// Command i is "SET k<j> <value j>" for even i (j = i / 2) and, for odd i,
// "GET k<j / 2>": a key set earlier in the same pipeline, so every reply is
// known in advance. Values vary in length so bulk headers vary too.
struct Pipeline {
  std::string bytes;
  std::vector<std::string> expected;  // "+OK" or the GET's value
};

std::string Value(int j) {
  std::string v = "v";
  v += std::to_string(j);
  v += '-';
  v.append(j % 61, 'x');
  return v;
}

Pipeline BuildPipeline(const std::string& prefix) {
  Pipeline p;
  for (int i = 0; i < kCommands; i++) {
    int j = i / 2;
    if (i % 2 == 0) {
      p.bytes += FormatCommand({"SET", prefix + std::to_string(j), Value(j)});
      p.expected.push_back("+OK");
    } else {
      p.bytes += FormatCommand({"GET", prefix + std::to_string(j / 2)});
      p.expected.push_back(Value(j / 2));
    }
  }
  return p;
}

// Checks reply i against the pipeline; returns false (with a failure) on the
// first mismatch so a broken stream does not print 10,000 failures.
bool CheckReply(const Pipeline& p, int i, const redisReply* r) {
  if (r == nullptr) {
    ADD_FAILURE() << "no reply " << i << " of " << kCommands;
    return false;
  }
  if (p.expected[i] == "+OK") {
    if (r->type != REDIS_REPLY_STATUS || std::string(r->str, r->len) != "OK") {
      ADD_FAILURE() << "reply " << i << ": expected +OK, got " << DescribeReply(r);
      return false;
    }
  } else if (r->type != REDIS_REPLY_STRING || std::string(r->str, r->len) != p.expected[i]) {
    ADD_FAILURE() << "reply " << i << ": expected $" << p.expected[i] << ", got "
                  << DescribeReply(r);
    return false;
  }
  return true;
}

class PipelineTest : public ::testing::TestWithParam<ServerKind> {
 protected:
  void SetUp() override {
    server_ = StartServer(GetParam());
    ASSERT_NE(server_, nullptr);
  }
  std::unique_ptr<ServerProcess> server_;
};

TEST_P(PipelineTest, TenThousandCommandsInOneWrite) {
  std::string error;
  Context c = ConnectHiredis(server_->port(), kTimeout, &error);
  ASSERT_NE(c, nullptr) << error;
  Pipeline p = BuildPipeline("k");

  // One send(2) of the whole pipeline on hiredis's blocking socket; the
  // replies are read back through hiredis.
  ssize_t n = send(c->fd, p.bytes.data(), p.bytes.size(), MSG_NOSIGNAL);
  ASSERT_EQ(n, static_cast<ssize_t>(p.bytes.size())) << "send: " << strerror(errno);
  for (int i = 0; i < kCommands; i++) {
    void* reply = nullptr;
    ASSERT_EQ(redisGetReply(c.get(), &reply), REDIS_OK) << "reply " << i << ": " << c->errstr;
    Reply r(static_cast<redisReply*>(reply));
    ASSERT_TRUE(CheckReply(p, i, r.get()));
  }
  // Nothing beyond the 10,000 replies, and the connection still works.
  Reply ping = Command(c.get(), {"PING"});
  ASSERT_NE(ping, nullptr) << c->errstr;
  EXPECT_EQ(DescribeReply(ping.get()), "+PONG");
}

TEST_P(PipelineTest, TenThousandCommandsOneByteAtATime) {
  Socket s = Socket::Connect(server_->port());
  ASSERT_TRUE(s.valid());
  // Every byte its own segment, as far as TCP goes.
  int one = 1;
  setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  Pipeline p = BuildPipeline("byte:");

  // Replies are read as they come, between bytes, so that neither side's
  // buffers fill; nothing waits between bytes.
  ReplyReader reader;
  int replies = 0;
  char buf[65536];
  auto drain = [&]() -> bool {
    while (true) {
      ssize_t n = recv(s.fd(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n <= 0) return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
      reader.Feed(std::string_view(buf, n));
      while (Reply r = reader.Next()) {
        if (replies >= kCommands) {
          ADD_FAILURE() << "more replies than commands: " << DescribeReply(r.get());
          return false;
        }
        if (!CheckReply(p, replies, r.get())) return false;
        replies++;
      }
      if (reader.error()) {
        ADD_FAILURE() << "the replies are not valid RESP";
        return false;
      }
    }
  };
  for (size_t i = 0; i < p.bytes.size(); i++) {
    ASSERT_TRUE(s.SendAll(std::string_view(&p.bytes[i], 1))) << "byte " << i;
    if (i % 4096 == 4095) {
      ASSERT_TRUE(drain()) << "at byte " << i;
    }
  }
  while (replies < kCommands) {
    Reply r = reader.Read(s);
    ASSERT_TRUE(CheckReply(p, replies, r.get()));
    replies++;
  }
  EXPECT_EQ(reader.buffered(), 0u);
  ASSERT_TRUE(s.SendAll("PING\r\n"));
  EXPECT_EQ(s.RecvN(7), "+PONG\r\n");
}

INSTANTIATE_TEST_SUITE_P(Servers, PipelineTest,
                         ::testing::Values(ServerKind::kRedhubd, ServerKind::kMemoryKv),
                         [](const auto& info) { return KindName(info.param); });

}  // namespace
}  // namespace redhub::integration
