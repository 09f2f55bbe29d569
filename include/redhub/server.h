// The RedHub server framework: build a Redis-protocol server from three
// handlers, as with the Go RedHub, on one libev event loop per process.
//
//   redhub::Handlers h;
//   h.on_command = [](redhub::Conn& c, const redhub::resp::Command& cmd,
//                     redhub::resp::Writer& w) {
//     w.String("PONG");
//     return redhub::Action::kNone;
//   };
//   redhub::Server server(redhub::Options{}, std::move(h));
//   if (auto err = server.Listen("tcp://127.0.0.1:6379"); !err.empty()) die(err);
//   server.Run();  // until a handler returns kShutdown, Stop(), SIGINT or SIGTERM
//
// Each connection reads into its own buffer, every complete command in it is
// parsed (arguments are views into that buffer, valid during the handler
// call only) and handled in order, and the replies of one read are written
// with one system call. A connection whose unsent replies exceed
// output_buffer_soft_limit is not read until they drain (backpressure); one
// that exceeds output_buffer_hard_limit is closed. Handlers run on the loop's
// thread, one at a time.
#pragma once

#include <redhub/reply.h>
#include <redhub/resp.h>

#include <any>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace redhub {

// What the server does after a handler returns.
enum class Action : uint8_t {
  kNone,      // carry on
  kClose,     // flush the replies written so far, then close this connection
  kShutdown,  // flush this connection's replies, then stop the server
};

struct Options {
  // Bytes asked of each read(2). Larger values read big requests in fewer
  // calls; a connection's buffer grows past it as a request needs.
  size_t read_buffer_cap = 64 * 1024;
  // TCP keepalive: idle time before the first probe (0 disables), probe
  // count and interval (0 keeps the system's value).
  std::chrono::seconds tcp_keepalive{300};
  int tcp_keep_count = 0;
  std::chrono::seconds tcp_keep_interval{0};
  bool tcp_nodelay = true;
  // SO_RCVBUF / SO_SNDBUF of accepted sockets; 0 keeps the system's value.
  int socket_recv_buffer = 0;
  int socket_send_buffer = 0;
  int listen_backlog = 511;
  // Interval of the on_tick handler until it returns its own delay; 0 and
  // no on_tick handler: no ticker.
  std::chrono::milliseconds tick_interval{0};
  // Connections beyond this get "-ERR max number of clients reached".
  size_t max_clients = 10000;
  // A connection whose unparsed input exceeds this is closed (Redis's
  // client-query-buffer-limit).
  size_t max_query_buffer = 1024ull * 1024 * 1024;
  // Largest bulk argument accepted (Redis's proto-max-bulk-len).
  size_t max_bulk_len = 512ull * 1024 * 1024;
  // Unsent replies above the soft limit pause reading from the connection;
  // above the hard limit the connection is closed and counted.
  size_t output_buffer_soft_limit = 8 * 1024 * 1024;
  size_t output_buffer_hard_limit = 256 * 1024 * 1024;
  // Close connections idle for this long; 0 never does (Redis's timeout).
  std::chrono::seconds idle_timeout{0};
  // Stop gracefully on SIGINT and SIGTERM.
  bool handle_signals = true;
};

class Conn;
struct ServerStats;
namespace worker {
class EventLoop;
}

// A client as the loop serving it sees it: the connection and its buffers
// (CLIENT LIST, CLIENT INFO).
struct ClientInfo {
  const Conn* conn = nullptr;
  size_t query_buffer = 0;       // unparsed input bytes
  size_t query_buffer_free = 0;  // room left in the input buffer
  size_t output_pending = 0;     // reply bytes not yet sent
  size_t memory = 0;             // everything the connection holds
};

// What a handler may know of the event loop that runs it (Conn::server(),
// Handlers::on_start): the server's facts and its clients, read-only. A
// handler never sees the loop itself, so the loop can change under it.
class ServerView {
 public:
  // The loop's clock in seconds (libev's ev_now: read once per iteration).
  virtual double now() const = 0;
  // Changes every time the loop starts running a connection's buffered
  // requests: commands run under one value ran back to back.
  virtual uint64_t batch() const = 0;
  virtual const Options& options() const = 0;
  virtual ServerStats stats() const = 0;
  // Bytes held by every connection's input and output buffers.
  virtual size_t client_buffer_bytes() const = 0;
  // Every connection this loop serves, oldest first.
  virtual void ForEachClient(const std::function<void(const ClientInfo&)>& fn) const = 0;
  virtual ClientInfo Describe(const Conn& conn) const = 0;

 protected:
  ~ServerView() = default;
};

// One client connection, as handlers see it.
class Conn {
 public:
  uint64_t id() const { return id_; }
  // "ip:port", "[ipv6]:port" or "/path:0" for unix sockets.
  const std::string& remote_addr() const { return remote_addr_; }
  const std::string& local_addr() const { return local_addr_; }
  int fd() const { return fd_; }

  // The reply protocol: 2 (RESP2, the default) or 3 (RESP3, after HELLO 3).
  int protocol() const { return protocol_; }
  void set_protocol(int protocol);

  // CLIENT SETNAME / GETNAME.
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

  // The user the connection is authenticated as (AUTH, HELLO AUTH), as the
  // application names it; "" until it sets one (redhubd: the default user).
  // Moves with the connection to a successor worker.
  const std::string& user() const { return user_; }
  void set_user(std::string user) { user_ = std::move(user); }

  // State bits of the application's command layer (redhubd: inside MULTI),
  // 0 when new. A plain word, not context(), because a command handler may
  // test it on every request; it moves with the connection to a successor
  // worker (reload, upgrade), as the name and protocol do.
  uint32_t session_flags() const { return session_flags_; }
  void set_session_flags(uint32_t flags) { session_flags_ = flags; }

  // State of the application's that cannot move with the connection to a
  // successor worker (redhubd: a MULTI queue, WATCHed keys): while set, a
  // reload or upgrade leaves the connection here; it moves at its next
  // request boundary after this is cleared, or stays until it closes or the
  // drain timeout.
  bool stays_here() const { return stays_here_; }
  void set_stays_here(bool stays) { stays_here_ = stays; }

  // Seconds since the connection was accepted and since its last command.
  int64_t age_seconds() const;
  int64_t idle_seconds() const;

  // Closes the connection once the replies written so far are sent; commands
  // already received after the current one are not run. Also from outside
  // the connection's own handler (another connection's command, a tick):
  // then it closes before the loop next waits for events.
  void Close();
  // Closes the connection at once, dropping the replies not yet sent (Redis's
  // CLIENT_CLOSE_ASAP): for a peer that is not a client, such as an HTTP
  // request sent to the RESP port. Commands received after the current one
  // are not run.
  void Abort();

  // The loop serving this connection.
  const ServerView& server() const { return *server_; }

  // Per-connection state of the application's own type:
  //   c.context().emplace<Session>(...);  auto* s = c.context_as<Session>();
  std::any& context() { return context_; }
  template <class T>
  T* context_as() {
    return std::any_cast<T>(&context_);
  }

 protected:
  Conn() = default;
  ~Conn() = default;

  uint64_t id_ = 0;
  int fd_ = -1;
  int protocol_ = 2;
  uint32_t session_flags_ = 0;
  bool stays_here_ = false;
  bool close_requested_ = false;
  bool abort_requested_ = false;
  double created_at_ = 0;  // ServerView::now() timestamps
  double last_active_ = 0;
  const ServerView* server_ = nullptr;
  worker::EventLoop* loop_ = nullptr;  // the loop's own connections: Close from outside
  resp::Writer* writer_ = nullptr;
  std::string remote_addr_;
  std::string local_addr_;
  std::string name_;
  std::string user_;
  std::any context_;
};

struct Tick {
  std::chrono::milliseconds delay{0};  // until the next tick; 0 stops the ticker
  Action action = Action::kNone;       // kShutdown stops the server
};

struct Handlers {
  // Run() is starting: the loop these handlers run in, valid until Run()
  // returns. Optional.
  std::function<void(const ServerView&)> on_start;
  // A connection was accepted. Anything written is sent before any reply.
  std::function<Action(Conn&, resp::Writer&)> on_open;
  // A connection is closing. reason is "" for a clean close or says why
  // (e.g. "protocol error", "output buffer limit", "peer closed").
  std::function<Action(Conn&, std::string_view reason)> on_close;
  // One parsed command. Write exactly one reply per command to the writer.
  std::function<Action(Conn&, const resp::Command&, resp::Writer&)> on_command;
  // Called every Tick::delay while it returns a non-zero delay.
  std::function<Tick()> on_tick;
  // Called before the commands read at once from a connection run, with
  // the bytes that hold them (whole requests from the start; the last may
  // be incomplete): a chance to look ahead, e.g. to prefetch their keys.
  // Optional; must not keep the pointer.
  std::function<void(std::string_view requests)> on_batch_begin;
  // Called when the commands read at once from a connection have run (after
  // their last on_command, before their replies are sent): the end of a
  // pipelined batch. Optional.
  std::function<void()> on_batch_end;
};

// Counters of one event loop, since it started.
struct ServerStats {
  uint64_t connections_received = 0;
  uint64_t rejected_connections = 0;  // over max_clients
  uint64_t commands_processed = 0;
  uint64_t net_input_bytes = 0;
  uint64_t net_output_bytes = 0;
  uint64_t protocol_errors = 0;
  uint64_t output_limit_disconnects = 0;
  uint64_t query_limit_disconnects = 0;
  uint64_t idle_disconnects = 0;
  uint64_t connections_adopted = 0;  // taken over from a retiring worker
  // accept4 failures (out of file descriptors, mostly): accepting pauses
  // for 100 ms, doubling to 1 s, instead of retrying at once.
  uint64_t accept_errors = 0;
  uint64_t connected_clients = 0;
  uint64_t blocked_reading = 0;  // connections paused by backpressure now
  // TLS: connections closed before their handshake completed (an error,
  // no client certificate, a plaintext client, the handshake timeout), and
  // connections past their handshake now.
  uint64_t tls_handshake_failures = 0;
  uint64_t tls_connected_clients = 0;
};

class Server {
 public:
  Server(Options options, Handlers handlers);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens on "tcp://host:port", "host:port", "[v6]:port" or
  // "unix:///path". Port 0 picks a free port (see port()). Returns "" or a
  // message naming the failed system call and errno.
  std::string Listen(std::string_view address);
  // The port of the first TCP listener, after Listen().
  uint16_t port() const { return port_; }

  // Runs the event loop until shutdown. Returns 0, or 1 if it could not run.
  int Run();
  // Asks Run() to return; safe from any thread and from signal handlers.
  void Stop();

  ServerStats stats() const;

 private:
  Options options_;
  std::unique_ptr<worker::EventLoop> loop_;
  std::vector<int> listen_fds_;
  uint16_t port_ = 0;
};

// Listen on one address and run until shutdown, like the Go ListenAndServe.
// Returns "" after a clean shutdown, else the error.
std::string ListenAndServe(std::string_view address, const Options& options, Handlers handlers);

}  // namespace redhub
