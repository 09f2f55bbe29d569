// The master process: owns the listening sockets (one SO_REUSEPORT socket
// per worker slot and address, open for the master's whole life, because
// closing a reuseport listener resets every connection queued on it), forks
// and supervises one worker per slot and the admin process, and acts on
// signals (nginx's conventions; the table is signal_table.h):
//   SIGTERM, SIGINT, SIGQUIT  graceful stop
//   SIGHUP                    reload: the configuration is re-read (a bad
//                             one is refused and logged), live settings are
//                             published, and, as in nginx, the workers are
//                             always replaced slot by slot, their connections
//                             moving to the new workers
//   SIGUSR2                   binary upgrade: re-execute in place (same PID)
//                             with the sockets and workers inherited, then
//                             replace the workers as in a reload
//   SIGUSR1                   reopen the log file
// It is single-threaded (libev's default loop with ev_signal and ev_child),
// never serves clients and never takes store locks, so it can always fork.
//
// The class is implemented by concept: supervisor.cc (start, run, stop,
// watchdog, the admin process), workers.cc (a slot's worker: spawn, ready,
// exit, respawn, the slot-by-slot roll), reload.cc, upgrade.cc; the child
// table and backoff are child_table.h.
#pragma once

#include <ev.h>

#include <deque>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "acl_area.h"
#include "child_table.h"
#include "config.h"
#include "script_area.h"
#include "signal_table.h"
#include "upgrade_state.h"
#include "worker_process.h"

namespace redhub::shm {
class Store;
class CounterArea;
class CounterBlock;
}  // namespace redhub::shm

namespace redhub::master {

class Supervisor {
 public:
  // argv is the original command line, re-read on SIGHUP and re-executed on
  // SIGUSR2.
  Supervisor(Config config, std::vector<std::string> argv);
  ~Supervisor();

  // Creates the listening sockets, or takes them and the running workers
  // over from the previous binary after an upgrade. Returns "" or the error.
  std::string Init();
  // Runs until a graceful stop completes. Returns the exit code.
  int Run();

  // The shared store every worker serves; mapped before the first fork so
  // that workers inherit the mapping. Must outlive Run().
  void set_store(shm::Store* store) { store_ = store; }
  void set_counters(shm::CounterArea* counters) { counters_ = counters; }

  // The TCP port actually bound (for --port 0).
  uint16_t port() const { return port_; }

 private:
  // A worker process: a Child of kind kWorker. Its respawn flag is cleared
  // when it retires (its successor serves the slot).
  struct Worker : Child {
    int slot = 0;
    uint64_t seq = 0;
    int control_fd = -1;
    int handoff_fd = -1;  // our end for the predecessor, until this one is ready
    ev_io control;
    double last_heartbeat = 0;  // or the last time its progress word moved
    uint64_t progress = 0;      // its progress word (shm/progress.h) as last read
    bool ready = false;
    bool timed_out = false;  // killed by the watchdog
    bool retiring() const { return !respawn; }
  };
  struct Slot {
    int index = 0;
    std::vector<int> fds;
    std::vector<int> tls_fds;  // tls-port's listeners, served with tls_ctx_
    Worker* current = nullptr;
    Worker* pending = nullptr;  // spawned, not ready yet
    Respawner respawner;        // backoff over this slot's workers
    Supervisor* owner = nullptr;
  };

  static void OnSignal(struct ev_loop* loop, ev_signal* w, int events);
  static void OnChild(struct ev_loop* loop, ev_child* w, int events);
  static void OnControl(struct ev_loop* loop, ev_io* w, int events);
  static void OnRespawn(struct ev_loop* loop, ev_timer* w, int events);
  static void OnWatchdog(struct ev_loop* loop, ev_timer* w, int events);
  static void OnStopTimeout(struct ev_loop* loop, ev_timer* w, int events);
  static void OnAdminExit(struct ev_loop* loop, ev_child* w, int events);
  static void OnAdminRespawn(struct ev_loop* loop, ev_timer* w, int events);

  // What the signal table's action for a signal does.
  void Act(SignalAction action);
  void ReopenLog();

  // The admin process (admin/): metrics and health over HTTP, in a child of
  // its own so that the master never hosts its threads.
  void SpawnAdmin();
  void StopAdmin(int sig);
  // The master's own figures (worker_counters.h): slots configured and
  // serving, reloads, upgrades, restarts.
  void PublishSlots();
  void Count(uint32_t slot);
  bool AllGone() const { return workers_.empty() && admin_.pid == 0; }

  std::string CreateListeners();
  // One SO_REUSEPORT socket per slot and bind address on tls-port.
  std::string CreateTlsListeners();
  // Loads the TLS files of config into a new context for the workers
  // forked from now on (the running ones keep theirs). "" or the error; the
  // current context stays if it fails.
  std::string LoadTls(const Config& config);
  // Whether the command line parses and its TLS files load, as the new
  // image of an upgrade will need: "" or why not.
  std::string CheckTlsOfCommandLine();
  std::string Inherit(const std::string& text);
  std::string AdoptWorkers(const UpgradeState& state);
  UpgradeState CurrentState() const;
  Worker* Spawn(Slot& slot, bool hand_over);
  // The child's side of Spawn: what RunWorker gets, built after fork().
  worker::WorkerSpec MakeWorkerSpec(const Slot& slot, uint64_t seq, const int control[2],
                                    const int handoff[2]);
  void WorkerReady(Worker* w);
  void WorkerExited(Worker* w, int status);
  void ScheduleRespawn(Slot& slot, double delay);
  void RollNext();
  void Reload();
  void Upgrade();
  void Stop();
  void SetCloexec(bool on);
  void PublishLiveConfig();
  // The settings table's CONFIG GET list, with the port actually bound.
  worker::ConfigParameterList ReportedConfigParameters() const;
  void ApplyLiveSettings(const Config& fresh);
  std::string DescribeAddresses() const;

  Config config_;
  shm::Store* store_ = nullptr;
  shm::CounterArea* counters_ = nullptr;
  // The users (acl_setup.h): made in Init, or handed over by an upgrade.
  std::unique_ptr<shm::AclArea> acl_;
  // The scripts and function libraries (shm/script_area.h): likewise.
  std::unique_ptr<shm::ScriptArea> scripts_;
  shm::CounterBlock* master_block_ = nullptr;
  Child admin_;  // pid 0 when not running
  Respawner admin_respawner_;
  double started_at_unix_ = 0;
  std::vector<std::string> argv_;
  std::string executable_;
  struct ev_loop* loop_;
  std::vector<Slot> slots_;
  std::list<std::unique_ptr<Worker>> workers_;
  std::vector<int> shared_fds_;  // listeners every slot serves (unix socket)
  // The TLS context new workers inherit (fork); replaced at every reload.
  SSL_CTX* tls_ctx_ = nullptr;
  std::deque<int> roll_queue_;  // slots waiting to be replaced
  bool rolling_ = false;        // a reload or upgrade is replacing workers
  uint64_t seq_ = 0;
  uint16_t port_ = 0;
  bool stopping_ = false;
  bool announced_ready_ = false;
  bool upgraded_ = false;
  bool upgrade_deferred_ = false;  // SIGUSR2 came while a worker was starting
  SignalWatchers signals_;
  ev_timer watchdog_;
  double last_watchdog_ = 0;  // when OnWatchdog last ran
  ev_timer stop_timer_;
};

}  // namespace redhub::master
