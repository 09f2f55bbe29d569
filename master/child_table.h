// The master's children and the one way they are started and restarted
// (nginx's ngx_processes[] and ngx_spawn_process, src/os/unix/ngx_process.c).
// Every child kind (a worker of a slot, the admin process) is a Child: it is
// forked by SpawnChild, watched by an ev_child, and when it exits with its
// respawn flag still set (nginx's NGX_PROCESS_RESPAWN) it is started again
// after RespawnDelay, the one backoff rule, with a per-kind BackoffRule row.
// The flag is cleared when the child is meant to go: a retiring worker whose
// successor serves the slot, the admin process at a stop or an upgrade.
#pragma once

#include <ev.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace redhub::master {

class Supervisor;
class SignalWatchers;

enum class ChildKind : uint8_t { kWorker, kAdmin };

struct Child {
  ChildKind kind = ChildKind::kWorker;
  Supervisor* owner = nullptr;
  pid_t pid = 0;
  double started_at = 0;  // ev_now at fork
  bool respawn = true;    // restart it when it exits (see above)
  ev_child watcher;
};

// A child that exits younger than this counts as a quick death, one more
// towards its backoff; an older one resets the count.
inline constexpr double kQuickDeath = 5.0;
// A fork() that failed (EAGAIN, ENOMEM) is retried after this long.
inline constexpr double kSpawnRetry = 1.0;

// delay = 0 for the first free_deaths quick deaths in a row, then base,
// doubling with each further one, at most cap.
struct BackoffRule {
  int free_deaths;
  double base;
  double cap;
};

// Workers of a slot that die before they are ready, again and again since
// the slot last had a ready one, are a start-up that cannot succeed (a bad
// setting, no memory): back off up to 10 s. Counted apart from the quick
// deaths of serving workers, so that a slot whose serving workers were
// killed many times in a row does not wait 10 s for one that was killed
// while starting (its listener queues connections all that time).
inline constexpr BackoffRule kWorkerStartingBackoff{1, 0.1, 10.0};
// One that got as far as serving is replaced almost at once even in a tight
// loop: connections keep queueing on the slot's listener (which stays open)
// while no worker accepts them, so it waits at most half a second.
inline constexpr BackoffRule kWorkerServingBackoff{3, 0.05, 0.5};
// The admin process fails at once, every time, when its port is taken.
inline constexpr BackoffRule kAdminBackoff{0, 1.0, 30.0};

double RespawnDelay(const BackoffRule& rule, int quick_deaths);

// The respawn state of one place a child runs in (a worker slot, the admin
// process): its quick deaths in a row and the timer that restarts it.
struct Respawner {
  int quick_deaths = 0;
  int start_failures = 0;  // children dead before ready since the last ready one
  ev_timer timer;

  // Counts the death of a child that lived `lived` seconds; returns how long
  // to wait before the next one.
  double NoteDeath(double lived, const BackoffRule& rule);
  // A child died before it was ready: the wait by `rule` over the start
  // failures in a row (NoteReady ends the row).
  double NoteStartFailure(double lived, const BackoffRule& rule);
  void NoteReady() { start_failures = 0; }
  // Starts the timer unless it already runs; logs "Respawning <what> in
  // <delay> s" when there is a wait.
  void Schedule(struct ev_loop* loop, double delay, const std::string& what);
};

// nginx's ngx_spawn_process: forks. The child releases the master's loop and
// signal watchers (libev lets a signal belong to one loop, and destroying a
// loop does not release its watchers), runs body and _exits with its
// result. The parent records the pid and start time in *child and watches
// it with on_exit (child->watcher.data = child). Returns the pid, or -1
// after logging fork()'s error with `what`.
pid_t SpawnChild(struct ev_loop* loop, SignalWatchers& signals, Child* child, std::string_view what,
                 const std::function<int()>& body,
                 void (*on_exit)(struct ev_loop*, ev_child*, int));

// Why a worker was restarted, as counted in the master's block
// (shm/worker_counters.h RestartSlot) and logged.
enum class RestartReason : uint32_t {
  kCrash = 0,    // killed by a signal
  kExit = 1,     // exited on its own
  kTimeout = 2,  // killed by the watchdog
};
RestartReason RestartReasonOf(int status, bool timed_out);
std::string_view NameOf(RestartReason reason);

// "exited with code 1", "killed by signal 9 (Killed)", ", core dumped".
std::string DescribeStatus(int status);

}  // namespace redhub::master
