// Lingering close: a socket the server closes is kept open, read and
// discarded, until the client has read the replies, so that the close does
// not turn into a reset that throws them away (see Lingerer::Close).
//
// Its own class because it shares nothing with a live connection but the
// descriptor: a lingering socket has no buffers, parser or handlers, only
// a read watcher and a timer, and the loop only needs to know when one is
// finally closed (a descriptor is free again) and whether any is left.
#pragma once

#include <ev.h>

#include <functional>

namespace redhub::worker {

class Lingerer {
 public:
  // closed runs after each lingering socket is finally closed.
  Lingerer(struct ev_loop* loop, std::function<void()> closed)
      : loop_(loop), closed_(std::move(closed)) {}
  ~Lingerer() { CloseAll(); }
  Lingerer(const Lingerer&) = delete;
  Lingerer& operator=(const Lingerer&) = delete;

  // Closes fd once the client has read what was sent, or at once when
  // nothing can be lost. Returns true if it was closed at once (closed is not
  // run then: the caller knows).
  bool Close(int fd);
  // Closes every lingering socket now (shutdown).
  void CloseAll();
  bool empty() const { return head_ == nullptr; }

 private:
  struct Socket;
  static void OnReadable(struct ev_loop* loop, ev_io* w, int events);
  static void OnTimer(struct ev_loop* loop, ev_timer* w, int events);
  void End(Socket* s);

  struct ev_loop* loop_;
  std::function<void()> closed_;
  Socket* head_ = nullptr;
};

}  // namespace redhub::worker
