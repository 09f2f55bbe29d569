#include "event_loop.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "channel.h"
#include "counters.h"
#include "log.h"
#include "net.h"
#include "syserr.h"
#include "worker_counters.h"

namespace redhub::worker {
namespace {

constexpr int kMaxAcceptsPerEvent = 64;
// Buffers bigger than this are given back once a connection is idle.
constexpr size_t kIdleBufferKeep = 64 * 1024;
constexpr char kMaxClientsError[] = "-ERR max number of clients reached\r\n";
// After an accept4 failure (out of descriptors): how long accepting pauses,
// doubling per failure in a row; and at most one log line per interval.
constexpr double kAcceptBackoffMin = 0.1;
constexpr double kAcceptBackoffMax = 1.0;
constexpr double kAcceptLogInterval = 1.0;

}  // namespace

Connection::Connection(EventLoop* owner_loop, int fd, uint64_t id)
    : owner(owner_loop), writer(out) {
  fd_ = fd;
  id_ = id;
  writer_ = &writer;
  server_ = owner_loop;
  created_at_ = last_active_ = owner_loop->now();
  resp::ParserLimits limits;
  limits.max_bulk_len = owner_loop->options().max_bulk_len;
  parser.set_limits(limits);
}

Connection::~Connection() = default;

EventLoop::EventLoop(const Options& options, Handlers handlers)
    : options_(options), handlers_(std::move(handlers)) {
  // A loop of its own, never libev's default loop: the default loop takes
  // over SIGCHLD, which belongs to the master.
  loop_ = ev_loop_new(static_cast<unsigned>(EVBACKEND_EPOLL) | EVFLAG_NOENV);
  if (loop_ == nullptr) loop_ = ev_loop_new(EVFLAG_AUTO);
  ev_set_userdata(loop_, this);

  ev_timer_init(&cron_, OnCron, 1.0, 1.0);
  ev_timer_start(loop_, &cron_);
  ev_unref(loop_);  // housekeeping alone does not keep the loop alive

  // Replies are sent just before the loop waits for events again, as
  // Redis's beforeSleep does: all the connections that became readable
  // together are served first, then answered in one burst, so a client
  // with many connections (redis-benchmark, a pool) wakes once for many
  // replies instead of once per reply.
  ev_prepare_init(&flush_watcher_, OnPrepare);
  ev_prepare_start(loop_, &flush_watcher_);
  ev_unref(loop_);

  ev_async_init(&stop_async_, OnStopRequest);
  ev_async_start(loop_, &stop_async_);
  ev_unref(loop_);

  ev_timer_init(&drain_timer_, OnDrainTimeout, 0, 0);
  ev_timer_init(&accept_retry_, OnAcceptRetry, 0, 0);
  ev_io_init(&handoff_out_, OnHandoffReply, -1, EV_READ);
  ev_io_init(&handoff_in_, OnHandoffIncoming, -1, EV_READ);
  ev_io_init(&handoff_writable_, OnHandoffWritable, -1, EV_WRITE);
  ev_io_init(&answers_writable_, OnAnswersWritable, -1, EV_WRITE);
  ev_timer_init(&ticker_, OnTick, 0, 0);
  if (handlers_.on_tick) {
    ev_timer_set(&ticker_, options_.tick_interval.count() / 1000.0, 0);
    ev_timer_start(loop_, &ticker_);
  }
  if (options_.handle_signals) {
    ev_signal_init(&sigint_, OnSignal, SIGINT);
    ev_signal_init(&sigterm_, OnSignal, SIGTERM);
    ev_signal_start(loop_, &sigint_);
    ev_signal_start(loop_, &sigterm_);
    ev_unref(loop_);
    ev_unref(loop_);
  }
}

EventLoop::~EventLoop() {
  Shutdown();
  ev_ref(loop_);
  ev_prepare_stop(loop_, &flush_watcher_);
  for (ev_io* w : listeners_) delete w;
  ev_io_stop(loop_, &handoff_writable_);
  ev_io_stop(loop_, &answers_writable_);
  if (handoff_out_.fd >= 0) close(handoff_out_.fd);
  if (handoff_in_.fd >= 0) close(handoff_in_.fd);
  ev_loop_destroy(loop_);
}

void EventLoop::set_options(const Options& options) {
  options_ = options;
  resp::ParserLimits limits;
  limits.max_bulk_len = options_.max_bulk_len;
  for (Connection* c = head_; c != nullptr; c = c->next) c->parser.set_limits(limits);
}

void EventLoop::AddListener(int fd) {
  auto* w = new ev_io;
  ev_io_init(w, OnAccept, fd, EV_READ);
  w->data = this;
  listeners_.push_back(w);
  if (!draining_ && !accept_paused_) ev_io_start(loop_, w);
}

int EventLoop::Run() {
  if (handlers_.on_start) handlers_.on_start(*this);
  ev_run(loop_, 0);
  Shutdown();
  return 0;
}

void EventLoop::Stop() { ev_async_send(loop_, &stop_async_); }

ServerStats EventLoop::stats() const {
  ServerStats s = stats_;
  s.blocked_reading = 0;
  for (Connection* c = head_; c != nullptr; c = c->next) s.blocked_reading += c->paused;
  return s;
}

size_t EventLoop::client_buffer_bytes() const {
  size_t n = 0;
  for (Connection* c = head_; c != nullptr; c = c->next) n += c->buffer_bytes();
  return n;
}

double EventLoop::now() const { return ev_now(loop_); }

ClientInfo EventLoop::Describe(const Conn& conn) const {
  // Every Conn this loop hands to a handler is one of its Connections.
  const auto& c = static_cast<const Connection&>(conn);
  ClientInfo info;
  info.conn = &c;
  info.query_buffer = c.in.size();
  info.query_buffer_free = c.in.capacity() - c.in.size();
  info.output_pending = c.pending_output();
  info.memory = c.buffer_bytes() + sizeof(Connection);
  return info;
}

void EventLoop::ForEachClient(const std::function<void(const ClientInfo&)>& fn) const {
  for (Connection* c = head_; c != nullptr; c = c->next) fn(Describe(*c));
}

void EventLoop::OnAccept(struct ev_loop*, ev_io* w, int) {
  static_cast<EventLoop*>(w->data)->Accept(w->fd);
}

void EventLoop::Accept(int listen_fd) {
  for (int i = 0; i < kMaxAcceptsPerEvent; i++) {
    sockaddr_storage addr;
    socklen_t addrlen = sizeof(addr);
    int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &addrlen,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      // The pending connection failed before we took it (accept(2) says to
      // treat these network errors like EAGAIN): the next one may be fine.
      if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == ENETDOWN ||
          err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH ||
          err == EOPNOTSUPP || err == ENETUNREACH || err == EPERM) {
        continue;
      }
      // EMFILE, ENFILE, ENOBUFS, ENOMEM (or worse): the connection stays
      // queued, and the listener stays readable, so retrying at the next
      // event would spin (and log) as fast as the loop turns.
      PauseAccepting(listen_fd, err);
      return;
    }
    accept_backoff_ = 0;
    stats_.connections_received++;
    if (!Admit()) {
      // Redis's wording, then close; the write is best effort on a socket
      // whose buffer is empty. Lingering keeps the client's request (sent
      // before we accepted) from turning the close into a reset that would
      // throw the error away.
      ssize_t ignored = send(fd, kMaxClientsError, sizeof(kMaxClientsError) - 1, MSG_NOSIGNAL);
      (void)ignored;
      stats_.rejected_connections++;
      PublishClients();
      Linger(fd);
      continue;
    }
    SetupSocket(fd);
    Connection* c = Register(fd, ++next_id_);
    Action action = Action::kNone;
    if (handlers_.on_open) {
      c->in_handler = true;
      action = handlers_.on_open(*c, c->writer);
      c->in_handler = false;
    }
    if (action == Action::kShutdown) {
      Flush(c);
      Stop();
      return;
    }
    if (action == Action::kClose || c->close_requested_) c->close_after = true;
    if (c->pending_output() > 0 || c->close_after) Flush(c);
  }
}

bool EventLoop::Admit() {
  const uint64_t mine = stats_.connected_clients + 1;
  if (mine > options_.max_clients) return false;
  if (client_block_ == nullptr) return true;
  // Count this client in first, then read every worker's count: of two
  // workers admitting at once, at least one sees the other's store (the
  // fences order them), so both may refuse the last place but never both
  // take it. Register publishes the same count again.
  client_block_->Set(shm::slots::kConnectedClients, mine);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (client_area_->SumGauge(shm::slots::kConnectedClients) <= options_.max_clients) return true;
  client_block_->Set(shm::slots::kConnectedClients, mine - 1);
  return false;
}

void EventLoop::PublishClients() {
  // At every change, not only at the tick: other workers' Admit reads it.
  // The accept counters go along (own cache lines, three stores per accept
  // or close), so that INFO never shows a client counted as connected but
  // not yet as received.
  if (client_block_ != nullptr) {
    client_block_->Set(shm::slots::kConnectedClients, stats_.connected_clients);
    client_block_->Set(shm::slots::kConnectionsReceived, stats_.connections_received);
    client_block_->Set(shm::slots::kRejectedConnections, stats_.rejected_connections);
  }
}

void EventLoop::PauseAccepting(int listen_fd, int err) {
  stats_.accept_errors++;
  accept_backoff_ =
      accept_backoff_ == 0 ? kAcceptBackoffMin : std::min(accept_backoff_ * 2, kAcceptBackoffMax);
  double now = ev_now(loop_);
  if (now - accept_logged_at_ >= kAcceptLogInterval) {
    std::string limit;
    rlimit rl;
    if (err == EMFILE && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
      limit = " (open file limit " + std::to_string(rl.rlim_cur) + ")";
    }
    LOG_WARNING(
        "accept4(fd %d) failed: %s%s; accepting again in %.1f s (%llu more failures not logged)",
        listen_fd, ErrnoText(err).c_str(), limit.c_str(), accept_backoff_,
        static_cast<unsigned long long>(accept_errors_unlogged_));
    accept_logged_at_ = now;
    accept_errors_unlogged_ = 0;
  } else {
    accept_errors_unlogged_++;
  }
  // Every listener: they share this process's descriptor table.
  for (ev_io* w : listeners_) ev_io_stop(loop_, w);
  accept_paused_ = true;
  ev_timer_stop(loop_, &accept_retry_);
  ev_timer_set(&accept_retry_, accept_backoff_, 0);
  ev_timer_start(loop_, &accept_retry_);
}

void EventLoop::OnAcceptRetry(struct ev_loop* loop, ev_timer*, int) {
  static_cast<EventLoop*>(ev_userdata(loop))->ResumeAccepting();
}

void EventLoop::ResumeAccepting() {
  accept_paused_ = false;
  ev_timer_stop(loop_, &accept_retry_);
  if (draining_ || retiring_ || aborting_) return;
  // Level-triggered: a connection still queued makes the listener readable
  // at once; a failure pauses again, for twice as long.
  for (ev_io* w : listeners_) ev_io_start(loop_, w);
}

Connection* EventLoop::Register(int fd, uint64_t id) {
  auto* c = new Connection(this, fd, id);
  sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    c->remote_addr_ = FormatAddress(reinterpret_cast<sockaddr*>(&addr), len);
  }
  len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    c->local_addr_ = FormatAddress(reinterpret_cast<sockaddr*>(&addr), len);
  }
  ev_io_init(&c->read_watcher, OnReadable, fd, EV_READ);
  ev_io_init(&c->write_watcher, OnWritable, fd, EV_WRITE);
  c->read_watcher.data = c->write_watcher.data = c;
  c->next = head_;
  if (head_ != nullptr) head_->prev = c;
  head_ = c;
  stats_.connected_clients++;
  PublishClients();
  ev_io_start(loop_, &c->read_watcher);
  return c;
}

void EventLoop::QueueFlush(Connection* c) {
  if (c->flush_queued) return;
  c->flush_queued = true;
  c->flush_prev = nullptr;
  c->flush_next = flush_head_;
  if (flush_head_ != nullptr) flush_head_->flush_prev = c;
  flush_head_ = c;
}

void EventLoop::UnqueueFlush(Connection* c) {
  if (!c->flush_queued) return;
  c->flush_queued = false;
  if (c->flush_prev != nullptr) c->flush_prev->flush_next = c->flush_next;
  if (c->flush_next != nullptr) c->flush_next->flush_prev = c->flush_prev;
  if (flush_head_ == c) flush_head_ = c->flush_next;
  c->flush_prev = c->flush_next = nullptr;
}

void EventLoop::OnPrepare(struct ev_loop* loop, ev_prepare*, int) {
  auto* self = static_cast<EventLoop*>(ev_userdata(loop));
  // Flush can close the connection (and so unqueue it): take each one off
  // the list before flushing it.
  while (Connection* c = self->flush_head_) {
    self->UnqueueFlush(c);
    self->Flush(c);
  }
}

void EventLoop::Unlink(Connection* c) {
  UnqueueFlush(c);
  ev_io_stop(loop_, &c->read_watcher);
  ev_io_stop(loop_, &c->write_watcher);
  if (c->prev != nullptr) c->prev->next = c->next;
  if (c->next != nullptr) c->next->prev = c->prev;
  if (head_ == c) head_ = c->next;
  stats_.connected_clients--;
  PublishClients();
}

void EventLoop::SetupSocket(int fd) {
  int one = 1;
  sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  bool tcp = getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
             (addr.ss_family == AF_INET || addr.ss_family == AF_INET6);
  if (tcp) {
    if (options_.tcp_nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
      LOG_VERBOSE("setsockopt(TCP_NODELAY) failed: %s", ErrnoText(errno).c_str());
    }
    if (options_.tcp_keepalive.count() > 0) {
      int idle = static_cast<int>(options_.tcp_keepalive.count());
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
      // Redis's default: probe every third of the idle time.
      int interval = options_.tcp_keep_interval.count() > 0
                         ? static_cast<int>(options_.tcp_keep_interval.count())
                         : (idle / 3 > 0 ? idle / 3 : 1);
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
      int count = options_.tcp_keep_count > 0 ? options_.tcp_keep_count : 3;
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    }
  }
  if (options_.socket_recv_buffer > 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &options_.socket_recv_buffer,
                 sizeof(options_.socket_recv_buffer)) < 0) {
    LOG_VERBOSE("setsockopt(SO_RCVBUF, %d) failed: %s", options_.socket_recv_buffer,
                ErrnoText(errno).c_str());
  }
  if (options_.socket_send_buffer > 0 &&
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &options_.socket_send_buffer,
                 sizeof(options_.socket_send_buffer)) < 0) {
    LOG_VERBOSE("setsockopt(SO_SNDBUF, %d) failed: %s", options_.socket_send_buffer,
                ErrnoText(errno).c_str());
  }
}

void EventLoop::OnReadable(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<Connection*>(w->data);
  c->owner->Read(c);
}

void EventLoop::Read(Connection* c) {
  if (!c->in.Reserve(options_.read_buffer_cap)) {
    Close(c, "out of memory");
    return;
  }
  ssize_t n = recv(c->fd_, c->in.tail(), c->in.tail_room(), 0);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    Close(c, n == 0 ? "" : "read error", /*peer_gone=*/true);
    return;
  }
  c->in.Commit(n);
  stats_.net_input_bytes += n;
  // The loop's time is taken when epoll returns; a request can arrive after
  // that and before this recv. Handlers that judge time by ev_now() (the
  // store's expiry) need a time after their request was sent: refresh it
  // once per read, not once per command.
  ev_now_update(loop_);
  c->last_active_ = ev_now(loop_);
  if (!Process(c)) return;
  if (c->in.size() > options_.max_query_buffer) {
    LOG_WARNING("Closing client id=%llu addr=%s that reached max query buffer length (%zu bytes)",
                static_cast<unsigned long long>(c->id_), c->remote_addr_.c_str(), c->in.size());
    stats_.query_limit_disconnects++;
    Close(c, "query buffer limit");
    return;
  }
  if (c->pending_output() > 0 || c->close_after) {
    QueueFlush(c);
  } else if (retiring_) {
    MaybeHandOff(c);
  }
}

bool EventLoop::Process(Connection* c) {
  resp::Command cmd;
  size_t used;
  uint64_t ran = 0;
  batch_++;
  struct BatchEnd {
    const Handlers& h;
    ~BatchEnd() {
      if (h.on_batch_end) h.on_batch_end();
    }
  } batch_end{handlers_};
  // Only from a request boundary: in the middle of one, the bytes do not
  // start with a request.
  if (handlers_.on_batch_begin && c->parser.Pending() == 0 && c->in.size() > 0) {
    handlers_.on_batch_begin(std::string_view(c->in.data(), c->in.size()));
  }
  while (!c->close_after) {
    resp::ParseStatus st = c->parser.Parse(c->in.data(), c->in.size(), &cmd, &used);
    if (st == resp::ParseStatus::kNeedMore) break;
    if (st == resp::ParseStatus::kError) {
      // Redis replies with the error and closes: after a protocol error the
      // stream cannot be resynchronised.
      stats_.protocol_errors++;
      c->writer.Error(c->parser.Error());
      LOG_VERBOSE("Protocol error (%s) from client id=%llu addr=%s", c->parser.Error().c_str(),
                  static_cast<unsigned long long>(c->id_), c->remote_addr_.c_str());
      c->in.Consume(c->in.size());
      c->close_after = true;
      c->close_reason_ = "protocol error";
      break;
    }
    Action action = Action::kNone;
    if (handlers_.on_command) {
      c->in_handler = true;
      // The hard limit holds inside a command too (resp::Writer::set_limit).
      c->writer.set_limit(c->out_sent + options_.output_buffer_hard_limit);
      action = handlers_.on_command(*c, cmd, c->writer);
      c->in_handler = false;
    } else {
      c->writer.Error("ERR no command handler");
    }
    c->in.Consume(used);
    ran++;
    c->commands++;
    stats_.commands_processed++;
    if (action == Action::kShutdown) Stop();
    if (action != Action::kNone || c->close_requested_) {
      // Commands after QUIT in the same packet are not run.
      c->close_after = true;
      c->in.Consume(c->in.size());
      c->parser.Reset();
    }
    if (c->writer.overflowed() || c->pending_output() > options_.output_buffer_hard_limit) {
      LOG_WARNING(
          "Client id=%llu addr=%s closed for overcoming of output buffer limits (%zu bytes)",
          static_cast<unsigned long long>(c->id_), c->remote_addr_.c_str(), c->pending_output());
      stats_.output_limit_disconnects++;
      Close(c, "output buffer limit");
      return false;
    }
  }
  // Backpressure: while the client has not taken its replies, read no more
  // of its requests. What was already read has run; nothing more is read
  // until Flush() brings the output under the soft limit.
  if (!c->paused && c->pending_output() > options_.output_buffer_soft_limit) {
    c->paused = true;
    ev_io_stop(loop_, &c->read_watcher);
  }
  if (draining_ && (DrainedAt(c) || ran > 0)) {
    // The request in progress when the drain began has run: close here. The
    // partial request after it has not started, and waiting for it could
    // last forever with a client that never pauses between requests: drop
    // it. Its client gets no reply for it, so it knows it did not run.
    c->in.Consume(c->in.size());
    c->parser.Reset();
    CloseWhenFlushed(c, "server shutdown");
  }
  return true;
}

// Partial-request bytes a connection may carry to the successor.
static constexpr size_t kMaxHandoffBytes = 64 * 1024;
// Connections offered to the successor and not yet answered. The answers
// (small messages) must always fit in the channel's buffer, or the
// successor could not tell us it took a connection.
static constexpr size_t kMaxOffersInFlight = 64;

void EventLoop::OnHandoffWritable(struct ev_loop* loop, ev_io* w, int) {
  ev_io_stop(loop, w);
  static_cast<EventLoop*>(ev_userdata(loop))->HandOffAll();
}

void EventLoop::MaybeHandOff(Connection* c) {
  // Every complete request read has run (Process() runs them all unless
  // paused) and its reply is out; the bytes of a partial one travel along
  // (field 7), so a client that never pauses between requests moves too.
  // Up to kMaxHandoffBytes of them: the channel's messages are bounded
  // (channel.cc); a large request still arriving moves once it has run.
  if (!retiring_ || draining_ || c->handing_off || c->refused || c->close_after || c->paused ||
      c->pending_output() > 0 || c->in.size() > kMaxHandoffBytes || handoff_out_.fd < 0 ||
      offers_in_flight_ >= kMaxOffersInFlight) {
    return;
  }
  FieldWriter f;
  f.PutU64(0, 1);  // format version
  f.PutU64(1, c->id_);
  f.PutU64(2, static_cast<uint64_t>(c->protocol_));
  f.Put(3, c->name_);
  f.PutU64(4, static_cast<uint64_t>(ev_now(loop_) - c->created_at_));
  f.PutU64(5, c->commands);
  f.PutU64(6, 0);                                          // selected db
  f.Put(7, std::string_view(c->in.data(), c->in.size()));  // unparsed bytes
  f.PutU64(8, c->session_flags_);                          // the command layer's state (MULTI)
  int err = SendMessage(handoff_out_.fd, MessageType::kConnection, f.data(), c->fd_);
  if (err == EAGAIN) {
    // The successor is busy: offer again once the channel has room.
    if (!ev_is_active(&handoff_writable_)) {
      ev_io_set(&handoff_writable_, handoff_out_.fd, EV_WRITE);
      ev_io_start(loop_, &handoff_writable_);
    }
    return;
  }
  if (err == EMSGSIZE) return;  // this one is too big to go now; the others still can
  if (err != 0) {
    LOG_WARNING("sendmsg(handoff, client id=%llu) failed: %s; serving it until the drain timeout",
                static_cast<unsigned long long>(c->id_), ErrnoText(err).c_str());
    ev_io_stop(loop_, &handoff_out_);
    ev_io_stop(loop_, &handoff_writable_);
    close(handoff_out_.fd);
    handoff_out_.fd = -1;
    return;
  }
  offers_in_flight_++;
  // The kernel holds a reference to the socket now; stop touching it until
  // the successor answers. Bytes the client sends meanwhile wait in the
  // socket for whoever serves it next.
  c->handing_off = true;
  ev_io_stop(loop_, &c->read_watcher);
  ev_io_stop(loop_, &c->write_watcher);
}

void EventLoop::HandOffAll() {
  for (Connection* c = head_; c != nullptr;) {
    Connection* next = c->next;
    MaybeHandOff(c);
    c = next;
  }
}

void EventLoop::ResumeServing(Connection* c) {
  c->handing_off = false;
  if (!c->paused) ev_io_start(loop_, &c->read_watcher);
  if (c->pending_output() > 0) ev_io_start(loop_, &c->write_watcher);
}

void EventLoop::StopAccepting() {
  for (ev_io* w : listeners_) ev_io_stop(loop_, w);
  accept_paused_ = false;
  ev_timer_stop(loop_, &accept_retry_);
}

void EventLoop::Retire(int handoff_fd) {
  if (retiring_ || draining_) {
    close(handoff_fd);
    return;
  }
  retiring_ = true;
  StopAccepting();
  if (ev_is_active(&ticker_)) ev_timer_stop(loop_, &ticker_);
  ev_io_init(&handoff_out_, OnHandoffReply, handoff_fd, EV_READ);
  ev_io_start(loop_, &handoff_out_);
  HandOffAll();
  CheckRetired();
  ev_timer_set(&drain_timer_, drain_timeout_, 0);
  ev_timer_start(loop_, &drain_timer_);
}

void EventLoop::CheckRetired() {
  // A worker retired soon after it started may still be adopting its
  // predecessor's connections (and passing them on): it stays until that
  // channel closes, or they would be refused and closed at the drain timeout.
  if (retiring_ && Empty() && handoff_in_.fd < 0) ev_break(loop_, EVBREAK_ALL);
}

void EventLoop::OnHandoffReply(struct ev_loop* loop, ev_io* w, int) {
  auto* self = static_cast<EventLoop*>(ev_userdata(loop));
  while (true) {
    Message m;
    int err = ReceiveMessage(w->fd, &m);
    if (err == EAGAIN) {
      // Each answer frees a place for another offer.
      if (self->retiring_ && !self->draining_) self->HandOffAll();
      return;
    }
    if (err != 0) {
      // The successor is gone: whatever it had not adopted is ours again.
      LOG_WARNING("Handoff channel closed (%s); serving remaining clients until the drain timeout",
                  err < 0 ? "end of stream" : ErrnoText(err).c_str());
      ev_io_stop(loop, w);
      ev_io_stop(loop, &self->handoff_writable_);
      close(w->fd);
      w->fd = -1;
      self->offers_in_flight_ = 0;
      for (Connection* c = self->head_; c != nullptr; c = c->next) {
        if (c->handing_off) self->ResumeServing(c);
      }
      return;
    }
    if (m.fd >= 0) close(m.fd);
    if (self->offers_in_flight_ > 0) self->offers_in_flight_--;
    uint64_t id = FieldReader::U64(m.payload);
    Connection* c = self->head_;
    while (c != nullptr && !(c->handing_off && c->id_ == id)) c = c->next;
    if (c == nullptr) continue;
    if (m.type == MessageType::kAdopted) {
      // The successor has its own descriptor for the socket: closing ours
      // does not close the connection.
      self->Unlink(c);
      close(c->fd_);
      delete c;
      self->FdFreed();
      self->MaybeFinish();
    } else {
      LOG_WARNING("Successor refused client id=%llu; serving it until the drain timeout",
                  static_cast<unsigned long long>(id));
      // Offered again it would be refused again, at once: every answer
      // triggers more offers.
      c->refused = true;
      self->ResumeServing(c);
    }
  }
}

int EventLoop::Answer(MessageType type, uint64_t id) {
  queued_answers_.emplace_back(type, id);
  return SendAnswers();
}

int EventLoop::SendAnswers() {
  while (!queued_answers_.empty()) {
    auto [type, id] = queued_answers_.front();
    char answer[8];
    for (int i = 0; i < 8; i++) answer[i] = static_cast<char>(id >> (8 * i));
    int err = SendMessage(handoff_in_.fd, type, std::string_view(answer, 8));
    if (err == EAGAIN) {
      // A full channel is no reason to drop an answer: the predecessor
      // keeps the connection untouched until it comes.
      if (!ev_is_active(&answers_writable_)) {
        ev_io_set(&answers_writable_, handoff_in_.fd, EV_WRITE);
        ev_io_start(loop_, &answers_writable_);
      }
      return 0;
    }
    if (err != 0) {
      queued_answers_.clear();
      ev_io_stop(loop_, &answers_writable_);
      return err;
    }
    queued_answers_.pop_front();
  }
  ev_io_stop(loop_, &answers_writable_);
  return 0;
}

void EventLoop::OnAnswersWritable(struct ev_loop* loop, ev_io*, int) {
  int err = static_cast<EventLoop*>(ev_userdata(loop))->SendAnswers();
  if (err != 0) LOG_WARNING("sendmsg(handoff answer) failed: %s", ErrnoText(err).c_str());
}

void EventLoop::AdoptFrom(int handoff_fd) {
  ev_io_init(&handoff_in_, OnHandoffIncoming, handoff_fd, EV_READ);
  ev_io_start(loop_, &handoff_in_);
  ev_unref(loop_);  // an open handoff channel alone does not keep Run() going
}

void EventLoop::OnHandoffIncoming(struct ev_loop* loop, ev_io* w, int) {
  auto* self = static_cast<EventLoop*>(ev_userdata(loop));
  while (true) {
    Message m;
    int err = ReceiveMessage(w->fd, &m);
    if (err == EAGAIN) return;
    if (err != 0) {
      // The predecessor finished (or died): nothing more will arrive.
      ev_ref(loop);
      ev_io_stop(loop, w);
      ev_io_stop(loop, &self->answers_writable_);
      self->queued_answers_.clear();
      close(w->fd);
      w->fd = -1;
      self->CheckRetired();
      return;
    }
    if (m.type != MessageType::kConnection || m.fd < 0) {
      if (m.fd >= 0) close(m.fd);
      continue;
    }
    FieldReader r(m.payload);
    uint16_t tag;
    std::string_view v;
    uint64_t id = 0, version = 0, protocol = 2, age = 0, commands = 0, session_flags = 0;
    std::string name;
    std::string_view unparsed;
    while (r.Next(&tag, &v)) {
      switch (tag) {
        case 0:
          version = FieldReader::U64(v);
          break;
        case 1:
          id = FieldReader::U64(v);
          break;
        case 2:
          protocol = FieldReader::U64(v);
          break;
        case 3:
          name = std::string(v);
          break;
        case 4:
          age = FieldReader::U64(v);
          break;
        case 5:
          commands = FieldReader::U64(v);
          break;
        case 7:
          unparsed = v;
          break;
        case 8:
          session_flags = FieldReader::U64(v);
          break;
        default:
          break;  // a field from a newer binary
      }
    }
    // A retiring worker still adopts: it passes the connection on to its own
    // successor below, where refusing would leave it with the predecessor
    // until the drain timeout closes it.
    if (!r.ok() || version == 0 || self->draining_) {
      close(m.fd);
      self->Answer(MessageType::kRefused, id);
      continue;
    }
    Connection* c = self->Register(m.fd, id);
    c->set_protocol(protocol == 3 ? 3 : 2);
    c->name_ = std::move(name);
    c->session_flags_ = static_cast<uint32_t>(session_flags);
    c->created_at_ = ev_now(loop) - static_cast<double>(age);
    c->commands = commands;
    if (!unparsed.empty() && !c->in.Reserve(unparsed.size())) {
      // Out of memory. Without the start of its partial request the
      // client's next bytes would be misread: refuse, the predecessor keeps
      // serving it.
      self->Unlink(c);
      close(c->fd_);
      delete c;
      self->Answer(MessageType::kRefused, id);
      continue;
    }
    if (!unparsed.empty()) {
      memcpy(c->in.tail(), unparsed.data(), unparsed.size());
      c->in.Commit(unparsed.size());
    }
    self->stats_.connections_adopted++;
    int sent = self->Answer(MessageType::kAdopted, id);
    if (sent != 0) {
      // The predecessor cannot learn that we took it; it will keep serving
      // its copy, so we must not serve ours.
      LOG_WARNING("sendmsg(handoff answer) failed: %s", ErrnoText(sent).c_str());
      self->Unlink(c);
      close(c->fd_);
      delete c;
      continue;
    }
    if (c->in.size() > 0 &&
        (!self->Process(c) || ((c->pending_output() > 0 || c->close_after) && !self->Flush(c)))) {
      continue;  // closed
    }
    if (self->retiring_) self->MaybeHandOff(c);
  }
}

bool EventLoop::Flush(Connection* c) {
  while (c->pending_output() > 0) {
    ssize_t n = send(c->fd_, c->out.data() + c->out_sent, c->pending_output(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      Close(c, "write error", /*peer_gone=*/true);
      return false;
    }
    c->out_sent += n;
    stats_.net_output_bytes += n;
  }
  if (c->pending_output() > 0) {
    if (!ev_is_active(&c->write_watcher)) ev_io_start(loop_, &c->write_watcher);
    return true;
  }
  c->out.clear();
  c->out_sent = 0;
  if (ev_is_active(&c->write_watcher)) ev_io_stop(loop_, &c->write_watcher);
  if (c->close_after) {
    Close(c, c->close_reason_);
    return false;
  }
  if (c->out.capacity() > kIdleBufferKeep) std::string().swap(c->out);
  if (c->paused) {
    // Replies drained: run what was read meanwhile, then read again.
    c->paused = false;
    ev_io_start(loop_, &c->read_watcher);
    if (c->in.size() > 0) {
      if (!Process(c)) return false;
      if (c->pending_output() > 0 || c->close_after) return Flush(c);
    }
  }
  if (retiring_) MaybeHandOff(c);
  return true;
}

void EventLoop::OnWritable(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<Connection*>(w->data);
  c->owner->Flush(c);
}

void EventLoop::Close(Connection* c, std::string_view reason, bool peer_gone) {
  if (handlers_.on_close) {
    Action action = handlers_.on_close(*c, reason);
    if (action == Action::kShutdown) Stop();
  }
  // Redis logs every closed client at verbose level; the command count says
  // what the connection ran, which a client can compare with its replies.
  std::string_view why = reason.empty() ? "closed or quit by the client" : reason;
  LOG_VERBOSE("Closed client id=%llu addr=%s after %llu commands (%.*s)",
              static_cast<unsigned long long>(c->id_), c->remote_addr_.c_str(),
              static_cast<unsigned long long>(c->commands), static_cast<int>(why.size()),
              why.data());
  Unlink(c);
  // Nothing more will come from a client that closed its side or whose
  // socket failed, so nothing can make the kernel reset it.
  if (peer_gone || aborting_) {
    if (close(c->fd_) < 0) LOG_VERBOSE("close(%d) failed: %s", c->fd_, ErrnoText(errno).c_str());
    FdFreed();
  } else if (Linger(c->fd_)) {
    FdFreed();
  }
  delete c;
  MaybeFinish();
}

void EventLoop::MaybeFinish() {
  if (draining_ && Empty()) {
    ev_break(loop_, EVBREAK_ALL);
  } else {
    CheckRetired();
  }
}

// A closed connection's socket, kept open until the client has read the
// replies: see Linger().
struct EventLoop::Lingering {
  ev_io io;
  ev_timer timer;   // checks whether the client has everything
  double deadline;  // ev_now() after which it is closed anyway
  Lingering* prev = nullptr;
  Lingering* next = nullptr;
};

// nginx's lingering_timeout: how long a client gets to take its replies
// after the server closed its side.
static constexpr double kLingerSeconds = 5;
// How often a lingering socket is asked whether the client has acknowledged
// everything (there is no event for that): first after 10 ms, when a client
// that reads has usually acknowledged the FIN, then less and less often, so
// that many sockets closed at once (a drain) cost few system calls.
static constexpr double kLingerFirstCheck = 0.01;
static constexpr double kLingerLastCheck = 0.5;

// Everything sent has been acknowledged: a reset can no longer lose a reply.
static bool AllAcknowledged(int fd) {
  int unacked = 0;
  return ioctl(fd, SIOCOUTQ, &unacked) != 0 || unacked == 0;
}

bool EventLoop::Linger(int fd) {
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
  auto* l = new Lingering;
  ev_io_init(&l->io, OnLingerReadable, fd, EV_READ);
  l->io.data = l;
  ev_timer_init(&l->timer, OnLingerTimeout, kLingerFirstCheck, kLingerFirstCheck);
  l->timer.data = l;
  l->deadline = ev_now(loop_) + kLingerSeconds;
  l->next = lingering_;
  if (lingering_ != nullptr) lingering_->prev = l;
  lingering_ = l;
  ev_io_start(loop_, &l->io);
  ev_timer_start(loop_, &l->timer);
  return false;
}

void EventLoop::OnLingerReadable(struct ev_loop* loop, ev_io* w, int) {
  auto* self = static_cast<EventLoop*>(ev_userdata(loop));
  auto* l = static_cast<Lingering*>(w->data);
  static char discard[16384];
  // A bounded number of reads per wakeup: a client that keeps sending must
  // not starve the other connections; the timeout ends it.
  for (int i = 0; i < 16; i++) {
    ssize_t n = recv(w->fd, discard, sizeof(discard), 0);
    if (n > 0) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (AllAcknowledged(w->fd)) self->EndLinger(l);
      return;
    }
    if (n < 0 && errno == EINTR) continue;
    self->EndLinger(l);  // closed by the client (or reset)
    return;
  }
}

void EventLoop::OnLingerTimeout(struct ev_loop* loop, ev_timer* w, int) {
  auto* l = static_cast<Lingering*>(w->data);
  if (AllAcknowledged(l->io.fd) || ev_now(loop) >= l->deadline) {
    static_cast<EventLoop*>(ev_userdata(loop))->EndLinger(l);
    return;
  }
  w->repeat = std::min(w->repeat * 2, kLingerLastCheck);
  ev_timer_again(loop, w);
}

void EventLoop::EndLinger(Lingering* l) {
  ev_io_stop(loop_, &l->io);
  ev_timer_stop(loop_, &l->timer);
  if (close(l->io.fd) < 0) LOG_VERBOSE("close(%d) failed: %s", l->io.fd, ErrnoText(errno).c_str());
  if (l->prev != nullptr) l->prev->next = l->next;
  if (l->next != nullptr) l->next->prev = l->prev;
  if (lingering_ == l) lingering_ = l->next;
  delete l;
  FdFreed();
  if (!aborting_) MaybeFinish();
}

void EventLoop::OnCron(struct ev_loop* loop, ev_timer* w, int) {
  auto* self = static_cast<EventLoop*>(ev_userdata(loop));
  double now = ev_now(loop);
  double idle_limit = static_cast<double>(self->options_.idle_timeout.count());
  if (self->retiring_) self->HandOffAll();
  for (Connection* c = self->head_; c != nullptr;) {
    Connection* next = c->next;
    if (c->handing_off) {
      c = next;
      continue;
    }
    if (idle_limit > 0 && !c->paused && c->pending_output() == 0 &&
        now - c->last_active_ > idle_limit) {
      self->stats_.idle_disconnects++;
      LOG_VERBOSE("Closing idle client id=%llu", static_cast<unsigned long long>(c->id_));
      self->Close(c, "idle timeout");
    } else {
      c->in.ShrinkIfIdle(kIdleBufferKeep);
    }
    c = next;
  }
}

void EventLoop::OnTick(struct ev_loop* loop, ev_timer* w, int) {
  auto* self = static_cast<EventLoop*>(ev_userdata(loop));
  Tick t = self->handlers_.on_tick();
  if (t.action == Action::kShutdown) self->Stop();
  if (t.delay.count() > 0) {
    ev_timer_set(w, t.delay.count() / 1000.0, 0);
    ev_timer_start(loop, w);
  }
}

void EventLoop::OnStopRequest(struct ev_loop* loop, ev_async*, int) {
  static_cast<EventLoop*>(ev_userdata(loop))->StartDraining();
}

void EventLoop::OnSignal(struct ev_loop* loop, ev_signal* w, int) {
  LOG_NOTICE("Received %s, shutting down gracefully", strsignal(w->signum));
  static_cast<EventLoop*>(ev_userdata(loop))->StartDraining();
}

void EventLoop::CloseWhenFlushed(Connection* c, std::string_view reason) {
  c->close_after = true;
  if (c->close_reason_.empty()) c->close_reason_ = reason;
}

bool EventLoop::DrainedAt(Connection* c) const {
  // A request boundary: nothing read that is not yet answered.
  return c->in.size() == 0 && c->parser.Pending() == 0;
}

void EventLoop::StartDraining() {
  if (draining_) return;
  draining_ = true;
  // A connection offered to the successor stays as it is until the answer
  // comes (the successor answers even while it drains): if it was adopted,
  // the successor may already be serving the socket, and serving it here
  // too, or shutting it down, would break it. Refused, it is served here
  // and closed by the drain. No answer by the drain timeout: closed.
  StopAccepting();
  if (ev_is_active(&ticker_)) ev_timer_stop(loop_, &ticker_);
  for (Connection* c = head_; c != nullptr;) {
    Connection* next = c->next;
    if (DrainedAt(c)) {
      CloseWhenFlushed(c, "server shutdown");
      Flush(c);  // closes it once its replies are out
    }
    c = next;
  }
  if (Empty()) {
    ev_break(loop_, EVBREAK_ALL);
    return;
  }
  if (ev_is_active(&drain_timer_)) ev_timer_stop(loop_, &drain_timer_);
  ev_timer_set(&drain_timer_, drain_timeout_, 0);
  ev_timer_start(loop_, &drain_timer_);
}

void EventLoop::OnDrainTimeout(struct ev_loop* loop, ev_timer*, int) {
  auto* self = static_cast<EventLoop*>(ev_userdata(loop));
  if (self->retiring_ && !self->draining_) {
    // Handoff took too long: close what is left as a drain does, with one
    // more drain period as the last word.
    LOG_WARNING("Handoff timeout: closing %llu remaining connections after their requests",
                static_cast<unsigned long long>(self->stats_.connected_clients));
    self->retiring_ = false;
    self->StartDraining();
    return;
  }
  LOG_WARNING("Drain timeout: closing %llu remaining connections",
              static_cast<unsigned long long>(self->stats_.connected_clients));
  ev_break(loop, EVBREAK_ALL);
}

void EventLoop::Shutdown() {
  aborting_ = true;
  ev_timer_stop(loop_, &accept_retry_);
  while (head_ != nullptr) Close(head_, "server shutdown");
  while (lingering_ != nullptr) EndLinger(lingering_);
  if (ev_is_active(&drain_timer_)) ev_timer_stop(loop_, &drain_timer_);
}

}  // namespace redhub::worker
