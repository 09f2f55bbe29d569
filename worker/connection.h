// One client connection as the event loop holds it: the socket, its input
// and output buffers, the parser and reply writer over them, and the flags
// that say where in its life the connection is (paused by backpressure,
// closing after its replies, offered to a successor, closed and waiting in
// the loop's close queue).
//
// A plain record, by design: the EventLoop that owns it (event_loop.h) runs
// every transition, so the rules for the flags live with the code that
// changes them. Handlers see it only as a redhub::Conn.
#pragma once

#include <ev.h>
#include <redhub/server.h>

#include <string>

#include "buffer.h"
#include "transport.h"

namespace redhub::worker {

class EventLoop;

// How a closed connection's socket is let go (EventLoop::Close).
enum class CloseKind : uint8_t {
  // The server decided (QUIT, limits, drain, protocol error): the client may
  // still be sending, so the socket lingers until it has read the replies.
  kServer,
  // The client closed its side or the socket failed: nothing can reset it
  // now, so it is closed at once.
  kPeerGone,
  // Another process serves the socket now (adopted by the successor, or left
  // with the predecessor): only our descriptor is closed, without on_close,
  // since for the client the connection goes on.
  kMoved,
};

// TCP_NODELAY, keepalive and buffer sizes of an accepted socket, as the
// options say; a failure is logged and the socket served anyway.
void ConfigureSocket(int fd, const Options& options);

class Connection : public Conn {
 public:
  Connection(EventLoop* owner, int fd, uint64_t id);
  ~Connection();

  size_t pending_output() const { return out.size() - out_sent; }
  size_t buffer_bytes() const { return in.capacity() + out.capacity(); }
  const std::string& close_reason() const { return close_reason_; }
  // Close() was called: the connection is off the loop's list, its watchers
  // are stopped, and it waits in the close queue; nothing reads from it or
  // runs its commands any more.
  bool closed() const { return closed_; }

  EventLoop* owner;
  // Every byte in and out goes through it: the socket, or TLS over it.
  Transport transport;
  ev_io read_watcher;
  ev_io write_watcher;
  InputBuffer in;
  std::string out;  // replies not yet sent start at out_sent
  size_t out_sent = 0;
  resp::Parser parser;
  resp::Writer writer;
  bool paused = false;       // reading stopped by backpressure
  bool close_after = false;  // close once the output is flushed
  bool in_handler = false;   // a handler of this connection is running
  bool handing_off = false;  // sent to the successor, waiting for its answer
  bool refused = false;      // the successor refused it: served here, never offered again
  uint64_t commands = 0;
  // TLS only (transport.h): a read that must wait for the socket to be
  // writable, a write that must wait for it to be readable, and bytes
  // OpenSSL holds that no event will announce (the loop's pending list).
  bool read_wants_write = false;
  bool write_wants_read = false;
  bool tls_pending = false;
  Connection* prev = nullptr;  // the loop's list of connections
  Connection* next = nullptr;
  bool flush_queued = false;         // in the loop's list of replies to send
  Connection* flush_prev = nullptr;  // before it waits for events
  Connection* flush_next = nullptr;

 private:
  friend class EventLoop;
  std::string close_reason_;
  bool closed_ = false;
  CloseKind close_kind_ = CloseKind::kServer;
};

}  // namespace redhub::worker
