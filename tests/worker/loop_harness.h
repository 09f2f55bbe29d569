// Test scaffolding for the event loop: an EventLoop listening on loopback,
// stepped on the test's own thread (no threads, no sleeps), and a plain
// non-blocking client socket. Every wait is for a condition, with a
// deadline, pumping the loop meanwhile.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "event_loop.h"
#include "net.h"

namespace redhub::worker {

// A request in RESP multibulk form.
inline std::string Req(const std::vector<std::string>& args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

class TestLoop {
 public:
  explicit TestLoop(Options o, Handlers h, bool listen = true) {
    o.handle_signals = false;
    loop_ = std::make_unique<EventLoop>(o, std::move(h));
    if (listen) {
      Address addr;
      EXPECT_EQ(ParseAddress("127.0.0.1:0", &addr), "");
      std::string err;
      listen_fd_ = Listen(addr, ListenOptions{}, &err);
      EXPECT_GE(listen_fd_, 0) << err;
      port_ = BoundPort(listen_fd_);
      loop_->AddListener(listen_fd_);
    }
    // Bounds each step's wait, so a step never blocks for long on an idle
    // loop; it keeps the loop alive too, as the daemon's listeners do.
    ev_timer_init(
        &tick_, [](struct ev_loop*, ev_timer*, int) {}, 0.005, 0.005);
    ev_timer_start(loop_->loop(), &tick_);
  }
  ~TestLoop() {
    ev_timer_stop(loop_->loop(), &tick_);
    loop_.reset();  // connections first, then the listener they came from
    if (listen_fd_ >= 0) close(listen_fd_);
  }

  EventLoop& loop() { return *loop_; }
  uint16_t port() const { return port_; }
  // One turn of the loop: waits at most ~5 ms for events, runs them, and
  // the prepare watcher (flushes and the close queue).
  void Step() { ev_run(loop_->loop(), EVRUN_ONCE); }
  // A turn that does not wait.
  void StepNoWait() { ev_run(loop_->loop(), EVRUN_NOWAIT); }

 private:
  std::unique_ptr<EventLoop> loop_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  ev_timer tick_;
};

// Pumps the given loops until done() or 5 s; false on the deadline.
inline bool PumpUntil(std::vector<TestLoop*> loops, const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    for (TestLoop* l : loops) l->Step();
  }
  return true;
}

class Client {
 public:
  explicit Client(uint16_t port, int rcvbuf = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // Completes at once on loopback (the listener's backlog takes it).
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }

  // Small writes only: they fit the socket buffer, so one send takes all.
  void Send(const std::string& s) {
    ASSERT_EQ(send(fd_, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }
  // Reads what has arrived; true once the server has closed.
  bool Receive() {
    char buf[65536];
    while (true) {
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n > 0) {
        received.append(buf, n);
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof = true;
      return eof;
    }
  }
  // Closes with a reset (SO_LINGER 0): the peer's pending writes fail.
  void Reset() {
    linger l{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd_);
    fd_ = -1;
  }

  std::string received;
  bool eof = false;

 private:
  int fd_ = -1;
};

}  // namespace redhub::worker
