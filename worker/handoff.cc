// Handing live connections to a successor worker (reload, upgrade): the
// wire format (EncodeHandoff / DecodeHandoff) and the EventLoop's two sides
// of the protocol, kept apart from the request path because they share
// only the connection list with it.
//
// Retiring side: Retire -> MaybeHandOff offers each connection at a request
// boundary (kConnection with the socket) -> OnHandoffReply reads the answer:
// kAdopted closes our descriptor (CloseKind::kMoved), kRefused serves it
// here until the drain. Successor side: AdoptFrom -> OnHandoffIncoming ->
// Adopt registers the socket, answers, and runs the partial request's
// bytes once the rest arrives.
#include "handoff.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "channel.h"
#include "event_loop.h"
#include "log.h"
#include "syserr.h"

namespace redhub::worker {
namespace {

// Connections offered to the successor and not yet answered. The answers
// (small messages) must always fit in the channel's buffer, or the
// successor could not tell us it took a connection.
constexpr size_t kMaxOffersInFlight = 64;

HandoffField Field(uint16_t tag) { return static_cast<HandoffField>(tag); }
uint16_t Tag(HandoffField f) { return static_cast<uint16_t>(f); }

}  // namespace

// The fields that are plain numbers in HandoffState, written and read the
// same way: one row each, for both directions.
struct NumberField {
  HandoffField tag;
  uint64_t HandoffState::*member;
};
constexpr NumberField kNumberFields[] = {
    {HandoffField::kVersion, &HandoffState::version},
    {HandoffField::kId, &HandoffState::id},
    {HandoffField::kAgeSeconds, &HandoffState::age_seconds},
    {HandoffField::kCommands, &HandoffState::commands},
};

std::string EncodeHandoff(const HandoffState& s) {
  FieldWriter f;
  for (const NumberField& n : kNumberFields) f.PutU64(Tag(n.tag), s.*n.member);
  f.PutU64(Tag(HandoffField::kProtocol), static_cast<uint64_t>(s.protocol));
  f.Put(Tag(HandoffField::kName), s.name);
  f.Put(Tag(HandoffField::kUnparsed), s.unparsed);
  f.PutU64(Tag(HandoffField::kSessionFlags), s.session_flags);
  if (!s.user.empty()) f.Put(Tag(HandoffField::kUser), s.user);
  return std::move(f.data());
}

bool DecodeHandoff(std::string_view payload, HandoffState* s) {
  *s = HandoffState{};
  s->version = 0;  // absent: refused
  FieldReader r(payload);
  uint16_t tag;
  std::string_view v;
  while (r.Next(&tag, &v)) {
    const HandoffField field = Field(tag);
    if (field == HandoffField::kProtocol) {
      s->protocol = FieldReader::U64(v) == 3 ? 3 : 2;
    } else if (field == HandoffField::kName) {
      s->name = std::string(v);
    } else if (field == HandoffField::kUnparsed) {
      s->unparsed = v;
    } else if (field == HandoffField::kSessionFlags) {
      s->session_flags = static_cast<uint32_t>(FieldReader::U64(v));
    } else if (field == HandoffField::kUser) {
      s->user = std::string(v);
    } else {
      // A number, or kSelectedDb (reserved) or a newer binary's field: skipped.
      for (const NumberField& n : kNumberFields) {
        if (n.tag == field) s->*n.member = FieldReader::U64(v);
      }
    }
  }
  return r.ok() && s->version != 0;
}

std::string EncodeAnswer(uint64_t id) {
  std::string answer(8, '\0');
  for (int i = 0; i < 8; i++) answer[i] = static_cast<char>(id >> (8 * i));
  return answer;
}

uint64_t DecodeAnswer(std::string_view payload) { return FieldReader::U64(payload); }

void EventLoop::OnHandoffWritable(struct ev_loop* loop, ev_io* w, int) {
  ev_io_stop(loop, w);
  static_cast<EventLoop*>(ev_userdata(loop))->HandOffAll();
}

void EventLoop::MaybeHandOff(Connection* c) {
  // Every complete request read has run (Process() runs them all unless
  // paused) and its reply is out; the bytes of a partial one travel along
  // (kUnparsed), so a client that never pauses between requests moves too.
  // A TLS session never moves (its keys live in this process's SSL object),
  // nor a connection whose application state cannot (Conn::stays_here: a
  // MULTI queue): served here until it closes, is movable again (the next
  // request's end offers it), or the drain timeout.
  if (!retiring_ || draining_ || c->closed() || c->transport.tls() || c->stays_here_ ||
      c->handing_off || c->refused || c->close_after || c->paused || c->pending_output() > 0 ||
      c->in.size() > kMaxHandoffBytes || handoff_out_.fd < 0 ||
      offers_in_flight_ >= kMaxOffersInFlight) {
    return;
  }
  HandoffState s;
  s.id = c->id_;
  s.protocol = c->protocol_;
  s.name = c->name_;
  s.age_seconds = static_cast<uint64_t>(ev_now(loop_) - c->created_at_);
  s.commands = c->commands;
  s.unparsed = std::string_view(c->in.data(), c->in.size());
  s.session_flags = c->session_flags_;
  s.user = c->user_;
  int err = SendMessage(handoff_out_.fd, MessageType::kConnection, EncodeHandoff(s), c->fd_);
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
  // A drain that started while the offer was out left this one alone
  // (StartDraining): it is ours again, so the drain applies to it now.
  if (draining_ && DrainedAt(c)) {
    CloseWhenFlushed(c, "server shutdown");
    Flush(c);
  }
}

void EventLoop::Retire(int handoff_fd) {
  if (retiring_ || draining_) {
    close(handoff_fd);
    return;
  }
  retiring_ = true;
  StopAccepting();
  if (ev_is_active(&ticker_)) ev_timer_stop(loop_, &ticker_);
  size_t tls = 0;
  for (Connection* c = head_; c != nullptr; c = c->next) tls += c->transport.tls();
  if (tls > 0) {
    LOG_NOTICE(
        "%zu TLS connection%s stay%s with this worker until closed or the drain timeout (%.0f s): "
        "a TLS session cannot move to another process",
        tls, tls == 1 ? "" : "s", tls == 1 ? "s" : "", drain_timeout_);
  }
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
      LOG_WARNING("Handoff channel closed (%s); serving remaining clients until the drain timeout",
                  err < 0 ? "end of stream" : ErrnoText(err).c_str());
      self->SuccessorGone();
      return;
    }
    if (m.fd >= 0) close(m.fd);
    if (self->offers_in_flight_ > 0) self->offers_in_flight_--;
    self->OnAnswer(m.type, DecodeAnswer(m.payload));
  }
}

void EventLoop::SuccessorGone() {
  // Whatever the successor had not adopted is ours again.
  ev_io_stop(loop_, &handoff_out_);
  ev_io_stop(loop_, &handoff_writable_);
  close(handoff_out_.fd);
  handoff_out_.fd = -1;
  offers_in_flight_ = 0;
  for (Connection* c = head_; c != nullptr; c = c->next) {
    if (c->handing_off) ResumeServing(c);
  }
}

void EventLoop::OnAnswer(MessageType type, uint64_t id) {
  Connection* c = head_;
  while (c != nullptr && !(c->handing_off && c->id_ == id)) c = c->next;
  if (c == nullptr) return;
  if (type == MessageType::kAdopted) {
    // The successor has its own descriptor for the socket: closing ours
    // does not close the connection.
    Close(c, "", CloseKind::kMoved);
    return;
  }
  LOG_WARNING("Successor refused client id=%llu; serving it until the drain timeout",
              static_cast<unsigned long long>(id));
  // Offered again it would be refused again, at once: every answer
  // triggers more offers.
  c->refused = true;
  ResumeServing(c);
}

int EventLoop::Answer(MessageType type, uint64_t id) {
  queued_answers_.emplace_back(type, id);
  return SendAnswers();
}

int EventLoop::SendAnswers() {
  while (!queued_answers_.empty()) {
    auto [type, id] = queued_answers_.front();
    int err = SendMessage(handoff_in_.fd, type, EncodeAnswer(id));
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
    self->Adopt(m.fd, m.payload);
  }
}

void EventLoop::Adopt(int fd, std::string_view payload) {
  HandoffState s;
  // A retiring worker still adopts: it passes the connection on to its own
  // successor below, where refusing would leave it with the predecessor
  // until the drain timeout closes it.
  if (!DecodeHandoff(payload, &s) || draining_) {
    close(fd);
    Answer(MessageType::kRefused, s.id);
    return;
  }
  Connection* c = Register(fd, s.id);
  c->set_protocol(s.protocol);
  c->name_ = std::move(s.name);
  c->session_flags_ = s.session_flags;
  c->user_ = std::move(s.user);
  c->created_at_ = ev_now(loop_) - static_cast<double>(s.age_seconds);
  c->commands = s.commands;
  if (!s.unparsed.empty() && !c->in.Reserve(s.unparsed.size())) {
    // Out of memory. Without the start of its partial request the client's
    // next bytes would be misread: refuse, the predecessor keeps serving it.
    Close(c, "", CloseKind::kMoved);
    Answer(MessageType::kRefused, s.id);
    return;
  }
  if (!s.unparsed.empty()) {
    memcpy(c->in.tail(), s.unparsed.data(), s.unparsed.size());
    c->in.Commit(s.unparsed.size());
  }
  stats_.connections_adopted++;
  if (int sent = Answer(MessageType::kAdopted, s.id); sent != 0) {
    // The predecessor cannot learn that we took it; it will keep serving
    // its copy, so we must not serve ours.
    LOG_WARNING("sendmsg(handoff answer) failed: %s", ErrnoText(sent).c_str());
    Close(c, "", CloseKind::kMoved);
    return;
  }
  if (c->in.size() > 0) {
    Process(c);
    if (c->pending_output() > 0 || c->close_after) Flush(c);
  }
  if (retiring_) MaybeHandOff(c);  // nothing if Process closed it
}

}  // namespace redhub::worker
