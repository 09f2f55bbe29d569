// The child table's spawn, backoff and exit description (child_table.h).
#include "child_table.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "log.h"
#include "signal_table.h"
#include "syserr.h"
#include "worker_counters.h"

namespace redhub::master {

static_assert(std::size(shm::slots::kRestartReasonNames) == shm::slots::kRestartReasons);
static_assert(static_cast<uint32_t>(RestartReason::kTimeout) + 1 == shm::slots::kRestartReasons,
              "RestartReason indexes the counter slots and kRestartReasonNames");

double RespawnDelay(const BackoffRule& rule, int quick_deaths) {
  if (quick_deaths <= rule.free_deaths) return 0;
  return std::min(rule.cap, rule.base * (1 << std::min(quick_deaths - rule.free_deaths - 1, 10)));
}

double Respawner::NoteDeath(double lived, const BackoffRule& rule) {
  quick_deaths = lived < kQuickDeath ? quick_deaths + 1 : 0;
  return RespawnDelay(rule, quick_deaths);
}

double Respawner::NoteStartFailure(double lived, const BackoffRule& rule) {
  quick_deaths = lived < kQuickDeath ? quick_deaths + 1 : 0;
  start_failures++;
  return RespawnDelay(rule, start_failures);
}

void Respawner::Schedule(struct ev_loop* loop, double delay, const std::string& what) {
  if (ev_is_active(&timer)) return;
  if (delay > 0) LOG_NOTICE("Respawning %s in %.1f s", what.c_str(), delay);
  ev_timer_set(&timer, delay, 0);
  ev_timer_start(loop, &timer);
}

pid_t SpawnChild(struct ev_loop* loop, SignalWatchers& signals, Child* child, std::string_view what,
                 const std::function<int()>& body,
                 void (*on_exit)(struct ev_loop*, ev_child*, int)) {
  pid_t pid = fork();
  if (pid < 0) {
    LOG_WARNING("%s", SysError("fork() for " + std::string(what), errno).c_str());
    return -1;
  }
  if (pid == 0) {
    // The master's loop lives on in the child's memory and still claims the
    // signals: stop them first, so that the child's own loop can take
    // SIGTERM and friends.
    signals.StopAll(loop);
    ev_loop_destroy(loop);
    _exit(body());
  }
  child->pid = pid;
  child->started_at = ev_now(loop);
  child->respawn = true;
  ev_child_init(&child->watcher, on_exit, pid, 0);
  child->watcher.data = child;
  ev_child_start(loop, &child->watcher);
  return pid;
}

RestartReason RestartReasonOf(int status, bool timed_out) {
  if (timed_out) return RestartReason::kTimeout;
  return WIFSIGNALED(status) ? RestartReason::kCrash : RestartReason::kExit;
}

std::string_view NameOf(RestartReason reason) {
  return shm::slots::kRestartReasonNames[static_cast<uint32_t>(reason)];
}

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

}  // namespace redhub::master
