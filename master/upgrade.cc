// SIGUSR2: the binary upgrade. The master re-executes the binary now at its
// path, in place (same pid, so systemd and the workers' parent-death signal
// are unaffected), handing the new image the listening sockets and the
// running workers through the environment (upgrade_state.h). The new image
// adopts them (Inherit) and then replaces the workers as a reload does.
#include <fcntl.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cerrno>

#include "acl_setup.h"
#include "log.h"
#include "notify.h"
#include "supervisor.h"
#include "syserr.h"
#include "worker_counters.h"

extern char** environ;

namespace redhub::master {
namespace {

// Sets or clears FD_CLOEXEC; "" or the failed call.
std::string SetFdCloexec(int fd, bool on) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return SysError("fcntl(" + std::to_string(fd) + ", F_GETFD)", errno);
  if (fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC)) < 0) {
    return SysError("fcntl(" + std::to_string(fd) + ", F_SETFD)", errno);
  }
  return "";
}

}  // namespace

std::string Supervisor::CheckTlsOfCommandLine() {
  std::vector<char*> args;
  for (std::string& a : argv_) args.push_back(a.data());
  Config fresh;
  if (ParseArgs(static_cast<int>(args.size()), args.data(), &fresh) != 0) {
    return "the configuration is invalid";
  }
  if (fresh.tls_port == 0) return "";
  std::string error;
  SSL_CTX* ctx = worker::MakeTlsContext(fresh.tls, &error);
  if (ctx == nullptr) return error;
  SSL_CTX_free(ctx);
  return "";
}

UpgradeState Supervisor::CurrentState() const {
  UpgradeState st;
  st.seq = seq_;
  st.port = port_;
  st.shared_fds = shared_fds_;
  st.acl_fd = acl_ ? acl_->fd() : -1;
  st.script_fd = scripts_ ? scripts_->fd() : -1;
  for (const Slot& s : slots_) st.slots.push_back({s.index, s.fds, s.tls_fds});
  // Retiring workers too: a lost one would see its control channel close
  // at execve and drop the connections it is still handing over, and a
  // stop would not wait for it.
  for (const auto& w : workers_) {
    st.workers.push_back({w->slot, w->pid, w->control_fd, w->seq, w->retiring()});
  }
  return st;
}

std::string Supervisor::Inherit(const std::string& text) {
  UpgradeState st;
  std::string why;
  if (!DecodeUpgradeState(text, &st, &why)) {
    // Misreading it would serve on the wrong descriptors or adopt the wrong
    // pids: better to stop (the workers follow, PR_SET_PDEATHSIG) and let
    // the service manager start afresh.
    return std::string("cannot read ") + kUpgradeStateEnv +
           " (from an incompatible binary?): " + why;
  }
  seq_ = st.seq;
  port_ = st.port;
  shared_fds_ = st.shared_fds;
  if (st.acl_fd >= 0) {
    if (std::string e = SetFdCloexec(st.acl_fd, true); !e.empty()) return "inherited users: " + e;
    std::string e;
    acl_ = AdoptAcl(st.acl_fd, config_, &e);
    if (!acl_) return "inherited users: " + e;
  }
  if (st.script_fd >= 0) {
    if (std::string e = SetFdCloexec(st.script_fd, true); !e.empty()) {
      return "inherited scripts: " + e;
    }
    std::string e;
    scripts_ = shm::ScriptArea::Adopt(st.script_fd, &e);
    if (!scripts_) return "inherited scripts: " + e;
  }
  for (const UpgradeState::Slot& s : st.slots) {
    if (s.index < 0 || s.index >= static_cast<int>(slots_.size())) {
      return "the previous binary had more worker slots; the worker count cannot change";
    }
    slots_[s.index].fds = s.fds;
    slots_[s.index].tls_fds = s.tls_fds;
  }
  for (int fd : shared_fds_) {
    if (std::string e = SetFdCloexec(fd, true); !e.empty()) return "inherited socket: " + e;
  }
  for (Slot& s : slots_) {
    if (s.fds.empty() && s.tls_fds.empty() && shared_fds_.empty()) {
      return "slot " + std::to_string(s.index) + " has no inherited socket";
    }
    for (int fd : s.fds) {
      if (std::string e = SetFdCloexec(fd, true); !e.empty()) return "inherited socket: " + e;
    }
    for (int fd : s.tls_fds) {
      if (std::string e = SetFdCloexec(fd, true); !e.empty()) return "inherited socket: " + e;
    }
  }
  // From a binary without TLS, or one run without tls-port: the sockets are
  // made now (queued connections are lost only on sockets that existed).
  if (config_.tls_port != 0 && !slots_.empty() && slots_[0].tls_fds.empty()) {
    if (std::string e = CreateTlsListeners(); !e.empty()) return e;
  }
  if (std::string e = AdoptWorkers(st); !e.empty()) return e;
  upgraded_ = true;
  return "";
}

std::string Supervisor::AdoptWorkers(const UpgradeState& st) {
  double now = ev_now(loop_);
  for (const UpgradeState::Worker& inherited : st.workers) {
    if (inherited.slot < 0 || inherited.slot >= static_cast<int>(slots_.size())) {
      LOG_WARNING("Inherited worker pid %d has slot %d, beyond the %zu slots; not adopted",
                  static_cast<int>(inherited.pid), inherited.slot, slots_.size());
      continue;
    }
    // A master closes a worker's control channel only when it has reaped
    // the worker, so an entry whose channel is not open names a worker that
    // is gone: the previous binaries listed such workers after a roll (an
    // upgrade back to this binary was then refused, and the daemon went
    // down). There is nothing to adopt; the slot's live worker, if any, is
    // another entry.
    if (std::string e = SetFdCloexec(inherited.control_fd, true); !e.empty()) {
      LOG_WARNING("Inherited worker pid %d of slot %d is gone (control channel: %s); not adopted",
                  static_cast<int>(inherited.pid), inherited.slot, e.c_str());
      continue;
    }
    auto w = std::make_unique<Worker>();
    w->kind = ChildKind::kWorker;
    w->owner = this;
    w->slot = inherited.slot;
    w->pid = inherited.pid;
    w->control_fd = inherited.control_fd;
    w->seq = inherited.seq;
    w->ready = true;
    w->respawn = !inherited.retiring;
    w->started_at = w->last_heartbeat = now;
    ev_io_init(&w->control, OnControl, w->control_fd, EV_READ);
    w->control.data = w.get();
    ev_io_start(loop_, &w->control);
    ev_child_init(&w->watcher, OnChild, w->pid, 0);
    w->watcher.data = static_cast<Child*>(w.get());
    ev_child_start(loop_, &w->watcher);
    if (!w->retiring()) slots_[w->slot].current = w.get();
    workers_.push_back(std::move(w));
  }
  return "";
}

void Supervisor::SetCloexec(bool on) {
  auto set = [on](int fd) {
    if (std::string e = SetFdCloexec(fd, on); !e.empty()) LOG_WARNING("%s", e.c_str());
  };
  for (Slot& s : slots_) {
    for (int fd : s.fds) set(fd);
    for (int fd : s.tls_fds) set(fd);
  }
  for (int fd : shared_fds_) set(fd);
  for (auto& w : workers_) set(w->control_fd);
  if (acl_) set(acl_->fd());
  if (scripts_) set(scripts_->fd());
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
  // The new image loads the TLS files at its start, and there is no coming
  // back from execve if they fail to load: try them here first.
  if (std::string e = CheckTlsOfCommandLine(); !e.empty()) {
    LOG_WARNING("Upgrade refused: %s; still running", e.c_str());
    Count(shm::slots::kUpgradesFailed);
    return;
  }
  const UpgradeState current = CurrentState();
  std::string state = EncodeUpgradeState(current);
  std::string legacy_state = EncodeUpgradeStateFormat1(current);
  LOG_NOTICE("Upgrading: executing %s", executable_.c_str());
  // The admin process is not handed over: the new image starts its own, on
  // the same port, so this one must be gone first.
  StopAdmin(SIGKILL);
  Notify("RELOADING=1");
  // Signals that arrive during execve stay pending until the new image has
  // its handlers; unblocked they would kill it (default actions).
  sigset_t block = MasterSignalSet(), old;
  sigprocmask(SIG_BLOCK, &block, &old);
  SetCloexec(false);
  setenv(kUpgradeStateEnv, state.c_str(), 1);
  setenv(kLegacyUpgradeStateEnv, legacy_state.c_str(), 1);
  std::vector<char*> args;
  for (std::string& a : argv_) args.push_back(a.data());
  args.push_back(nullptr);
  execve(executable_.c_str(), args.data(), environ);
  int err = errno;
  unsetenv(kUpgradeStateEnv);
  unsetenv(kLegacyUpgradeStateEnv);
  SetCloexec(true);
  sigprocmask(SIG_SETMASK, &old, nullptr);
  LOG_WARNING("Upgrade failed: execve(%s) failed: %s; still running", executable_.c_str(),
              ErrnoText(err).c_str());
  Count(shm::slots::kUpgradesFailed);
  SpawnAdmin();
  Notify("READY=1\nSTATUS=serving (upgrade failed)");
}

}  // namespace redhub::master
