#include "supervisor.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>

#include "admin.h"
#include "channel.h"
#include "counters.h"
#include "fd_limit.h"
#include "log.h"
#include "net.h"
#include "notify.h"
#include "proctitle.h"
#include "store.h"
#include "store_setup.h"
#include "syserr.h"
#include "version.h"
#include "worker_counters.h"
#include "worker_process.h"

extern char** environ;

namespace redhub::master {
namespace {

// The environment variable that carries sockets and workers across an
// upgrade's execve. Format version first so that a later binary can read it.
constexpr char kInheritEnv[] = "REDHUB_INHERIT";
constexpr int kInheritVersion = 1;

// A worker that lived less than this is a crash loop candidate.
constexpr double kQuickCrash = 5.0;
constexpr double kMaxBackoff = 10.0;
constexpr double kMaxServingBackoff = 0.5;
// Workers heartbeat every second; one silent this long is not serving.
constexpr double kStaleHeartbeat = 2.5;

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    std::string s = std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                    strsignal(WTERMSIG(status)) + ")";
    if (WCOREDUMP(status)) s += ", core dumped";
    return s;
  }
  return "status " + std::to_string(status);
}

}  // namespace

Supervisor::Supervisor(Config config, std::vector<std::string> argv)
    : config_(std::move(config)), argv_(std::move(argv)) {
  loop_ = ev_default_loop(EVFLAG_NOENV);
  char path[PATH_MAX];
  // The path, not /proc/self/exe itself: an upgrade must run the binary now
  // at that path, not the (possibly deleted) one this process runs.
  if (realpath("/proc/self/exe", path) != nullptr) executable_ = path;
}

Supervisor::~Supervisor() {
  for (auto& w : workers_) {
    if (w->control_fd >= 0) close(w->control_fd);
    if (w->handoff_fd >= 0) close(w->handoff_fd);
  }
  for (Slot& s : slots_) {
    for (int fd : s.fds) close(fd);
  }
  for (int fd : shared_fds_) close(fd);
}

std::string Supervisor::Init() {
  slots_.resize(config_.workers);
  for (int i = 0; i < config_.workers; i++) {
    slots_[i].index = i;
    slots_[i].owner = this;
    ev_timer_init(&slots_[i].respawn, OnRespawn, 0, 0);
    slots_[i].respawn.data = &slots_[i];
  }
  const char* inherited = getenv(kInheritEnv);
  std::string err;
  if (inherited != nullptr) {
    std::string state = inherited;
    unsetenv(kInheritEnv);  // workers must not see it
    err = Inherit(state.c_str());
  } else {
    err = CreateListeners();
  }
  return err;
}

std::string Supervisor::CreateListeners() {
  std::vector<Address> tcp;
  for (const std::string& host : config_.bind) {
    if (config_.port == 0) break;  // as in Redis, port 0 means no TCP
    Address a;
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    if (std::string e = ParseAddress(h + ":" + std::to_string(config_.port), &a); !e.empty()) {
      return "invalid bind address '" + host + "': " + e;
    }
    tcp.push_back(a);
  }
  ListenOptions lo;
  lo.backlog = config_.server.listen_backlog;
  lo.reuse_port = true;
  for (Slot& slot : slots_) {
    for (Address& a : tcp) {
      std::string e;
      int fd = Listen(a, lo, &e);
      if (fd < 0) return e;
      if (port_ == 0) port_ = BoundPort(fd);
      slot.fds.push_back(fd);
    }
  }
  if (!config_.unix_socket.empty()) {
    Address a;
    a.family = Address::Family::kUnix;
    a.path = config_.unix_socket;
    ListenOptions ulo;
    ulo.backlog = config_.server.listen_backlog;
    std::string e;
    int fd = Listen(a, ulo, &e);
    if (fd < 0) return e;
    shared_fds_.push_back(fd);
  }
  if (slots_.empty() || (slots_[0].fds.empty() && shared_fds_.empty())) {
    return "nothing to listen on: give --port or --unixsocket";
  }
  return "";
}

// REDHUB_INHERIT=1;seq;port;shared:fd,fd;slot:fd,fd|...;slot:pid:ctl:seq[:r]|...
// where ":r" marks a worker that is retiring (added later in version 1: an
// older reader skips those entries).
std::string Supervisor::Inherit(const char* state) {
  std::vector<std::string> parts;
  std::stringstream ss(state);
  std::string part;
  while (std::getline(ss, part, ';')) parts.push_back(part);
  if (parts.size() < 6 || std::atoi(parts[0].c_str()) != kInheritVersion) {
    return std::string("cannot read ") + kInheritEnv + " (from an incompatible binary?)";
  }
  seq_ = std::strtoull(parts[1].c_str(), nullptr, 10);
  port_ = static_cast<uint16_t>(std::atoi(parts[2].c_str()));
  auto split = [](const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, sep)) {
      if (!item.empty()) out.push_back(item);
    }
    return out;
  };
  for (const std::string& fd : split(parts[3], ',')) shared_fds_.push_back(std::atoi(fd.c_str()));
  for (const std::string& entry : split(parts[4], '|')) {
    auto kv = split(entry, ':');
    if (kv.size() != 2) continue;
    int index = std::atoi(kv[0].c_str());
    if (index < 0 || index >= static_cast<int>(slots_.size())) {
      return "the previous binary had more worker slots; the worker count cannot change";
    }
    for (const std::string& fd : split(kv[1], ',')) {
      slots_[index].fds.push_back(std::atoi(fd.c_str()));
    }
  }
  for (int fd : shared_fds_) fcntl(fd, F_SETFD, FD_CLOEXEC);
  for (Slot& s : slots_) {
    if (s.fds.empty() && shared_fds_.empty()) {
      return "slot " + std::to_string(s.index) + " has no inherited socket";
    }
    for (int fd : s.fds) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  double now = ev_now(loop_);
  for (const std::string& entry : split(parts[5], '|')) {
    auto f = split(entry, ':');
    if (f.size() != 4 && !(f.size() == 5 && f[4] == "r")) continue;
    auto w = std::make_unique<Worker>();
    w->owner = this;
    w->slot = std::atoi(f[0].c_str());
    w->pid = std::atoi(f[1].c_str());
    w->control_fd = std::atoi(f[2].c_str());
    w->seq = std::strtoull(f[3].c_str(), nullptr, 10);
    if (w->slot < 0 || w->slot >= static_cast<int>(slots_.size())) continue;
    fcntl(w->control_fd, F_SETFD, FD_CLOEXEC);
    w->ready = true;
    w->retiring = f.size() == 5;
    w->started_at = w->last_heartbeat = now;
    ev_io_init(&w->control, OnControl, w->control_fd, EV_READ);
    w->control.data = w.get();
    ev_io_start(loop_, &w->control);
    ev_child_init(&w->child, OnChild, w->pid, 0);
    w->child.data = w.get();
    ev_child_start(loop_, &w->child);
    if (!w->retiring) slots_[w->slot].current = w.get();
    workers_.push_back(std::move(w));
  }
  upgraded_ = true;
  return "";
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
  pid_t pid = fork();
  if (pid < 0) {
    LOG_WARNING("fork() for slot %d failed: %s", slot.index, ErrnoText(errno).c_str());
    close(control[0]);
    close(control[1]);
    if (handoff[0] >= 0) close(handoff[0]), close(handoff[1]);
    return nullptr;
  }
  if (pid == 0) {
    // The master's loop lives on in the child's memory and still claims the
    // signals: libev lets a signal belong to one loop, and destroying a loop
    // does not release its signal watchers, so stop them first. Only then
    // can the worker's own loop take SIGTERM and friends.
    for (ev_signal& sig : signals_) ev_signal_stop(loop_, &sig);
    ev_loop_destroy(loop_);
    worker::WorkerSpec spec;
    spec.slot = slot.index;
    spec.master_pid = getppid();
    spec.seq = seq;
    spec.listen_fds = slot.fds;
    spec.listen_fds.insert(spec.listen_fds.end(), shared_fds_.begin(), shared_fds_.end());
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
    for (Slot& other : slots_) {
      if (other.index != slot.index) {
        spec.close_fds.insert(spec.close_fds.end(), other.fds.begin(), other.fds.end());
      }
    }
    spec.options = config_.server;
    spec.store = store_;
    spec.counters = counters_;
    spec.info.bind = config_.bind.empty() ? "" : config_.bind.front();
    spec.info.port = port_;
    spec.info.config_file = config_.config_file;
    spec.info.executable = executable_;
    spec.drain_timeout = config_.drain_timeout;
    // Several heartbeats per timeout: one late heartbeat must not look
    // like a hang.
    spec.heartbeat_interval = std::min(1.0, config_.worker_timeout / 4);
    _exit(worker::RunWorker(spec));
  }
  close(control[1]);
  if (handoff[1] >= 0) close(handoff[1]);
  auto w = std::make_unique<Worker>();
  w->owner = this;
  w->slot = slot.index;
  w->pid = pid;
  w->seq = seq;
  w->control_fd = control[0];
  w->handoff_fd = handoff[0];
  w->started_at = w->last_heartbeat = ev_now(loop_);
  ev_io_init(&w->control, OnControl, w->control_fd, EV_READ);
  w->control.data = w.get();
  ev_io_start(loop_, &w->control);
  ev_child_init(&w->child, OnChild, pid, 0);
  w->child.data = w.get();
  ev_child_start(loop_, &w->child);
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
  if (old != nullptr && !old->retiring) {
    old->retiring = true;
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
  auto* w = static_cast<Worker*>(c->data);
  ev_child_stop(loop, c);
  w->owner->WorkerExited(w, c->rstatus);
}

void Supervisor::WorkerExited(Worker* w, int status) {
  Slot& slot = slots_[w->slot];
  double lived = ev_now(loop_) - w->started_at;
  bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (w->retiring || stopping_) {
    if (clean) {
      LOG_VERBOSE("Worker %d (pid %d) finished", w->slot, static_cast<int>(w->pid));
    } else {
      LOG_WARNING("Worker %d (pid %d) %s while %s", w->slot, static_cast<int>(w->pid),
                  DescribeStatus(status).c_str(), stopping_ ? "stopping" : "retiring");
    }
  } else {
    LOG_WARNING("Worker %d (pid %d) %s after %.1f s", w->slot, static_cast<int>(w->pid),
                DescribeStatus(status).c_str(), lived);
    uint32_t reason = w->timed_out ? 2 : WIFSIGNALED(status) ? 0 : 1;  // kRestartReasonNames
    if (w->slot < static_cast<int>(shm::slots::kMaxTrackedSlots)) {
      Count(shm::slots::RestartSlot(static_cast<uint32_t>(w->slot), reason));
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
    // Back off when workers keep dying young, so a crash loop costs little.
    // But connections keep queueing on the slot's listener (which stays
    // open) while no worker accepts them: a worker that got as far as
    // serving is replaced at once, and even a tight loop of such deaths
    // waits at most kMaxServingBackoff. Only workers that die before they
    // are ready (a start-up that cannot succeed) back off up to kMaxBackoff.
    slot.quick_crashes = lived < kQuickCrash ? slot.quick_crashes + 1 : 0;
    double delay = 0;
    if (!was_ready && slot.quick_crashes > 1) {
      delay = std::min(kMaxBackoff, 0.1 * (1 << std::min(slot.quick_crashes - 2, 10)));
    } else if (was_ready && slot.quick_crashes > 3) {
      delay = std::min(kMaxServingBackoff, 0.05 * (1 << std::min(slot.quick_crashes - 4, 10)));
    }
    if (was_pending && slot.current != nullptr) {
      // A replacement died before it was ready: the old worker still serves.
      roll_queue_.push_front(slot.index);
      if (delay == 0) delay = 0.1;
    }
    ScheduleRespawn(slot, delay);
  }
}

void Supervisor::ScheduleRespawn(Slot& slot, double delay) {
  if (ev_is_active(&slot.respawn)) return;
  if (delay > 0) {
    LOG_NOTICE("Respawning worker %d in %.1f s", slot.index, delay);
  }
  ev_timer_set(&slot.respawn, delay, 0);
  ev_timer_start(loop_, &slot.respawn);
}

void Supervisor::OnRespawn(struct ev_loop*, ev_timer* t, int) {
  auto* slot = static_cast<Slot*>(t->data);
  Supervisor* self = slot->owner;
  if (self->stopping_) return;
  if (slot->current == nullptr && slot->pending == nullptr) {
    if (self->Spawn(*slot, false) == nullptr) self->ScheduleRespawn(*slot, 1.0);
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
    ScheduleRespawn(slot, 1.0);
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

void Supervisor::OnWatchdog(struct ev_loop* loop, ev_timer* t, int) {
  auto* self = static_cast<Supervisor*>(t->data);
  double now = ev_now(loop);
  self->PublishSlots();
  // If this tick itself comes late, the master was held up (a slow disk
  // under the log, a stopped master): the workers' silence is the master's,
  // so judge them afresh from now rather than kill them all.
  if (self->last_watchdog_ != 0 && now - self->last_watchdog_ > self->config_.worker_timeout / 2) {
    LOG_WARNING("Watchdog ran %.1f s late; not judging workers on that gap",
                now - self->last_watchdog_);
    for (auto& w : self->workers_) w->last_heartbeat = now;
  }
  self->last_watchdog_ = now;
  for (auto& w : self->workers_) {
    // A worker inside a long command (KEYS over millions of keys, a huge
    // MSET) or waiting for a stripe another process holds cannot heartbeat,
    // but it bumps its progress word: busy, not hung. Redis has no watchdog
    // and operators expect a slow command to be slow, not fatal.
    if (self->counters_ != nullptr) {
      std::optional<uint64_t> progress = self->counters_->Peek(w->pid, shm::slots::kProgress);
      if (progress && *progress != w->progress) {
        w->progress = *progress;
        w->last_heartbeat = now;
      }
    }
    if (now - w->last_heartbeat > self->config_.worker_timeout) {
      // A hung worker holds its clients (and maybe a store lock) hostage:
      // turn the hang into a death, which the respawn path handles.
      LOG_WARNING("Worker %d (pid %d) silent for %.1f s (no heartbeat, no progress); killing it",
                  w->slot, static_cast<int>(w->pid), now - w->last_heartbeat);
      kill(w->pid, SIGKILL);
      w->timed_out = true;
      w->last_heartbeat = now;  // one kill per timeout period
    }
  }
}

void Supervisor::PublishLiveConfig() {
  std::string payload = worker::EncodeLiveConfig(config_.server, static_cast<int>(log::GetLevel()));
  for (auto& w : workers_) {
    if (int e = SendMessage(w->control_fd, MessageType::kConfig, payload); e != 0) {
      LOG_WARNING("sendmsg(config, worker %d pid %d) failed: %s", w->slot, static_cast<int>(w->pid),
                  ErrnoText(e).c_str());
    }
  }
}

void Supervisor::Reload() {
  LOG_NOTICE("Reloading configuration");
  Notify("RELOADING=1");
  std::vector<char*> args;
  for (std::string& a : argv_) args.push_back(a.data());
  Config fresh;
  // CLI11 prints its own error; the master's log says what happened next.
  int rc = ParseArgs(static_cast<int>(args.size()), args.data(), &fresh);
  std::string restart_only = rc == 0 ? RestartOnlyChange(config_, fresh) : "";
  // A new maxclients needs room under the open file limit, as at start: the
  // master raises it (the new workers inherit it) or lowers maxclients.
  bool fits = rc == 0 && restart_only.empty() && AdjustOpenFilesLimit(&fresh, /*at_start=*/false);
  if (rc != 0 || !restart_only.empty() || !fits) {
    LOG_WARNING("Reload refused: %s; still running with the previous configuration",
                rc != 0 ? "the configuration is invalid"
                : !restart_only.empty()
                    ? ("changing '" + restart_only + "' needs a restart").c_str()
                    : "the open file limit leaves no room for a client");
    Notify("READY=1\nSTATUS=serving (last reload refused)");
    Count(shm::slots::kReloadsFailed);
    return;
  }
  Count(shm::slots::kReloadsOk);
  if (counters_ != nullptr) {
    counters_->SetSlowLogSettings(fresh.slowlog_slower_than, fresh.slowlog_max_len);
  }
  // Memory settings are live: the store reads them from its header.
  if (store_ != nullptr) {
    store_->SetMaxmemory(fresh.maxmemory, shm::Store::LockUse::kNoLocks);
    store_->SetPolicy(PolicyFromName(fresh.maxmemory_policy));
  }
  bool changed = !SameExceptLive(config_, fresh);
  log::Level level;
  if (log::ParseLevel(fresh.log_level, &level)) log::SetLevel(level);
  if (fresh.log_file != config_.log_file) {
    if (std::string e = log::Open(fresh.log_file); !e.empty()) LOG_WARNING("%s", e.c_str());
  }
  config_ = fresh;
  // The old workers take the live settings at once; they serve until their
  // successors are ready.
  PublishLiveConfig();
  // As nginx does, a reload always replaces the workers, changed settings or
  // not: it is how an operator gets fresh worker processes (a leak, a stuck
  // client) without dropping a connection.
  LOG_NOTICE("Reloaded: replacing workers slot by slot%s",
             changed ? " (settings that need new workers changed)" : "");
  roll_queue_.clear();
  for (Slot& s : slots_) roll_queue_.push_back(s.index);
  rolling_ = true;
  RollNext();
}

void Supervisor::SetCloexec(bool on) {
  auto set = [on](int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0) fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC));
  };
  for (Slot& s : slots_) {
    for (int fd : s.fds) set(fd);
  }
  for (int fd : shared_fds_) set(fd);
  for (auto& w : workers_) set(w->control_fd);
}

void Supervisor::Upgrade() {
  for (Slot& s : slots_) {
    if (s.pending != nullptr || s.current == nullptr || !s.current->ready) {
      // The inherited state names each slot's serving worker; a starting
      // one has none yet. Upgrade as soon as every slot serves (RollNext).
      LOG_NOTICE("Upgrade deferred: worker %d is starting; upgrading once every worker serves",
                 s.index);
      upgrade_deferred_ = true;
      return;
    }
  }
  if (executable_.empty() || access(executable_.c_str(), X_OK) != 0) {
    LOG_WARNING("Upgrade refused: cannot execute '%s': %s", executable_.c_str(),
                ErrnoText(errno).c_str());
    return;
  }
  std::ostringstream st;
  st << kInheritVersion << ';' << seq_ << ';' << port_ << ';';
  for (int fd : shared_fds_) st << fd << ',';
  st << ';';
  for (Slot& s : slots_) {
    st << s.index << ':';
    for (int fd : s.fds) st << fd << ',';
    st << '|';
  }
  st << ';';
  for (auto& w : workers_) {
    // Retiring workers too: a lost one would see its control channel close
    // at execve and drop the connections it is still handing over, and a
    // stop would not wait for it.
    st << w->slot << ':' << w->pid << ':' << w->control_fd << ':' << w->seq
       << (w->retiring ? ":r" : "") << '|';
  }
  std::string state = st.str();
  LOG_NOTICE("Upgrading: executing %s", executable_.c_str());
  // The admin process is not handed over: the new image starts its own, on
  // the same port, so this one must be gone first.
  StopAdmin(SIGKILL);
  Notify("RELOADING=1");
  // Signals that arrive during execve stay pending until the new image has
  // its handlers; unblocked they would kill it (default actions).
  sigset_t block, old;
  sigemptyset(&block);
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD}) {
    sigaddset(&block, sig);
  }
  sigprocmask(SIG_BLOCK, &block, &old);
  SetCloexec(false);
  setenv(kInheritEnv, state.c_str(), 1);
  std::vector<char*> args;
  for (std::string& a : argv_) args.push_back(a.data());
  args.push_back(nullptr);
  execve(executable_.c_str(), args.data(), environ);
  int err = errno;
  unsetenv(kInheritEnv);
  SetCloexec(true);
  sigprocmask(SIG_SETMASK, &old, nullptr);
  LOG_WARNING("Upgrade failed: execve(%s) failed: %s; still running", executable_.c_str(),
              ErrnoText(err).c_str());
  Count(shm::slots::kUpgradesFailed);
  SpawnAdmin();
  Notify("READY=1\nSTATUS=serving (upgrade failed)");
}

void Supervisor::Stop() {
  if (stopping_) return;
  stopping_ = true;
  LOG_NOTICE("Stopping: draining %zu worker%s", workers_.size(), workers_.size() == 1 ? "" : "s");
  Notify("STOPPING=1");
  roll_queue_.clear();
  for (Slot& s : slots_) ev_timer_stop(loop_, &s.respawn);
  for (auto& w : workers_) kill(w->pid, SIGTERM);
  StopAdmin(SIGTERM);
  if (AllGone()) {
    ev_break(loop_, EVBREAK_ALL);
    return;
  }
  ev_timer_init(&stop_timer_, OnStopTimeout, config_.drain_timeout + 5, 0);
  stop_timer_.data = this;
  ev_timer_start(loop_, &stop_timer_);
}

void Supervisor::OnStopTimeout(struct ev_loop*, ev_timer* t, int) {
  auto* self = static_cast<Supervisor*>(t->data);
  for (auto& w : self->workers_) {
    LOG_WARNING("Worker %d (pid %d) did not stop in time; killing it", w->slot,
                static_cast<int>(w->pid));
    kill(w->pid, SIGKILL);
  }
  if (self->admin_pid_ != 0) kill(self->admin_pid_, SIGKILL);
}

void Supervisor::OnSignal(struct ev_loop*, ev_signal* s, int) {
  auto* self = static_cast<Supervisor*>(s->data);
  switch (s->signum) {
    case SIGTERM:
    case SIGINT:
    case SIGQUIT:
      self->Stop();
      break;
    case SIGHUP:
      if (!self->stopping_) self->Reload();
      break;
    case SIGUSR2:
      if (!self->stopping_) self->Upgrade();
      break;
    case SIGUSR1:
      if (std::string e = log::Reopen(); !e.empty()) LOG_WARNING("%s", e.c_str());
      // Workers write to the same file through their own descriptors: as
      // nginx does, they reopen it too, or rotation would keep them on the
      // renamed file until the next reload.
      for (auto& w : self->workers_) {
        SendMessage(w->control_fd, MessageType::kReopenLog, {});
      }
      LOG_NOTICE("Log file reopened");
      break;
  }
}

std::string Supervisor::DescribeAddresses() const {
  std::string out;
  for (const std::string& b : config_.bind) {
    if (slots_.empty() || slots_[0].fds.empty()) break;
    if (!out.empty()) out += ", ";
    out += (b.find(':') != std::string::npos ? "[" + b + "]" : b) + ":" + std::to_string(port_);
  }
  if (!config_.unix_socket.empty()) out += (out.empty() ? "" : ", ") + config_.unix_socket;
  return out + " (port " + std::to_string(port_) + ", " + std::to_string(slots_.size()) +
         (slots_.size() == 1 ? " worker)" : " workers)");
}

int Supervisor::Run() {
  log::SetRole('M');
  SetProcTitle("redhubd: master");
  const int sigs[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};
  for (int i = 0; i < 6; i++) {
    ev_signal_init(&signals_[i], OnSignal, sigs[i]);
    signals_[i].data = this;
    ev_signal_start(loop_, &signals_[i]);
  }
  signal(SIGPIPE, SIG_IGN);
  // An upgrade blocked these across execve; the handlers exist now.
  sigset_t unblock;
  sigemptyset(&unblock);
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD}) {
    sigaddset(&unblock, sig);
  }
  sigprocmask(SIG_UNBLOCK, &unblock, nullptr);

  // Four checks a second, so a hang is caught within a quarter second of
  // --worker-timeout, and a short timeout does not race the heartbeat.
  ev_timer_init(&watchdog_, OnWatchdog, 0.25, 0.25);
  watchdog_.data = this;
  ev_timer_start(loop_, &watchdog_);

  // The master's block: after an upgrade, Claim returns the one this pid
  // already owns, so totals carry on.
  if (counters_ != nullptr) master_block_ = counters_->Claim(getpid());
  if (upgraded_) Count(shm::slots::kUpgradesOk);
  PublishSlots();
  started_at_unix_ = static_cast<double>(time(nullptr));
  ev_timer_init(&admin_respawn_, OnAdminRespawn, 0, 0);
  admin_respawn_.data = this;
  SpawnAdmin();

  if (upgraded_) {
    LOG_NOTICE("Upgraded in place (pid %d): replacing inherited workers",
               static_cast<int>(getpid()));
    announced_ready_ = true;
    // A worker that died during execve was never reaped; make libev look.
    ev_feed_signal(SIGCHLD);
    for (Slot& s : slots_) {
      if (s.current == nullptr) {
        ScheduleRespawn(s, 0);
      } else {
        roll_queue_.push_back(s.index);
      }
    }
    rolling_ = true;
    RollNext();
  } else {
    for (Slot& s : slots_) {
      if (Spawn(s, false) == nullptr) ScheduleRespawn(s, 1.0);
    }
  }
  ev_run(loop_, 0);
  LOG_NOTICE("All workers stopped; exiting");
  return 0;
}

void Supervisor::PublishSlots() {
  if (master_block_ == nullptr) return;
  // A slot serves when its worker reported ready and still heartbeats: a
  // hung or stopped worker is not serving even before the watchdog kills it.
  uint64_t serving = 0;
  double now = ev_now(loop_);
  for (const Slot& s : slots_) {
    serving += s.current != nullptr && s.current->ready &&
               now - s.current->last_heartbeat < kStaleHeartbeat;
  }
  master_block_->Set(shm::slots::kConfiguredSlots, slots_.size());
  master_block_->Set(shm::slots::kServingSlots, serving);
}

void Supervisor::Count(uint32_t slot) {
  if (master_block_ != nullptr) master_block_->Add(slot, 1);
}

void Supervisor::SpawnAdmin() {
  if (config_.admin_port == 0 || stopping_ || admin_pid_ != 0 || counters_ == nullptr) return;
  admin::AdminSpec spec;
  spec.bind = config_.admin_bind;
  spec.port = config_.admin_port;
  spec.store_name = config_.shm_name;
  spec.counters_name = config_.shm_name + "-stats";
  spec.master_pid = getpid();
  spec.version = kVersion;
  spec.started_at_unix = started_at_unix_;
  spec.max_clients = static_cast<int>(config_.server.max_clients);
  pid_t pid = fork();
  if (pid < 0) {
    LOG_WARNING("fork() for the admin process failed: %s", ErrnoText(errno).c_str());
    ev_timer_set(&admin_respawn_, 5.0, 0);
    ev_timer_start(loop_, &admin_respawn_);
    return;
  }
  if (pid == 0) {
    for (ev_signal& sig : signals_) ev_signal_stop(loop_, &sig);
    ev_loop_destroy(loop_);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    log::SetRole('A');
    SetProcTitle("redhubd: admin");
    _exit(admin::RunAdmin(spec));
  }
  admin_pid_ = pid;
  admin_started_ = ev_now(loop_);
  ev_child_init(&admin_child_, OnAdminExit, pid, 0);
  admin_child_.data = this;
  ev_child_start(loop_, &admin_child_);
  LOG_VERBOSE("Admin process (pid %d) serving metrics on %s:%u", static_cast<int>(pid),
              config_.admin_bind.c_str(), config_.admin_port);
}

void Supervisor::StopAdmin(int sig) {
  ev_timer_stop(loop_, &admin_respawn_);
  if (admin_pid_ == 0) return;
  kill(admin_pid_, sig);
  if (sig == SIGKILL) {
    // Synchronously: the caller needs the port free (an upgrade).
    ev_child_stop(loop_, &admin_child_);
    waitpid(admin_pid_, nullptr, 0);
    admin_pid_ = 0;
  }
}

void Supervisor::OnAdminExit(struct ev_loop* loop, ev_child* c, int) {
  auto* self = static_cast<Supervisor*>(c->data);
  ev_child_stop(loop, c);
  int status = c->rstatus;
  self->admin_pid_ = 0;
  if (self->stopping_) {
    if (self->AllGone()) ev_break(loop, EVBREAK_ALL);
    return;
  }
  double lived = ev_now(loop) - self->admin_started_;
  LOG_WARNING("Admin process (pid %d) %s after %.1f s", c->rpid, DescribeStatus(status).c_str(),
              lived);
  // A port taken by someone else fails at once, every time: back off.
  self->admin_quick_exits_ = lived < kQuickCrash ? self->admin_quick_exits_ + 1 : 0;
  double delay = std::min(30.0, 0.5 * (1 << std::min(self->admin_quick_exits_, 6)));
  ev_timer_set(&self->admin_respawn_, self->admin_quick_exits_ == 0 ? 0 : delay, 0);
  ev_timer_start(loop, &self->admin_respawn_);
}

void Supervisor::OnAdminRespawn(struct ev_loop*, ev_timer* t, int) {
  static_cast<Supervisor*>(t->data)->SpawnAdmin();
}

}  // namespace redhub::master
