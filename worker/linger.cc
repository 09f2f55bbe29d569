// Lingering close (nginx's lingering_close): why and how a closed
// connection's socket is kept open until the client has its replies.
#include "linger.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "log.h"
#include "syserr.h"

namespace redhub::worker {
namespace {

// nginx's lingering_timeout: how long a client gets to take its replies
// after the server closed its side.
constexpr double kLingerSeconds = 5;
// How often a lingering socket is asked whether the client has acknowledged
// everything (there is no event for that): first after 10 ms, when a client
// that reads has usually acknowledged the FIN, then less and less often, so
// that many sockets closed at once (a drain) cost few system calls.
constexpr double kLingerFirstCheck = 0.01;
constexpr double kLingerLastCheck = 0.5;

// Everything sent has been acknowledged: a reset can no longer lose a reply.
bool AllAcknowledged(int fd) {
  int unacked = 0;
  return ioctl(fd, SIOCOUTQ, &unacked) != 0 || unacked == 0;
}

}  // namespace

struct Lingerer::Socket {
  Lingerer* owner;
  ev_io io;
  ev_timer timer;   // checks whether the client has everything
  double deadline;  // ev_now() after which it is closed anyway
  Socket* prev = nullptr;
  Socket* next = nullptr;
};

bool Lingerer::Close(int fd) {
  // Closing a socket with input not yet read makes the kernel answer with a
  // reset, and a reset throws away the replies still in the send queue (sent
  // by us, not yet acknowledged): the client would never see the answers of
  // commands that ran. So, as nginx's lingering close: send FIN after the
  // replies, then read and discard what the client still sends until it has
  // acknowledged everything (the FIN too) or closed. Nothing queued either
  // way: close at once. A unix socket's reset does not take back what is
  // queued to the peer: close at once too.
  int unread = 0;
  int domain = 0;
  socklen_t len = sizeof(domain);
  if ((getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX) ||
      (ioctl(fd, FIONREAD, &unread) == 0 && unread == 0 && AllAcknowledged(fd))) {
    close(fd);
    return true;
  }
  if (shutdown(fd, SHUT_WR) != 0) {  // ENOTCONN: the client reset it already
    close(fd);
    return true;
  }
  auto* s = new Socket;
  s->owner = this;
  ev_io_init(&s->io, OnReadable, fd, EV_READ);
  s->io.data = s;
  ev_timer_init(&s->timer, OnTimer, kLingerFirstCheck, kLingerFirstCheck);
  s->timer.data = s;
  s->deadline = ev_now(loop_) + kLingerSeconds;
  s->next = head_;
  if (head_ != nullptr) head_->prev = s;
  head_ = s;
  ev_io_start(loop_, &s->io);
  ev_timer_start(loop_, &s->timer);
  return false;
}

void Lingerer::CloseAll() {
  while (head_ != nullptr) End(head_);
}

void Lingerer::OnReadable(struct ev_loop*, ev_io* w, int) {
  auto* s = static_cast<Socket*>(w->data);
  static char discard[16384];
  // A bounded number of reads per wakeup: a client that keeps sending must
  // not starve the other connections; the timeout ends it.
  for (int i = 0; i < 16; i++) {
    ssize_t n = recv(w->fd, discard, sizeof(discard), 0);
    if (n > 0) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (AllAcknowledged(w->fd)) s->owner->End(s);
      return;
    }
    if (n < 0 && errno == EINTR) continue;
    s->owner->End(s);  // closed by the client (or reset)
    return;
  }
}

void Lingerer::OnTimer(struct ev_loop* loop, ev_timer* w, int) {
  auto* s = static_cast<Socket*>(w->data);
  if (AllAcknowledged(s->io.fd) || ev_now(loop) >= s->deadline) {
    s->owner->End(s);
    return;
  }
  w->repeat = std::min(w->repeat * 2, kLingerLastCheck);
  ev_timer_again(loop, w);
}

void Lingerer::End(Socket* s) {
  ev_io_stop(loop_, &s->io);
  ev_timer_stop(loop_, &s->timer);
  if (close(s->io.fd) < 0) LOG_VERBOSE("close(%d) failed: %s", s->io.fd, ErrnoText(errno).c_str());
  if (s->prev != nullptr) s->prev->next = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  if (head_ == s) head_ = s->next;
  delete s;
  closed_();
}

}  // namespace redhub::worker
