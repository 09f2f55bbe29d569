// redhubd: start-up in dependency order, tear-down in reverse.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "config.h"
#include "counters.h"
#include "fd_limit.h"
#include "log.h"
#include "proctitle.h"
#include "segment_cleanup.h"
#include "store_setup.h"
#include "supervisor.h"
#include "syserr.h"
#include "upgrade_state.h"
#include "worker_counters.h"

namespace {

// Detaches from the terminal: fork (the parent exits), new session, stdio to
// /dev/null (logs go to --logfile).
bool Daemonize() {
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "redhubd: fork() failed: %s\n", redhub::ErrnoText(errno).c_str());
    return false;
  }
  if (pid > 0) _exit(0);
  if (setsid() < 0) {
    fprintf(stderr, "redhubd: setsid() failed: %s\n", redhub::ErrnoText(errno).c_str());
    return false;
  }
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO) close(fd);
  }
  return true;
}

bool WritePidFile(const std::string& path) {
  FILE* f = fopen(path.c_str(), "w");
  if (f == nullptr) {
    LOG_WARNING("fopen(\"%s\") for the pid file failed: %s", path.c_str(),
                redhub::ErrnoText(errno).c_str());
    return false;
  }
  fprintf(f, "%d\n", static_cast<int>(getpid()));
  fclose(f);
  return true;
}

// The log as configured, then detaching (--daemonize; not again after an
// upgrade, whose image is already detached). 0 to go on, else the exit code.
int StartLogging(const redhub::master::Config& config, bool upgraded) {
  using namespace redhub;
  log::Level level;
  log::ParseLevel(config.log_level, &level);
  log::SetLevel(level);
  log::SetRole('M');
  if (std::string err = log::Open(config.log_file); !err.empty()) {
    fprintf(stderr, "redhubd: %s\n", err.c_str());
    return 1;
  }
  if (config.daemonize && !upgraded) {
    if (config.log_file.empty()) {
      fprintf(stderr, "redhubd: --daemonize needs --logfile (stderr goes to /dev/null)\n");
      return 2;
    }
    if (!Daemonize()) return 1;
  }
  return 0;
}

// Counter blocks: one per live worker, summed by INFO and the admin
// process. After an upgrade the totals so far are kept, not reset.
std::unique_ptr<redhub::shm::CounterArea> OpenCounters(const std::string& name,
                                                       const redhub::master::Config& config,
                                                       bool upgraded, std::string* error) {
  using namespace redhub;
  std::unique_ptr<shm::CounterArea> counters =
      upgraded ? shm::CounterArea::Attach(name, error) : nullptr;
  if (counters) return counters;
  shm::CounterAreaOptions co;
  co.counters = shm::slots::kSlots;
  co.gauges = shm::slots::kGauges;
  co.blocks = static_cast<uint32_t>(std::max(64, config.workers * 4 + 8));
  return shm::CounterArea::Create(name, co, error);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace redhub;
  std::vector<std::string> args = InitProcTitle(argc, argv);
  master::Config config;
  if (int rc = master::ParseArgs(argc, argv, &config); rc != 0) return rc < 0 ? 0 : rc;

  const bool upgraded = getenv(master::kUpgradeStateEnv) != nullptr ||
                        getenv(master::kLegacyUpgradeStateEnv) != nullptr;
  if (int rc = StartLogging(config, upgraded); rc != 0) return rc;

  // Before anything opens descriptors or forks: the workers inherit the
  // limit, and maxclients may come down to what it allows.
  if (!master::AdjustOpenFilesLimit(&config, /*at_start=*/true)) return 1;

  // The store before the workers: they inherit its mapping through fork().
  std::string store_error;
  int leftovers_lock = -1;
  std::unique_ptr<shm::Store> store =
      master::OpenStore(config, upgraded, &leftovers_lock, &store_error);
  if (!store) {
    LOG_WARNING("Cannot start: store %s: %s", config.shm_name.c_str(), store_error.c_str());
    return 1;
  }

  const std::string counters_name = config.shm_name + "-stats";
  std::unique_ptr<shm::CounterArea> counters =
      OpenCounters(counters_name, config, upgraded, &store_error);
  if (!counters) {
    LOG_WARNING("Cannot start: counters %s: %s", counters_name.c_str(), store_error.c_str());
    store.reset();
    if (!config.shm_keep && !upgraded) shm::Store::Remove(config.shm_name);
    return 1;
  }
  // Both names are this instance's now: a cleanup of the one before finds
  // other files under them. Closed before any fork, or a child would keep
  // that cleanup waiting.
  if (leftovers_lock >= 0) close(leftovers_lock);
  // Whatever ends this instance, its last process to exit leaves no segment
  // behind that a clean stop would have removed.
  if (std::string err;
      !master::StartSegmentCleanup(config.shm_name, config.shm_keep, upgraded, &err)) {
    LOG_WARNING(
        "No shm cleanup: %s; if the master is killed, remove /dev/shm%s and "
        "/dev/shm%s by hand",
        err.c_str(), config.shm_name.c_str(), counters_name.c_str());
  }
  worker::CommandService::LabelCounters(counters.get());
  counters->SetSlowLogSettings(config.slowlog_slower_than, config.slowlog_max_len);
  // The store first: the shm cleanup acts only while the -stats file is
  // there, so a master killed in between leaves it nothing to miss.
  auto remove_segments = [&] {
    store.reset();
    if (!config.shm_keep) shm::Store::Remove(config.shm_name);
    counters.reset();
    shm::CounterArea::Remove(counters_name);
  };

  master::Supervisor supervisor(config, args);
  supervisor.set_store(store.get());
  supervisor.set_counters(counters.get());
  if (std::string err = supervisor.Init(); !err.empty()) {
    LOG_WARNING("Cannot start: %s", err.c_str());
    if (!upgraded) remove_segments();
    return 1;
  }
  if (!config.pid_file.empty() && !WritePidFile(config.pid_file)) {
    // After an upgrade the workers serve on: keep going without the file.
    // At a first start nothing serves yet: fail, and leave nothing behind
    // (the store reserves up to maxmemory of /dev/shm).
    if (!upgraded) {
      LOG_WARNING("Cannot start: cannot write the pid file %s", config.pid_file.c_str());
      remove_segments();
      if (!config.unix_socket.empty()) unlink(config.unix_socket.c_str());
      return 1;
    }
  }
  int rc = supervisor.Run();
  // Tear-down in reverse. Run() returns only after a stop (an upgrade
  // re-executes instead), when every worker is gone: no one maps the
  // segment any more.
  remove_segments();
  if (!config.pid_file.empty()) unlink(config.pid_file.c_str());
  if (!config.unix_socket.empty()) unlink(config.unix_socket.c_str());
  return rc;
}
