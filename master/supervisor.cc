// The supervisor's life: start (listeners or an inheritance), the run loop
// and its signal actions, the watchdog, a graceful stop, the master's
// counters and the admin process. A slot's workers are workers.cc, reload
// and upgrade are reload.cc and upgrade.cc.
#include "supervisor.h"

#include <openssl/ssl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <optional>

#include "acl_setup.h"
#include "admin.h"
#include "channel.h"
#include "counters.h"
#include "log.h"
#include "net.h"
#include "notify.h"
#include "proctitle.h"
#include "syserr.h"
#include "version.h"
#include "worker_counters.h"

namespace redhub::master {
namespace {

// Workers heartbeat every second; one silent this long is not serving.
constexpr double kStaleHeartbeat = 2.5;

// Every bind address on port.
std::string TcpAddresses(const Config& config, uint16_t port, std::vector<Address>* out) {
  for (const std::string& host : config.bind) {
    Address a;
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    if (std::string e = ParseAddress(h + ":" + std::to_string(port), &a); !e.empty()) {
      return "invalid bind address '" + host + "': " + e;
    }
    out->push_back(a);
  }
  return "";
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
    for (int fd : s.tls_fds) close(fd);
  }
  for (int fd : shared_fds_) close(fd);
  if (tls_ctx_ != nullptr) SSL_CTX_free(tls_ctx_);
}

std::string Supervisor::LoadTls(const Config& config) {
  if (config.tls_port == 0) return "";
  std::string error;
  SSL_CTX* fresh = worker::MakeTlsContext(config.tls, &error);
  if (fresh == nullptr) return error;
  // Workers already forked have their own copy of the old one.
  if (tls_ctx_ != nullptr) SSL_CTX_free(tls_ctx_);
  tls_ctx_ = fresh;
  return "";
}

namespace {

// What the admin process takes from the configuration.
admin::AdminSpec AdminSpecOf(const Config& config) {
  admin::AdminSpec spec;
  spec.bind = config.admin_bind;
  spec.port = config.admin_port;
  spec.auth_user = config.admin_auth_user;
  spec.auth_password_file = config.admin_auth_password_file;
  spec.auth_token_file = config.admin_auth_token_file;
  spec.tls_cert_file = config.admin_tls_cert_file;
  spec.tls_key_file = config.admin_tls_key_file;
  return spec;
}

}  // namespace

std::string Supervisor::Init() {
  slots_.resize(config_.workers);
  for (int i = 0; i < config_.workers; i++) {
    slots_[i].index = i;
    slots_[i].owner = this;
    ev_timer_init(&slots_[i].respawner.timer, OnRespawn, 0, 0);
    slots_[i].respawner.timer.data = &slots_[i];
  }
  // Format 2 from a binary that writes it, else format 1 from a previous one.
  const char* inherited = getenv(kUpgradeStateEnv);
  if (inherited == nullptr) inherited = getenv(kLegacyUpgradeStateEnv);
  // Before any socket: a certificate that does not load stops the start here.
  std::string err = LoadTls(config_);
  if (!err.empty()) return err;
  // The admin endpoint's files, read as the admin process will read them:
  // a bad one fails the start here, not the admin process over and over.
  // Not after an upgrade: the old image is gone, and the workers serve on
  // without the admin process (which logs why it cannot start).
  if (inherited == nullptr && config_.admin_port != 0) {
    if (err = admin::CheckAdminSpec(AdminSpecOf(config_)); !err.empty()) return err;
  }
  if (inherited != nullptr) {
    std::string state = inherited;
    unsetenv(kUpgradeStateEnv);  // workers must not see them
    unsetenv(kLegacyUpgradeStateEnv);
    err = Inherit(state);
  } else {
    err = CreateListeners();
  }
  // The users, before any worker (an upgrade from a binary without users
  // starts them afresh).
  if (err.empty() && !acl_) {
    acl_ = CreateAcl(config_, &err);
    if (!acl_ && !err.empty()) err = "users: " + err;
  }
  if (err.empty() && !scripts_) {
    scripts_ = shm::ScriptArea::Create({}, &err);
    if (!scripts_) err = "scripts: " + err;
  }
  return err;
}

std::string Supervisor::CreateListeners() {
  std::vector<Address> tcp;
  // As in Redis, port 0 means no plaintext TCP.
  if (config_.port != 0) {
    if (std::string e = TcpAddresses(config_, config_.port, &tcp); !e.empty()) return e;
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
  if (std::string e = CreateTlsListeners(); !e.empty()) return e;
  if (slots_.empty() ||
      (slots_[0].fds.empty() && slots_[0].tls_fds.empty() && shared_fds_.empty())) {
    return "nothing to listen on: give --port, --tls-port or --unixsocket";
  }
  return "";
}

std::string Supervisor::CreateTlsListeners() {
  if (config_.tls_port == 0) return "";
  std::vector<Address> tls;
  if (std::string e = TcpAddresses(config_, config_.tls_port, &tls); !e.empty()) return e;
  ListenOptions lo;
  lo.backlog = config_.server.listen_backlog;
  lo.reuse_port = true;
  // As the plaintext ones: one per slot, open for the master's whole life,
  // so that no worker's exit resets a connection queued on it.
  for (Slot& slot : slots_) {
    for (Address& a : tls) {
      std::string e;
      int fd = Listen(a, lo, &e);
      if (fd < 0) return "tls-port: " + e;
      slot.tls_fds.push_back(fd);
    }
  }
  return "";
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

void Supervisor::Stop() {
  if (stopping_) return;
  stopping_ = true;
  LOG_NOTICE("Stopping: draining %zu worker%s", workers_.size(), workers_.size() == 1 ? "" : "s");
  Notify("STOPPING=1");
  roll_queue_.clear();
  for (Slot& s : slots_) ev_timer_stop(loop_, &s.respawner.timer);
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
  if (self->admin_.pid != 0) kill(self->admin_.pid, SIGKILL);
}

void Supervisor::OnSignal(struct ev_loop*, ev_signal* s, int) {
  if (const SignalRow* row = FindSignal(s->signum))
    static_cast<Supervisor*>(s->data)->Act(row->action);
}

void Supervisor::Act(SignalAction action) {
  switch (action) {
    case SignalAction::kStop:
      Stop();
      break;
    case SignalAction::kReload:
      if (!stopping_) Reload();
      break;
    case SignalAction::kUpgrade:
      if (!stopping_) Upgrade();
      break;
    case SignalAction::kReopenLog:
      ReopenLog();
      break;
    case SignalAction::kReap:
      break;  // libev's ev_child watchers: OnChild, OnAdminExit
  }
}

void Supervisor::ReopenLog() {
  if (std::string e = log::Reopen(); !e.empty()) LOG_WARNING("%s", e.c_str());
  // Workers write to the same file through their own descriptors: as nginx
  // does, they reopen it too, or rotation would keep them on the renamed
  // file until the next reload.
  for (auto& w : workers_) {
    if (int e = SendMessage(w->control_fd, MessageType::kReopenLog, {}); e != 0) {
      LOG_WARNING("sendmsg(reopen log, worker %d pid %d) failed: %s", w->slot,
                  static_cast<int>(w->pid), ErrnoText(e).c_str());
    }
  }
  LOG_NOTICE("Log file reopened");
}

std::string Supervisor::DescribeAddresses() const {
  std::string out;
  for (const std::string& b : config_.bind) {
    if (slots_.empty() || slots_[0].fds.empty()) break;
    if (!out.empty()) out += ", ";
    out += (b.find(':') != std::string::npos ? "[" + b + "]" : b) + ":" + std::to_string(port_);
  }
  for (const std::string& b : config_.bind) {
    if (slots_.empty() || slots_[0].tls_fds.empty()) break;
    if (!out.empty()) out += ", ";
    out += "tls://" + (b.find(':') != std::string::npos ? "[" + b + "]" : b) + ":" +
           std::to_string(config_.tls_port);
  }
  if (!config_.unix_socket.empty()) out += (out.empty() ? "" : ", ") + config_.unix_socket;
  return out + " (port " + std::to_string(port_) + ", " + std::to_string(slots_.size()) +
         (slots_.size() == 1 ? " worker)" : " workers)");
}

int Supervisor::Run() {
  log::SetRole('M');
  SetProcTitle("redhubd: master");
  signals_.Start(loop_, OnSignal, this);
  signal(SIGPIPE, SIG_IGN);
  // An upgrade blocked these across execve; the handlers exist now.
  sigset_t unblock = MasterSignalSet();
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
  admin_.kind = ChildKind::kAdmin;
  admin_.owner = this;
  ev_timer_init(&admin_respawner_.timer, OnAdminRespawn, 0, 0);
  admin_respawner_.timer.data = this;
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
      if (Spawn(s, false) == nullptr) ScheduleRespawn(s, kSpawnRetry);
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
  if (config_.admin_port == 0 || stopping_ || admin_.pid != 0 || counters_ == nullptr) return;
  admin::AdminSpec spec = AdminSpecOf(config_);
  spec.store_name = config_.shm_name;
  spec.counters_name = config_.shm_name + "-stats";
  spec.master_pid = getpid();
  spec.version = kVersion;
  spec.started_at_unix = started_at_unix_;
  spec.max_clients = static_cast<int>(config_.server.max_clients);
  pid_t pid = SpawnChild(
      loop_, signals_, &admin_, "the admin process",
      [&spec] {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        log::SetRole('A');
        SetProcTitle("redhubd: admin");
        return admin::RunAdmin(spec);
      },
      OnAdminExit);
  if (pid < 0) {
    admin_respawner_.Schedule(loop_, kSpawnRetry, "the admin process");
    return;
  }
  LOG_VERBOSE("Admin process (pid %d) serving metrics on %s:%u", static_cast<int>(pid),
              config_.admin_bind.c_str(), config_.admin_port);
}

void Supervisor::StopAdmin(int sig) {
  ev_timer_stop(loop_, &admin_respawner_.timer);
  if (admin_.pid == 0) return;
  admin_.respawn = false;
  kill(admin_.pid, sig);
  if (sig == SIGKILL) {
    // Synchronously: the caller needs the port free (an upgrade).
    ev_child_stop(loop_, &admin_.watcher);
    if (waitpid(admin_.pid, nullptr, 0) < 0) {
      LOG_WARNING("%s",
                  SysError("waitpid(admin pid " + std::to_string(admin_.pid) + ")", errno).c_str());
    }
    admin_.pid = 0;
  }
}

void Supervisor::OnAdminExit(struct ev_loop* loop, ev_child* c, int) {
  auto* admin = static_cast<Child*>(c->data);
  Supervisor* self = admin->owner;
  ev_child_stop(loop, c);
  int status = c->rstatus;
  admin->pid = 0;
  if (self->stopping_ || !admin->respawn) {
    if (self->AllGone()) ev_break(loop, EVBREAK_ALL);
    return;
  }
  double lived = ev_now(loop) - admin->started_at;
  LOG_WARNING("Admin process (pid %d) %s after %.1f s", c->rpid, DescribeStatus(status).c_str(),
              lived);
  double delay = self->admin_respawner_.NoteDeath(lived, kAdminBackoff);
  self->admin_respawner_.Schedule(loop, delay, "the admin process");
}

void Supervisor::OnAdminRespawn(struct ev_loop*, ev_timer* t, int) {
  static_cast<Supervisor*>(t->data)->SpawnAdmin();
}

}  // namespace redhub::master
