// The request path of the event loop: accepting (with maxclients and the
// pause on EMFILE), reading, Process (parse -> handler -> Writer), sending
// with backpressure, the output and query limits, the idle timeout, the
// drain on Stop, and the deferred close queue every close goes through.
// Handing connections to a successor is in handoff.cc, lingering close in
// linger.cc, the per-connection record in connection.h.
#include "event_loop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
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

// A listening socket's watcher and what its connections speak.
struct EventLoop::Listener {
  ev_io io;  // first: listeners_ holds &io, OnAccept gets it back
  SSL_CTX* tls = nullptr;
};

struct ev_loop* EventLoop::NewLoop() {
  // A loop of its own, never libev's default loop: the default loop takes
  // over SIGCHLD, which belongs to the master.
  struct ev_loop* loop = ev_loop_new(static_cast<unsigned>(EVBACKEND_EPOLL) | EVFLAG_NOENV);
  if (loop == nullptr) loop = ev_loop_new(EVFLAG_AUTO);
  return loop;
}

EventLoop::EventLoop(const Options& options, Handlers handlers)
    : options_(options),
      handlers_(std::move(handlers)),
      loop_(NewLoop()),
      lingerer_(loop_, [this] { LingerEnded(); }) {
  ev_set_userdata(loop_, this);

  ev_timer_init(&cron_, OnCron, 1.0, 1.0);
  ev_timer_start(loop_, &cron_);
  ev_unref(loop_);  // housekeeping alone does not keep the loop alive

  // Replies are sent just before the loop waits for events again, as
  // Redis's beforeSleep does: all the connections that became readable
  // together are served first, then answered in one burst, so a client
  // with many connections (redis-benchmark, a pool) wakes once for many
  // replies instead of once per reply. The close queue is emptied there too.
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
  ev_idle_init(&tls_idle_, OnTlsIdle);
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
  ev_idle_stop(loop_, &tls_idle_);
  for (ev_io* w : listeners_) {
    auto* l = reinterpret_cast<Listener*>(w);
    if (l->tls != nullptr) SSL_CTX_free(l->tls);
    delete l;
  }
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

void EventLoop::AddListener(int fd, SSL_CTX* tls) {
  auto* l = new Listener;
  if (tls != nullptr) SSL_CTX_up_ref(tls);
  l->tls = tls;
  ev_io* w = &l->io;
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
  static_cast<EventLoop*>(w->data)->Accept(w->fd, reinterpret_cast<Listener*>(w)->tls);
}

void EventLoop::Accept(int listen_fd, SSL_CTX* tls) {
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
      // throw the error away. A TLS client gets no error, as from Redis:
      // it cannot read plaintext, and no handshake has happened.
      if (tls == nullptr) {
        ssize_t ignored = send(fd, kMaxClientsError, sizeof(kMaxClientsError) - 1, MSG_NOSIGNAL);
        (void)ignored;
      }
      stats_.rejected_connections++;
      PublishClients();
      lingerer_.Close(fd);
      continue;
    }
    ConfigureSocket(fd, options_);
    Connection* c = Register(fd, ++next_id_);
    if (tls != nullptr) {
      if (std::string e = c->transport.StartTls(tls, fd); !e.empty()) {
        LOG_WARNING("Cannot start TLS for client id=%llu addr=%s: %s",
                    static_cast<unsigned long long>(c->id_), c->remote_addr_.c_str(), e.c_str());
        stats_.tls_handshake_failures++;
        Close(c, "TLS error", CloseKind::kPeerGone);
        continue;
      }
      // Opened once the handshake is done; the ClientHello may be here already.
      ContinueHandshake(c);
      continue;
    }
    if (!Open(c)) return;
  }
}

bool EventLoop::Open(Connection* c) {
  Action action = Action::kNone;
  if (handlers_.on_open) {
    c->in_handler = true;
    action = handlers_.on_open(*c, c->writer);
    c->in_handler = false;
  }
  if (action == Action::kShutdown) {
    Flush(c);
    Stop();
    return false;
  }
  if (action == Action::kClose || c->close_requested_) c->close_after = true;
  if (c->pending_output() > 0 || c->close_after) Flush(c);
  return true;
}

void EventLoop::ContinueHandshake(Connection* c) {
  ssize_t r = c->transport.Handshake();
  // Wait on the one direction OpenSSL names: the other would be ready at
  // once and spin the loop.
  if (r == kIoWantRead || r == kIoWantWrite) {
    ev_io* wait = r == kIoWantRead ? &c->read_watcher : &c->write_watcher;
    ev_io* other = r == kIoWantRead ? &c->write_watcher : &c->read_watcher;
    if (ev_is_active(other)) ev_io_stop(loop_, other);
    if (!ev_is_active(wait)) ev_io_start(loop_, wait);
    return;
  }
  if (r == kIoError) {
    stats_.tls_handshake_failures++;
    LOG_VERBOSE("TLS handshake failed for client id=%llu addr=%s: %s",
                static_cast<unsigned long long>(c->id_), c->remote_addr_.c_str(),
                c->transport.error().c_str());
    Close(c, "TLS handshake failed", CloseKind::kPeerGone);
    return;
  }
  if (ev_is_active(&c->write_watcher)) ev_io_stop(loop_, &c->write_watcher);
  if (!ev_is_active(&c->read_watcher)) ev_io_start(loop_, &c->read_watcher);
  stats_.tls_connected_clients++;
  ev_now_update(loop_);
  c->last_active_ = ev_now(loop_);
  LOG_DEBUG("TLS client id=%llu addr=%s: %s", static_cast<unsigned long long>(c->id_),
            c->remote_addr_.c_str(), c->transport.Describe().c_str());
  if (!Open(c) || c->closed()) return;
  // The first request may have come with the handshake's last flight, read
  // ahead into OpenSSL: the socket will not announce it again.
  if (c->transport.HasPending()) Read(c);
}

void EventLoop::NoteTlsPending(Connection* c) {
  if (c->tls_pending || c->closed() || !c->transport.HasPending()) return;
  c->tls_pending = true;
  tls_pending_.push_back(c);
}

void EventLoop::ReadTlsPending() {
  std::vector<Connection*> ready;
  ready.swap(tls_pending_);
  for (Connection* c : ready) c->tls_pending = false;
  // A closed one is still allocated until DrainCloseQueue, after this; a
  // paused one is noted again when backpressure lets go (Flush).
  for (Connection* c : ready) {
    if (!c->closed() && !c->paused && !c->handing_off) Read(c);
  }
}

void EventLoop::OnTlsIdle(struct ev_loop*, ev_idle*, int) {
  // Nothing: being active is the point (the loop polls without blocking),
  // and OnPrepare reads the pending connections.
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
  if (c->flush_queued || c->closed()) return;
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
  // First, so that their replies go out in this turn's burst.
  if (!self->tls_pending_.empty()) self->ReadTlsPending();
  // Take each one off the list before flushing it: Flush can run more of
  // its commands (after backpressure), which may queue it again.
  while (Connection* c = self->flush_head_) {
    self->UnqueueFlush(c);
    self->Flush(c);
  }
  // Last before sleeping: every close of this turn, the flushes' included.
  self->DrainCloseQueue();
  // Bytes inside OpenSSL that epoll will never announce: poll without
  // blocking until they are read (Redis's tlsProcessPendingData).
  if (!self->tls_pending_.empty()) {
    if (!ev_is_active(&self->tls_idle_)) ev_idle_start(loop, &self->tls_idle_);
  } else if (ev_is_active(&self->tls_idle_)) {
    ev_idle_stop(loop, &self->tls_idle_);
  }
}

void EventLoop::Unlink(Connection* c) {
  UnqueueFlush(c);
  if (c->tls_pending) {
    c->tls_pending = false;
    tls_pending_.erase(std::find(tls_pending_.begin(), tls_pending_.end(), c));
  }
  if (c->transport.tls() && !c->transport.handshaking()) stats_.tls_connected_clients--;
  ev_io_stop(loop_, &c->read_watcher);
  ev_io_stop(loop_, &c->write_watcher);
  if (c->prev != nullptr) c->prev->next = c->next;
  if (c->next != nullptr) c->next->prev = c->prev;
  if (head_ == c) head_ = c->next;
  stats_.connected_clients--;
  PublishClients();
}

void EventLoop::OnReadable(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<Connection*>(w->data);
  if (c->transport.tls()) [[unlikely]] {
    c->owner->TlsReadable(c);
    return;
  }
  c->owner->Read(c);
}

void EventLoop::TlsReadable(Connection* c) {
  if (c->transport.handshaking()) {
    ContinueHandshake(c);
    return;
  }
  if (c->write_wants_read) {
    // A write was waiting for this. Backpressure may have paused reading:
    // the watcher ran for the write alone then.
    c->write_wants_read = false;
    if (c->paused) ev_io_stop(loop_, &c->read_watcher);
    Flush(c);
    if (c->closed() || c->paused) return;
  }
  Read(c);
}

void EventLoop::Read(Connection* c) {
  if (c->closed()) return;
  if (!c->in.Reserve(options_.read_buffer_cap)) {
    Close(c, "out of memory");
    return;
  }
  ssize_t n = c->transport.Read(c->fd_, c->in.tail(), c->in.tail_room());
  if (n <= 0) {
    if (n == kIoWantRead) return;
    if (n == kIoWantWrite) {
      // TLS: the read must send first (the socket is full): retry it once
      // the socket is writable (OnWritable).
      c->read_wants_write = true;
      if (!ev_is_active(&c->write_watcher)) ev_io_start(loop_, &c->write_watcher);
      return;
    }
    const std::string& why = c->transport.error();
    Close(c, n == kIoClosed ? "" : why.empty() ? "read error" : why, CloseKind::kPeerGone);
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
  Process(c);
  if (c->closed()) return;  // by a limit inside Process
  if (c->in.size() > options_.max_query_buffer) {
    LOG_WARNING("Closing client id=%llu addr=%s that reached max query buffer length (%zu bytes)",
                static_cast<unsigned long long>(c->id_), c->remote_addr_.c_str(), c->in.size());
    stats_.query_limit_disconnects++;
    Close(c, "query buffer limit");
    return;
  }
  if (c->transport.tls()) NoteTlsPending(c);
  if (c->pending_output() > 0 || c->close_after) {
    QueueFlush(c);
  } else if (retiring_) {
    MaybeHandOff(c);
  }
}

void EventLoop::Process(Connection* c) {
  if (c->closed()) return;
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
      // Conn::Abort: what was not sent yet is dropped, not sent.
      if (c->abort_requested_) c->out.resize(c->out_sent);
    }
    if (c->writer.overflowed() || c->pending_output() > options_.output_buffer_hard_limit) {
      LOG_WARNING(
          "Client id=%llu addr=%s closed for overcoming of output buffer limits (%zu bytes)",
          static_cast<unsigned long long>(c->id_), c->remote_addr_.c_str(), c->pending_output());
      stats_.output_limit_disconnects++;
      Close(c, "output buffer limit");
      return;
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
}

void EventLoop::StopAccepting() {
  for (ev_io* w : listeners_) ev_io_stop(loop_, w);
  accept_paused_ = false;
  ev_timer_stop(loop_, &accept_retry_);
}

bool EventLoop::SendOutput(Connection* c) {
  while (c->pending_output() > 0) {
    ssize_t n = c->transport.Write(c->fd_, c->out.data() + c->out_sent, c->pending_output());
    if (n > 0) {
      c->out_sent += n;
      stats_.net_output_bytes += n;
      continue;
    }
    if (n == kIoWantWrite) break;
    if (n == kIoWantRead) {
      // TLS: the write must read first: retry it once the socket is
      // readable (TlsReadable), even while backpressure pauses reading.
      c->write_wants_read = true;
      if (!ev_is_active(&c->read_watcher)) ev_io_start(loop_, &c->read_watcher);
      return false;
    }
    const std::string& why = c->transport.error();
    Close(c, why.empty() ? "write error" : why, CloseKind::kPeerGone);
    return false;
  }
  if (c->pending_output() > 0) {
    // Backpressure, the socket's side: the kernel's buffer is full, so wait
    // for it to drain instead of holding the loop.
    if (!ev_is_active(&c->write_watcher)) ev_io_start(loop_, &c->write_watcher);
    return false;
  }
  c->out.clear();
  c->out_sent = 0;
  // Still wanted by a TLS read that waits for writability.
  if (ev_is_active(&c->write_watcher) && !c->read_wants_write) {
    ev_io_stop(loop_, &c->write_watcher);
  }
  return true;
}

void EventLoop::Flush(Connection* c) {
  // One turn per burst of replies: send them; if backpressure had paused
  // the connection, its output is now empty, so run what was read meanwhile
  // and send those replies in the next turn.
  while (!c->closed()) {
    if (!SendOutput(c)) return;  // the socket is full, or c is closed
    if (c->close_after) {
      Close(c, c->close_reason_);
      return;
    }
    if (c->out.capacity() > kIdleBufferKeep) std::string().swap(c->out);
    if (!c->paused) break;
    c->paused = false;
    ev_io_start(loop_, &c->read_watcher);
    // What OpenSSL read ahead before the pause has no event to come.
    if (c->transport.tls()) NoteTlsPending(c);
    if (c->in.size() == 0) break;
    Process(c);  // may pause it again, or close it
    if (c->pending_output() == 0 && !c->close_after) break;
  }
  if (retiring_) MaybeHandOff(c);  // nothing if c is closed
}

void EventLoop::OnWritable(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<Connection*>(w->data);
  EventLoop* self = c->owner;
  if (c->transport.tls()) [[unlikely]] {
    if (c->transport.handshaking()) {
      self->ContinueHandshake(c);
      return;
    }
    if (c->read_wants_write) {
      c->read_wants_write = false;
      if (c->pending_output() == 0) ev_io_stop(self->loop_, &c->write_watcher);
      self->Read(c);
      if (c->closed()) return;
    }
  }
  self->Flush(c);
}

void EventLoop::Close(Connection* c, std::string_view reason, CloseKind kind) {
  if (c->closed_) return;
  c->closed_ = true;
  c->close_kind_ = kind;
  c->close_reason_ = std::string(reason);  // reason may be close_reason_ itself
  // Off the list, the flush queue and the event set now: nothing reads from
  // it, runs its commands or offers it to a successor any more, and it no
  // longer counts against maxclients.
  Unlink(c);
  // Keeps Run() going until the queue is emptied (a loop with no other
  // active watcher would return before its next prepare).
  if (close_queue_.empty()) ev_ref(loop_);
  close_queue_.push_back(c);
}

void EventLoop::DrainCloseQueue() {
  if (close_queue_.empty()) return;
  // By index: a close queued while draining (none today: on_close cannot
  // close a connection) is drained in the same pass, and the queue stays
  // non-empty until the end, so Close takes no second reference.
  for (size_t i = 0; i < close_queue_.size(); i++) Free(close_queue_[i]);
  close_queue_.clear();
  ev_unref(loop_);
  MaybeFinish();
}

void EventLoop::Free(Connection* c) {
  if (c->close_kind_ == CloseKind::kMoved) {
    // Only our descriptor: the socket lives on in the other process.
    close(c->fd_);
    FdFreed();
    delete c;
    return;
  }
  const std::string& reason = c->close_reason_;
  // A TLS connection whose handshake never completed was never opened.
  if (handlers_.on_close && !c->transport.handshaking()) {
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
  // The server's close of a TLS session says so (close_notify), so the
  // client can tell it from a truncation.
  if (c->transport.tls() && c->close_kind_ != CloseKind::kPeerGone) c->transport.Shutdown();
  // Nothing more will come from a client that closed its side or whose
  // socket failed, so nothing can make the kernel reset it.
  if (c->close_kind_ == CloseKind::kPeerGone || aborting_) {
    if (close(c->fd_) < 0) LOG_VERBOSE("close(%d) failed: %s", c->fd_, ErrnoText(errno).c_str());
    FdFreed();
  } else if (lingerer_.Close(c->fd_)) {
    FdFreed();
  }
  delete c;
}

void EventLoop::LingerEnded() {
  FdFreed();
  if (!aborting_) MaybeFinish();
}

void EventLoop::MaybeFinish() {
  if (draining_ && Empty()) {
    ev_break(loop_, EVBREAK_ALL);
  } else {
    CheckRetired();
  }
}

void EventLoop::OnCron(struct ev_loop* loop, ev_timer* w, int) {
  auto* self = static_cast<EventLoop*>(ev_userdata(loop));
  double now = ev_now(loop);
  double idle_limit = static_cast<double>(self->options_.idle_timeout.count());
  if (self->retiring_) self->HandOffAll();
  for (Connection* c = self->head_; c != nullptr;) {
    Connection* next = c->next;
    if (c->handing_off) {  // untouched until the successor answers
      c = next;
      continue;
    }
    if (c->transport.handshaking()) {
      // A client that connects and never finishes (or never starts) the
      // handshake would hold a place under maxclients for ever.
      if (now - c->created_at_ > self->tls_handshake_timeout_) {
        self->stats_.tls_handshake_failures++;
        LOG_VERBOSE("TLS handshake of client id=%llu addr=%s not done after %.0f s; closing",
                    static_cast<unsigned long long>(c->id_), c->remote_addr_.c_str(),
                    now - c->created_at_);
        self->Close(c, "TLS handshake timeout", CloseKind::kPeerGone);
      }
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

void EventLoop::CloseRequested(Conn* conn) {
  auto* c = static_cast<Connection*>(conn);  // loop_ is set only on Connections
  if (c->in_handler || c->closed()) return;
  if (c->abort_requested_) c->out.resize(c->out_sent);
  CloseWhenFlushed(c, "closed by the server");
  QueueFlush(c);
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
    if (!c->handing_off && DrainedAt(c)) {
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
  DrainCloseQueue();
  lingerer_.CloseAll();
  if (ev_is_active(&drain_timer_)) ev_timer_stop(loop_, &drain_timer_);
}

}  // namespace redhub::worker
