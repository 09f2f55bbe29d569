// One worker's event loop: accepts on the listening sockets it is given,
// reads, parses, runs handlers and writes replies, all on one libev loop.
//
// The loop owns its connections and nothing else: listening sockets belong to
// whoever created them (the prefork master keeps them open for its whole
// life), so closing or destroying a loop never closes a listener.
//
// A request's path, in one place (Process):
//   read -> InputBuffer -> Parser -> on_command -> Writer -> output -> send
//
// Closing is deferred (Redis's freeClientAsync): Close() marks a connection,
// takes it off the list and stops its watchers; the close queue is emptied
// (on_close, the descriptor closed or lingering, the object freed) just
// before the loop next waits for events, and at shutdown. So a Connection*
// held by any caller stays valid for the rest of the callback, and no
// function reports whether it closed the connection: Connection::closed().
//
// Files: event_loop.cc (the request path, limits, drain), connection.h (the
// per-connection record), handoff.cc (moving connections to a successor),
// linger.cc (closing without losing replies).
#pragma once

#include <ev.h>
#include <redhub/server.h>

#include <deque>
#include <string>
#include <vector>

#include "channel.h"
#include "connection.h"
#include "linger.h"

namespace redhub::shm {
class CounterArea;
class CounterBlock;
}  // namespace redhub::shm

namespace redhub::worker {

class EventLoop final : public ServerView {
 public:
  EventLoop(const Options& options, Handlers handlers);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Starts accepting on a listening socket; the loop never closes it. With
  // tls (the loop takes a reference), every connection accepted on it
  // speaks TLS: handshake first, then RESP through OpenSSL (transport.h).
  void AddListener(int fd, SSL_CTX* tls = nullptr);
  // A TLS connection whose handshake has not completed after this many
  // seconds is closed (checked once a second) and counted as a failure.
  void set_tls_handshake_timeout(double seconds) { tls_handshake_timeout_ = seconds; }
  // Runs until Stop() or a kShutdown action; returns 0.
  int Run();
  // Stops accepting, lets every connection finish the request in progress
  // and the complete ones it has sent, and receive their replies; closes each
  // then (a partial request after them is dropped unrun), lingering until the
  // client has read the replies; returns from Run() when none is left or
  // after drain_timeout. Safe from any thread and from a signal handler.
  void Stop();
  // Connection ids are id_base + 1, + 2, ...; the prefork daemon gives each
  // worker its own base so ids are unique across processes.
  void set_id_base(uint64_t base) { next_id_ = base; }

  // Stops accepting new connections; listeners stay open (they are not ours).
  void StopAccepting();
  // Retirement on reload or upgrade: stop accepting, then hand every
  // connection, as soon as every complete request read has been answered and
  // flushed (a partial one's bytes go along), to the successor over
  // handoff_fd, which this loop
  // now owns. Connections still arriving from this loop's own predecessor
  // are adopted and passed on the same way. Run() returns when no connection
  // is left and the predecessor's channel has closed. A connection the
  // successor refuses, or all of them if the successor goes away, is served
  // here until the drain timeout and then closed as by Stop().
  void Retire(int handoff_fd);
  // The successor's side: adopt connections arriving on handoff_fd, which
  // this loop now owns.
  void AdoptFrom(int handoff_fd);
  bool retiring() const { return retiring_; }
  void set_drain_timeout(double seconds) { drain_timeout_ = seconds; }
  void set_options(const Options& options);
  const Options& options() const override { return options_; }
  // The prefork daemon's maxclients is one limit for all its workers: this
  // loop publishes its client count in its counter block at every change,
  // and admits a new client only if the sum over every worker's block stays
  // within max_clients. Without it (the framework's Server) the limit is
  // this loop's.
  void set_shared_clients(shm::CounterArea* area, shm::CounterBlock* block) {
    client_area_ = area;
    client_block_ = block;
  }

  // ServerView: what handlers may know of this loop.
  double now() const override;
  ServerStats stats() const override;
  size_t client_buffer_bytes() const override;
  void ForEachClient(const std::function<void(const ClientInfo&)>& fn) const override;
  ClientInfo Describe(const Conn& conn) const override;

  template <class F>
  void ForEachConnection(F&& f) const {
    for (Connection* c = head_; c != nullptr; c = c->next) f(*c);
  }

  struct ev_loop* loop() const {
    return loop_;
  }
  // Changes every time the loop starts running a connection's buffered
  // requests: commands dispatched under one value ran back to back, with
  // only the loop's own bookkeeping and parsing between them.
  uint64_t batch() const override { return batch_; }

 private:
  static void OnAccept(struct ev_loop* loop, ev_io* w, int events);
  static void OnReadable(struct ev_loop* loop, ev_io* w, int events);
  static void OnWritable(struct ev_loop* loop, ev_io* w, int events);
  static void OnCron(struct ev_loop* loop, ev_timer* w, int events);
  static void OnPrepare(struct ev_loop* loop, ev_prepare* w, int events);
  static void OnTick(struct ev_loop* loop, ev_timer* w, int events);
  static void OnStopRequest(struct ev_loop* loop, ev_async* w, int events);
  static void OnSignal(struct ev_loop* loop, ev_signal* w, int events);
  static void OnDrainTimeout(struct ev_loop* loop, ev_timer* w, int events);
  static void OnHandoffReply(struct ev_loop* loop, ev_io* w, int events);
  static void OnHandoffIncoming(struct ev_loop* loop, ev_io* w, int events);
  static void OnHandoffWritable(struct ev_loop* loop, ev_io* w, int events);
  static void OnAnswersWritable(struct ev_loop* loop, ev_io* w, int events);
  static void OnTlsIdle(struct ev_loop* loop, ev_idle* w, int events);
  struct Listener;
  // Handoff (handoff.cc). The successor's answer to an offered connection,
  // sent in order; queued while the channel is full.
  // Returns 0 (sent or queued) or the errno of a broken channel.
  int Answer(MessageType type, uint64_t id);
  // Sends queued answers until the channel is full (then waits for it to be
  // writable); 0 or the errno of a broken channel (the queue is dropped).
  int SendAnswers();
  // Successor: takes one offered connection (its socket and payload).
  void Adopt(int fd, std::string_view payload);
  // Retiring: the successor answered kAdopted or kRefused for id.
  void OnAnswer(MessageType type, uint64_t id);
  // Retiring: the channel to the successor broke; serve what was offered.
  void SuccessorGone();
  // Hands c to the successor if its read requests are all answered.
  void MaybeHandOff(Connection* c);
  void HandOffAll();
  void ResumeServing(Connection* c);
  void CheckRetired();

  void Accept(int listen_fd, SSL_CTX* tls);
  // A new connection is ready for requests (TLS: its handshake is done):
  // on_open, and its first flush. False if the handler shut the server down.
  bool Open(Connection* c);
  // TLS: the next step of c's handshake, the watchers set for what it waits
  // on; Open once done, a close (counted) if it failed.
  void ContinueHandshake(Connection* c);
  // A TLS connection's readable event: the handshake, a write that waited
  // for it (write_wants_read), then Read.
  void TlsReadable(Connection* c);
  // TLS: OpenSSL holds bytes of c no event will announce: read them before
  // the loop next sleeps (OnPrepare), and do not let it sleep meanwhile.
  void NoteTlsPending(Connection* c);
  void ReadTlsPending();
  // Counts a new client in against max_clients (daemon-wide with
  // set_shared_clients); false: over the limit, nothing counted.
  bool Admit();
  void PublishClients();
  // accept4 failed with something other than a lost connection (EMFILE...):
  // stop accepting and retry after a backoff instead of in a busy loop.
  void PauseAccepting(int listen_fd, int err);
  static void OnAcceptRetry(struct ev_loop* loop, ev_timer* w, int events);
  void ResumeAccepting();
  // A descriptor of ours was closed: if accepting is paused for lack of
  // descriptors, try again now rather than at the end of the backoff.
  void FdFreed() {
    if (accept_paused_) ResumeAccepting();
  }
  void Read(Connection* c);
  // Runs every complete command in c's input (none once c is closed or
  // closing), then applies backpressure and the drain.
  void Process(Connection* c);
  // Sends c's output; once it is all out, closes c if it was to close, and
  // if backpressure had paused it, runs what was read meanwhile and sends
  // again. Nothing once c is closed.
  void Flush(Connection* c);
  // Sends what the socket takes of c's output; true if all of it went. A
  // write error closes c (false).
  bool SendOutput(Connection* c);
  // Marks c closed and queues it (see the top of this file); later calls
  // for the same connection do nothing. kind says how its socket is let go.
  void Close(Connection* c, std::string_view reason, CloseKind kind = CloseKind::kServer);
  // Empties the close queue: on_close, the log line, the descriptor, delete.
  void DrainCloseQueue();
  // One queued connection: on_close and the log line (not for kMoved), its
  // descriptor closed or lingering, the object deleted.
  void Free(Connection* c);
  // Ends Run() once a drain has closed everything, or a retirement is done.
  void MaybeFinish();
  // A lingering socket was finally closed (Lingerer's callback).
  void LingerEnded();
  // No connection served, none waiting to be closed and none lingering.
  bool Empty() const { return head_ == nullptr && close_queue_.empty() && lingerer_.empty(); }
  void StartDraining();
  bool DrainedAt(Connection* c) const;
  // Marks c to be closed once its replies are sent, keeping an earlier reason.
  void CloseWhenFlushed(Connection* c, std::string_view reason);

 public:
  // Conn::Close on one of this loop's connections: inside its own handler
  // the loop acts after the handler; from anywhere else it closes here,
  // once the replies already written are sent (Abort: dropped).
  void CloseRequested(Conn* conn);

 private:
  void Shutdown();
  Connection* Register(int fd, uint64_t id);
  void Unlink(Connection* c);
  // Sends c's replies before the loop next waits for events (OnPrepare).
  void QueueFlush(Connection* c);
  void UnqueueFlush(Connection* c);

  static struct ev_loop* NewLoop();

  Options options_;
  Handlers handlers_;
  struct ev_loop* loop_;
  Lingerer lingerer_;  // closed connections waiting for the client's close
  // Closed connections not yet freed (DrainCloseQueue), in the order closed.
  std::vector<Connection*> close_queue_;
  std::vector<ev_io*> listeners_;  // each the io of a Listener
  // TLS connections with bytes inside OpenSSL (NoteTlsPending); while it is
  // not empty an idle watcher keeps the loop from blocking in epoll.
  std::vector<Connection*> tls_pending_;
  ev_idle tls_idle_;
  double tls_handshake_timeout_ = 10;
  ev_timer cron_;
  ev_prepare flush_watcher_;
  Connection* flush_head_ = nullptr;
  ev_timer ticker_;
  ev_timer drain_timer_;
  ev_async stop_async_;
  ev_signal sigint_;
  ev_signal sigterm_;
  Connection* head_ = nullptr;
  bool aborting_ = false;  // Shutdown(): close at once, linger no more
  uint64_t next_id_ = 0;
  uint64_t batch_ = 0;
  bool draining_ = false;
  bool retiring_ = false;
  ev_io handoff_out_;  // retiring: answers from the successor
  ev_io handoff_in_;   // successor: connections from the retiring worker
  // Retiring: connections offered and not yet answered. At most
  // kMaxOffersInFlight, so that the answers always fit in the channel; each
  // answer lets another go.
  size_t offers_in_flight_ = 0;
  ev_io handoff_writable_;  // retiring: the channel was full, offer again when it is not
  ev_io answers_writable_;  // successor: the channel was full, answer when it is not
  std::deque<std::pair<MessageType, uint64_t>> queued_answers_;
  double drain_timeout_ = 30;
  ServerStats stats_;
  shm::CounterArea* client_area_ = nullptr;  // set_shared_clients
  shm::CounterBlock* client_block_ = nullptr;
  ev_timer accept_retry_;  // accepting paused after an accept4 failure
  bool accept_paused_ = false;
  double accept_backoff_ = 0;            // the last pause; 0 after a successful accept
  double accept_logged_at_ = -1e9;       // ev_now() of the last accept4 failure logged
  uint64_t accept_errors_unlogged_ = 0;  // since then
};

}  // namespace redhub::worker
