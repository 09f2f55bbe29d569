// A slot's workers: spawning one, its control channel, its ready message,
// its exit and respawn with backoff, and the slot-by-slot roll that a
// reload or an upgrade uses to replace every worker without dropping a
// connection (the old one hands its clients to its successor).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "channel.h"
#include "counters.h"
#include "log.h"
#include "notify.h"
#include "supervisor.h"
#include "syserr.h"
#include "worker_counters.h"
#include "worker_process.h"

namespace redhub::master {

worker::WorkerSpec Supervisor::MakeWorkerSpec(const Slot& slot, uint64_t seq, const int control[2],
                                              const int handoff[2]) {
  worker::WorkerSpec spec;
  spec.slot = slot.index;
  spec.master_pid = getppid();
  spec.seq = seq;
  spec.listen_fds = slot.fds;
  spec.listen_fds.insert(spec.listen_fds.end(), shared_fds_.begin(), shared_fds_.end());
  spec.tls_listen_fds = slot.tls_fds;
  spec.tls_ctx = tls_ctx_;
  spec.tls_handshake_timeout = config_.tls_handshake_timeout;
  spec.control_fd = control[1];
  spec.adopt_fd = handoff[1];
  // The master's ends of every channel, and other slots' sockets: a worker
  // holding them would keep channels open that must close when their
  // owner dies.
  spec.close_fds.push_back(control[0]);
  if (handoff[0] >= 0) spec.close_fds.push_back(handoff[0]);
  for (auto& w : workers_) {
    spec.close_fds.push_back(w->control_fd);
    if (w->handoff_fd >= 0) spec.close_fds.push_back(w->handoff_fd);
  }
  for (const Slot& other : slots_) {
    if (other.index != slot.index) {
      spec.close_fds.insert(spec.close_fds.end(), other.fds.begin(), other.fds.end());
      spec.close_fds.insert(spec.close_fds.end(), other.tls_fds.begin(), other.tls_fds.end());
    }
  }
  spec.options = config_.server;
  spec.store = store_;
  spec.counters = counters_;
  spec.acl = acl_.get();
  spec.scripts = scripts_.get();
  spec.info.bind = config_.bind.empty() ? "" : config_.bind.front();
  spec.info.port = port_;
  spec.info.config_file = config_.config_file;
  spec.info.executable = executable_;
  spec.drain_timeout = config_.drain_timeout;
  // Several heartbeats per timeout: one late heartbeat must not look
  // like a hang.
  spec.heartbeat_interval = std::min(1.0, config_.worker_timeout / 4);
  spec.info.config_parameters = ReportedConfigParameters();
  return spec;
}

Supervisor::Worker* Supervisor::Spawn(Slot& slot, bool hand_over) {
  int control[2];
  if (int e = MakeChannel(control); e != 0) {
    LOG_WARNING("socketpair(control, slot %d) failed: %s", slot.index, ErrnoText(e).c_str());
    return nullptr;
  }
  int handoff[2] = {-1, -1};
  if (hand_over) {
    if (int e = MakeChannel(handoff); e != 0) {
      LOG_WARNING("socketpair(handoff, slot %d) failed: %s", slot.index, ErrnoText(e).c_str());
      handoff[0] = handoff[1] = -1;
    }
  }
  uint64_t seq = ++seq_;
  auto w = std::make_unique<Worker>();
  w->kind = ChildKind::kWorker;
  w->owner = this;
  pid_t pid = SpawnChild(
      loop_, signals_, w.get(), "slot " + std::to_string(slot.index),
      [&] { return worker::RunWorker(MakeWorkerSpec(slot, seq, control, handoff)); }, OnChild);
  if (pid < 0) {
    close(control[0]);
    close(control[1]);
    if (handoff[0] >= 0) close(handoff[0]), close(handoff[1]);
    return nullptr;
  }
  close(control[1]);
  if (handoff[1] >= 0) close(handoff[1]);
  w->slot = slot.index;
  w->seq = seq;
  w->control_fd = control[0];
  w->handoff_fd = handoff[0];
  w->last_heartbeat = w->started_at;
  ev_io_init(&w->control, OnControl, w->control_fd, EV_READ);
  w->control.data = w.get();
  ev_io_start(loop_, &w->control);
  Worker* raw = w.get();
  workers_.push_back(std::move(w));
  slot.pending = raw;
  LOG_VERBOSE("Started worker %d (pid %d)", slot.index, static_cast<int>(pid));
  return raw;
}

void Supervisor::OnControl(struct ev_loop*, ev_io* io, int) {
  auto* w = static_cast<Worker*>(io->data);
  Supervisor* self = w->owner;
  while (true) {
    Message m;
    int err = ReceiveMessage(io->fd, &m);
    if (err == EAGAIN) return;
    if (err != 0) {
      // The worker closed its end: it is exiting; ev_child reports how.
      ev_io_stop(self->loop_, io);
      return;
    }
    if (m.fd >= 0) close(m.fd);
    w->last_heartbeat = ev_now(self->loop_);
    if (m.type == MessageType::kReady) self->WorkerReady(w);
  }
}

void Supervisor::WorkerReady(Worker* w) {
  Slot& slot = slots_[w->slot];
  w->ready = true;
  slot.respawner.NoteReady();
  if (stopping_) {
    // A worker forked just before the stop may have missed the SIGTERM (it
    // had not set up its handling yet): tell it again now that it listens.
    kill(w->pid, SIGTERM);
    return;
  }
  if (slot.pending != w) return;
  Worker* old = slot.current;
  slot.current = w;
  slot.pending = nullptr;
  if (old != nullptr && !old->retiring()) {
    old->respawn = false;  // retiring: its successor serves the slot
    // Only now that the successor serves the socket does the old worker stop
    // accepting; its connections follow over the handoff channel.
    int fd = w->handoff_fd;
    int err = fd >= 0 ? SendMessage(old->control_fd, MessageType::kRetire, {}, fd) : EBADF;
    if (err != 0) {
      LOG_WARNING("Could not pass the handoff channel to worker %d (pid %d): %s; stopping it",
                  old->slot, static_cast<int>(old->pid), ErrnoText(err).c_str());
      kill(old->pid, SIGTERM);
    }
  }
  if (w->handoff_fd >= 0) {
    close(w->handoff_fd);
    w->handoff_fd = -1;
  }
  PublishSlots();
  LOG_NOTICE("Worker %d (pid %d) ready%s", w->slot, static_cast<int>(w->pid),
             old != nullptr ? ", replacing the previous one" : "");
  if (!announced_ready_) {
    bool all = true;
    for (Slot& s : slots_) all = all && s.current != nullptr && s.current->ready;
    if (all) {
      announced_ready_ = true;
      LOG_NOTICE("Ready to accept connections on %s", DescribeAddresses().c_str());
      Notify("READY=1\nSTATUS=serving\nMAINPID=" + std::to_string(getpid()));
    }
  }
  RollNext();
}

void Supervisor::OnChild(struct ev_loop* loop, ev_child* c, int) {
  auto* w = static_cast<Worker*>(static_cast<Child*>(c->data));
  ev_child_stop(loop, c);
  w->owner->WorkerExited(w, c->rstatus);
}

void Supervisor::WorkerExited(Worker* w, int status) {
  Slot& slot = slots_[w->slot];
  double lived = ev_now(loop_) - w->started_at;
  bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!w->respawn || stopping_) {
    if (clean) {
      LOG_VERBOSE("Worker %d (pid %d) finished", w->slot, static_cast<int>(w->pid));
    } else {
      LOG_WARNING("Worker %d (pid %d) %s while %s", w->slot, static_cast<int>(w->pid),
                  DescribeStatus(status).c_str(), stopping_ ? "stopping" : "retiring");
    }
  } else {
    RestartReason reason = RestartReasonOf(status, w->timed_out);
    LOG_WARNING("Worker %d (pid %d) %s after %.1f s (restart reason: %s)", w->slot,
                static_cast<int>(w->pid), DescribeStatus(status).c_str(), lived,
                std::string(NameOf(reason)).c_str());
    if (w->slot < static_cast<int>(shm::slots::kMaxTrackedSlots)) {
      Count(shm::slots::RestartSlot(static_cast<uint32_t>(w->slot), static_cast<uint32_t>(reason)));
    }
  }
  ev_io_stop(loop_, &w->control);
  if (w->control_fd >= 0) close(w->control_fd);
  if (w->handoff_fd >= 0) close(w->handoff_fd);
  const bool was_ready = w->ready;
  bool was_current = slot.current == w;
  bool was_pending = slot.pending == w;
  if (was_current) slot.current = nullptr;
  if (was_pending) slot.pending = nullptr;
  const pid_t pid = w->pid;
  workers_.remove_if([w](const std::unique_ptr<Worker>& p) { return p.get() == w; });
  // A worker that crashed left its connected-clients gauge in its block;
  // the other workers' admission (daemon-wide maxclients) must stop
  // counting it now, not at the next INFO.
  if (counters_ != nullptr) counters_->ForgetDead(pid);
  PublishSlots();

  if (stopping_) {
    if (AllGone()) ev_break(loop_, EVBREAK_ALL);
    return;
  }
  if (was_current || was_pending) {
    // Back off when workers keep dying young, so a crash loop costs little;
    // one that got as far as serving waits far less (child_table.h).
    double delay = was_ready ? slot.respawner.NoteDeath(lived, kWorkerServingBackoff)
                             : slot.respawner.NoteStartFailure(lived, kWorkerStartingBackoff);
    if (was_pending && slot.current != nullptr) {
      // A replacement died before it was ready: the old worker still serves.
      roll_queue_.push_front(slot.index);
      if (delay == 0) delay = 0.1;
    }
    ScheduleRespawn(slot, delay);
  }
}

void Supervisor::ScheduleRespawn(Slot& slot, double delay) {
  slot.respawner.Schedule(loop_, delay, "worker " + std::to_string(slot.index));
}

void Supervisor::OnRespawn(struct ev_loop*, ev_timer* t, int) {
  auto* slot = static_cast<Slot*>(t->data);
  Supervisor* self = slot->owner;
  if (self->stopping_) return;
  if (slot->current == nullptr && slot->pending == nullptr) {
    if (self->Spawn(*slot, false) == nullptr) self->ScheduleRespawn(*slot, kSpawnRetry);
    return;
  }
  self->RollNext();
}

void Supervisor::RollNext() {
  if (stopping_) return;
  for (Slot& s : slots_) {
    if (s.pending != nullptr) return;  // one slot at a time
  }
  while (!roll_queue_.empty()) {
    Slot& slot = slots_[roll_queue_.front()];
    roll_queue_.pop_front();
    if (slot.current == nullptr) continue;  // respawning anyway, with the new settings
    if (Spawn(slot, true) != nullptr) return;
    roll_queue_.push_front(slot.index);
    ScheduleRespawn(slot, kSpawnRetry);
    return;
  }
  // The end of a reload's or an upgrade's roll (not of the first start,
  // which announces itself once every slot is ready).
  if (rolling_) {
    rolling_ = false;
    Notify("READY=1\nSTATUS=serving");
  }
  if (upgrade_deferred_) {
    upgrade_deferred_ = false;
    Upgrade();
  }
}

}  // namespace redhub::master
