// The event loop's request path over a real loopback socket, the loop
// stepped on the test's thread: pipelining, split requests, backpressure,
// Close from a handler, the deferred close queue, and the drain on Stop.
#include "event_loop.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loop_harness.h"

namespace redhub::worker {
namespace {

// Handlers that record what ran and what closed.
struct Recorder {
  std::vector<std::string> ran;     // first argument of each command run
  std::vector<std::string> closes;  // on_close reasons

  Handlers Make() {
    Handlers h;
    h.on_command = [this](Conn& c, const resp::Command& cmd, resp::Writer& w) {
      std::string name(cmd.args[0]);
      ran.push_back(name);
      if (name == "ECHO") {
        w.Bulk(cmd.args[1]);
      } else if (name == "BIG") {
        w.Bulk(std::string(std::stoul(std::string(cmd.args[1])), 'x'));
      } else if (name == "CLOSE") {
        w.OK();
        c.Close();
      } else {
        w.String("PONG");
      }
      return Action::kNone;
    };
    h.on_close = [this](Conn&, std::string_view reason) {
      closes.emplace_back(reason);
      return Action::kNone;
    };
    return h;
  }
};

TEST(EventLoopTest, PipelinedRequestsAreAnsweredInOrder) {
  Recorder r;
  TestLoop t(Options{}, r.Make());
  Client c(t.port());
  std::string pipeline, want;
  for (int i = 0; i < 200; i++) {
    pipeline += Req({"ECHO", std::to_string(i)});
    want += "$" + std::to_string(std::to_string(i).size()) + "\r\n" + std::to_string(i) + "\r\n";
  }
  c.Send(pipeline);
  ASSERT_TRUE(PumpUntil({&t}, [&] { return c.Receive() || c.received.size() >= want.size(); }));
  EXPECT_EQ(c.received, want);
  EXPECT_EQ(r.ran.size(), 200u);
}

TEST(EventLoopTest, RequestSplitAcrossWritesIsAnsweredOnceComplete) {
  const std::string req = Req({"ECHO", "hello"});
  for (size_t split = 1; split < req.size(); split++) {
    Recorder r;
    TestLoop t(Options{}, r.Make());
    Client c(t.port());
    c.Send(req.substr(0, split));
    // The loop has read the first part: it must not have run anything.
    ASSERT_TRUE(PumpUntil({&t}, [&] { return t.loop().stats().net_input_bytes == split; }));
    c.Receive();
    EXPECT_EQ(c.received, "") << "split at " << split;
    EXPECT_TRUE(r.ran.empty()) << "split at " << split;
    c.Send(req.substr(split));
    ASSERT_TRUE(PumpUntil({&t}, [&] { return c.Receive() || c.received.size() >= 11; }));
    EXPECT_EQ(c.received, "$5\r\nhello\r\n") << "split at " << split;
    EXPECT_EQ(r.ran.size(), 1u);
  }
}

TEST(EventLoopTest, OutputBackpressurePausesReadingAndResumes) {
  Recorder r;
  Options o;
  o.output_buffer_soft_limit = 64 * 1024;
  o.socket_send_buffer = 16 * 1024;
  TestLoop t(o, r.Make());
  Client c(t.port(), /*rcvbuf=*/16 * 1024);
  const size_t big = 4 * 1024 * 1024;  // far more than both socket buffers
  c.Send(Req({"BIG", std::to_string(big)}));
  ASSERT_TRUE(PumpUntil({&t}, [&] { return t.loop().stats().blocked_reading == 1; }));
  // Paused: a request sent now stays in the socket, however often the loop
  // turns (loopback delivers it before send returns).
  uint64_t read_before = t.loop().stats().net_input_bytes;
  c.Send(Req({"PING"}));
  for (int i = 0; i < 20; i++) t.StepNoWait();
  EXPECT_EQ(r.ran, std::vector<std::string>{"BIG"});
  EXPECT_EQ(t.loop().stats().net_input_bytes, read_before);
  // The client takes its reply: the output drains, reading resumes, and
  // the PING is answered after the whole bulk.
  const size_t want = std::string("$4194304\r\n").size() + big + 2 + 7;
  ASSERT_TRUE(PumpUntil({&t}, [&] { return c.Receive() || c.received.size() >= want; }));
  ASSERT_EQ(c.received.size(), want);
  EXPECT_EQ(c.received.substr(want - 7), "+PONG\r\n");
  EXPECT_EQ(r.ran, (std::vector<std::string>{"BIG", "PING"}));
  EXPECT_EQ(t.loop().stats().blocked_reading, 0u);
}

TEST(EventLoopTest, CloseFromHandlerClosesAfterItsReplyAndRunsNothingLater) {
  Recorder r;
  TestLoop t(Options{}, r.Make());
  Client c(t.port());
  c.Send(Req({"ECHO", "a"}) + Req({"CLOSE"}) + Req({"ECHO", "b"}));
  ASSERT_TRUE(PumpUntil({&t}, [&] { return c.Receive(); }));
  EXPECT_EQ(c.received, "$1\r\na\r\n+OK\r\n");
  EXPECT_EQ(r.ran, (std::vector<std::string>{"ECHO", "CLOSE"}));
  ASSERT_TRUE(PumpUntil({&t}, [&] { return t.loop().stats().connected_clients == 0; }));
  EXPECT_EQ(r.closes, std::vector<std::string>{""});
}

TEST(EventLoopTest, OutputLimitInPipelineClosesOnceAndRunsNothingLater) {
  Recorder r;
  Options o;
  o.output_buffer_hard_limit = 1024;
  // Smaller than the requests left unrun: a read path that went on after
  // Process closed the connection would close it again for the query limit.
  o.max_query_buffer = 16;
  TestLoop t(o, r.Make());
  Client c(t.port());
  // The limit trips inside the batch (Process closes), then the batch's
  // end and the read path must not touch or close it again.
  c.Send(Req({"BIG", "4096"}) + Req({"CLOSE"}) + Req({"PING"}));
  ASSERT_TRUE(PumpUntil({&t}, [&] { return c.Receive(); }));
  EXPECT_EQ(r.ran, std::vector<std::string>{"BIG"});
  for (int i = 0; i < 10; i++) t.StepNoWait();
  EXPECT_EQ(r.closes, std::vector<std::string>{"output buffer limit"});
  EXPECT_EQ(t.loop().stats().output_limit_disconnects, 1u);
  EXPECT_EQ(t.loop().stats().query_limit_disconnects, 0u);
}

TEST(EventLoopTest, PeerHangUpDuringPendingReplyClosesExactlyOnce) {
  Recorder r;
  Options o;
  o.socket_send_buffer = 16 * 1024;
  TestLoop t(o, r.Make());
  auto c = std::make_unique<Client>(t.port(), 16 * 1024);
  c->Send(Req({"BIG", std::to_string(4 * 1024 * 1024)}));
  // The reply is stuck in the server's output (the client does not read).
  ASSERT_TRUE(PumpUntil({&t}, [&] {
    size_t pending = 0;
    t.loop().ForEachClient([&](const ClientInfo& i) { pending = i.output_pending; });
    return pending > 0 && t.loop().stats().net_output_bytes > 0;
  }));
  // A reset: both the read (ECONNRESET) and the pending write (EPIPE) fail,
  // possibly in the same turn; only one of them may close.
  c->Reset();
  ASSERT_TRUE(PumpUntil({&t}, [&] { return t.loop().stats().connected_clients == 0; }));
  // A descriptor opened now likely reuses the closed number: a second close
  // of the connection's fd would close it.
  int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(probe, 0);
  for (int i = 0; i < 10; i++) t.StepNoWait();
  EXPECT_EQ(r.closes.size(), 1u);
  EXPECT_NE(fcntl(probe, F_GETFD), -1) << "the connection's descriptor was closed twice";
  close(probe);
}

TEST(EventLoopTest, StopFinishesTheRequestInProgressThenCloses) {
  Recorder r;
  TestLoop t(Options{}, r.Make());
  Client busy(t.port());
  Client idle(t.port());
  ASSERT_TRUE(PumpUntil({&t}, [&] { return t.loop().stats().connected_clients == 2; }));
  const std::string req = Req({"ECHO", "b"});
  busy.Send(req.substr(0, 5));
  ASSERT_TRUE(PumpUntil({&t}, [&] { return t.loop().stats().net_input_bytes == 5; }));
  t.loop().Stop();
  // The idle one closes at once; the busy one waits for its request.
  ASSERT_TRUE(PumpUntil({&t}, [&] { return idle.Receive(); }));
  EXPECT_EQ(t.loop().stats().connected_clients, 1u);
  EXPECT_FALSE(busy.Receive());
  // The rest of it, and the start of another: the first runs and is
  // answered, the partial one after it is dropped unrun.
  busy.Send(req.substr(5) + Req({"ECHO", "c"}).substr(0, 6));
  ASSERT_TRUE(PumpUntil({&t}, [&] { return busy.Receive(); }));
  EXPECT_EQ(busy.received, "$1\r\nb\r\n");
  EXPECT_EQ(r.ran, std::vector<std::string>{"ECHO"});
  EXPECT_EQ(r.closes, (std::vector<std::string>{"server shutdown", "server shutdown"}));
}

}  // namespace
}  // namespace redhub::worker
