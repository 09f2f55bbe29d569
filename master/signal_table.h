// The master's signals, one row each (nginx's signals[] in
// src/os/unix/ngx_process.c): which signal, what the master does, and
// whether an ev_signal watches it. The handlers only wake libev's loop; the
// loop calls Supervisor::OnSignal, which acts on the row's action.
//   SIGTERM, SIGINT, SIGQUIT  kStop       graceful stop
//   SIGHUP                    kReload     re-read the configuration (reload.cc)
//   SIGUSR2                   kUpgrade    re-execute the binary (upgrade.cc)
//   SIGUSR1                   kReopenLog  reopen the log file, and the workers'
//   SIGCHLD                   kReap       libev's ev_child watchers (child_table.h)
// Every row's signal is blocked across an upgrade's execve (default actions
// would kill the new image before it has handlers) and unblocked by Run.
#pragma once

#include <ev.h>

#include <csignal>
#include <cstddef>
#include <iterator>

namespace redhub::master {

enum class SignalAction { kStop, kReload, kUpgrade, kReopenLog, kReap };

struct SignalRow {
  int signum;
  SignalAction action;
  const char* name;
  // SIGCHLD belongs to libev's child watchers (its default loop installs
  // the handler), so the master adds no ev_signal for it.
  bool watched;
};

inline constexpr SignalRow kSignals[] = {
    {SIGTERM, SignalAction::kStop, "SIGTERM", true},
    {SIGINT, SignalAction::kStop, "SIGINT", true},
    {SIGQUIT, SignalAction::kStop, "SIGQUIT", true},
    {SIGHUP, SignalAction::kReload, "SIGHUP", true},
    {SIGUSR1, SignalAction::kReopenLog, "SIGUSR1", true},
    {SIGUSR2, SignalAction::kUpgrade, "SIGUSR2", true},
    {SIGCHLD, SignalAction::kReap, "SIGCHLD", false},
};

// The row of signum, or nullptr.
const SignalRow* FindSignal(int signum);

// Every row's signal, for sigprocmask.
sigset_t MasterSignalSet();

// The ev_signal watchers of the watched rows; data of each is the owner.
class SignalWatchers {
 public:
  void Start(struct ev_loop* loop, void (*cb)(struct ev_loop*, ev_signal*, int), void* data);
  // In a forked child, before it destroys the master's loop.
  void StopAll(struct ev_loop* loop);

 private:
  ev_signal watchers_[std::size(kSignals)];
  bool started_ = false;
};

}  // namespace redhub::master
