// The signal table's watchers and mask (signal_table.h).
#include "signal_table.h"

namespace redhub::master {

const SignalRow* FindSignal(int signum) {
  for (const SignalRow& row : kSignals) {
    if (row.signum == signum) return &row;
  }
  return nullptr;
}

sigset_t MasterSignalSet() {
  sigset_t set;
  sigemptyset(&set);
  for (const SignalRow& row : kSignals) sigaddset(&set, row.signum);
  return set;
}

void SignalWatchers::Start(struct ev_loop* loop, void (*cb)(struct ev_loop*, ev_signal*, int),
                           void* data) {
  for (size_t i = 0; i < std::size(kSignals); i++) {
    if (!kSignals[i].watched) continue;
    ev_signal_init(&watchers_[i], cb, kSignals[i].signum);
    watchers_[i].data = data;
    ev_signal_start(loop, &watchers_[i]);
  }
  started_ = true;
}

void SignalWatchers::StopAll(struct ev_loop* loop) {
  if (!started_) return;
  for (size_t i = 0; i < std::size(kSignals); i++) {
    if (kSignals[i].watched) ev_signal_stop(loop, &watchers_[i]);
  }
}

}  // namespace redhub::master
