#include "segment_cleanup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "log.h"
#include "process.h"
#include "proctitle.h"
#include "syserr.h"

namespace redhub::master {
namespace {

// The lock's descriptor number, for the image an upgrade executes: it
// inherits the descriptor but would not know it is there.
constexpr char kLockEnv[] = "REDHUB_INSTANCE_LOCK_FD";

std::string ShmPath(const std::string& name) { return "/dev/shm" + name; }

// Whether path names the file that fd has open (not one made since).
bool NamesFile(const std::string& path, int fd) {
  struct stat by_name, held;
  return stat(path.c_str(), &by_name) == 0 && fstat(fd, &held) == 0 &&
         by_name.st_dev == held.st_dev && by_name.st_ino == held.st_ino;
}

// The cleanup came with the master's memory and descriptors. Mapping the
// segments would make it a user of them (SegmentUser reads /proc/*/maps and
// would refuse the next start while it waits); a copy of a listener (after
// an upgrade) would take connections nobody accepts.
void DropInherited(const std::vector<std::string>& segment_paths) {
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
      size_t slash = line.find('/');
      if (slash == std::string::npos) continue;
      bool ours = false;
      for (const std::string& p : segment_paths)
        ours = ours || line.compare(slash, p.size(), p) == 0;
      if (!ours) continue;
      char* end = nullptr;
      uintptr_t from = strtoull(line.c_str(), &end, 16);
      uintptr_t to = strtoull(end + 1, nullptr, 16);
      ranges.emplace_back(from, to);
    }
  }
  for (auto [from, to] : ranges) munmap(reinterpret_cast<void*>(from), to - from);
  CloseInheritedSockets();
}

[[noreturn]] void RunCleanup(int watch_fd, int store_fd, const std::string& store_name,
                             bool keep_store) {
  const std::string stats_name = store_name + "-stats";
  const std::string store_path = ShmPath(store_name);
  const std::string stats_path = ShmPath(stats_name);
  log::SetRole('C');
  SetProcTitle("redhubd: shm cleanup");
  // Its job starts when the master is gone: a signal to the whole process
  // group (a terminal's ^C) or cgroup (systemd's stop) must not end it.
  for (int sig : {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE}) {
    signal(sig, SIG_IGN);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  DropInherited({store_path, stats_path});

  // Granted once every process holding the instance's shared lock has
  // exited, however it exited.
  while (flock(watch_fd, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    LOG_WARNING("flock(%s, LOCK_EX) failed: %s; the segments stay if the master is killed",
                stats_path.c_str(), ErrnoText(errno).c_str());
    _exit(1);
  }
  // Gone: a clean stop removed the segments. Another file: a new instance
  // took the name over (its store, adopted or new, is not ours to remove).
  if (!NamesFile(stats_path, watch_fd)) _exit(0);
  std::string removed;
  if (!keep_store && NamesFile(store_path, store_fd)) {
    if (shm_unlink(store_name.c_str()) == 0) {
      removed = store_path + " and ";
    } else {
      LOG_WARNING("shm_unlink(%s) failed: %s", store_name.c_str(), ErrnoText(errno).c_str());
    }
  }
  if (shm_unlink(stats_name.c_str()) == 0) {
    removed += stats_path;
  } else {
    LOG_WARNING("shm_unlink(%s) failed: %s", stats_name.c_str(), ErrnoText(errno).c_str());
  }
  LOG_NOTICE(
      "Every process of this redhubd has exited and the master did not stop cleanly: "
      "removed %s%s",
      removed.c_str(), keep_store ? " (--shm-keep: the store is kept)" : "");
  _exit(0);
}

}  // namespace

int TakeOverLeftovers(const std::string& store_name, std::string* error) {
  const std::string stats_path = ShmPath(store_name + "-stats");
  int fd = open(stats_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return -1;
    *error = "open(" + stats_path + ") failed: " + ErrnoText(errno);
    return -2;
  }
  // Only a file this uid made with our mode can be a previous instance of
  // ours: another user's file (or one others may open) is not waited on,
  // or any local user could keep the daemon from starting by holding a lock
  // on a file of that name. It is replaced or refused as any segment that
  // is not ours (Segment, CounterArea).
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    close(fd);
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
  int err = errno;
  close(fd);
  if (err == EWOULDBLOCK) {
    *error = stats_path +
             " is still held by processes of the redhubd that made it, or by its shm cleanup "
             "(the workers of a killed master take a moment to exit): try again";
  } else {
    *error = "flock(" + stats_path + ", LOCK_EX|LOCK_NB) failed: " + ErrnoText(err);
  }
  return -2;
}

bool StartSegmentCleanup(const std::string& store_name, bool keep_store, bool upgraded,
                         std::string* error) {
  const std::string store_path = ShmPath(store_name);
  const std::string stats_path = ShmPath(store_name + "-stats");
  if (upgraded) {
    // The previous binary's lock came through execve; its cleanup waits on
    // the same -stats file unless the upgrade had to make a new one.
    const char* inherited = getenv(kLockEnv);
    if (inherited != nullptr && atoi(inherited) > STDERR_FILENO &&
        NamesFile(stats_path, atoi(inherited))) {
      return true;
    }
  }
  // No O_CLOEXEC: the upgrade's execve must keep it, and every child
  // inherits it with fork().
  int lock = open(stats_path.c_str(), O_RDONLY | O_NOFOLLOW);
  if (lock < 0) {
    *error = "open(" + stats_path + ") failed: " + ErrnoText(errno);
    return false;
  }
  if (flock(lock, LOCK_SH) != 0) {
    *error = "flock(" + stats_path + ", LOCK_SH) failed: " + ErrnoText(errno);
    close(lock);
    return false;
  }
  // The cleanup's own open file: flock() locks belong to an open file, so
  // one shared with the master's lock could never be locked exclusively.
  int watch = open(stats_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  int store_fd = open(store_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (watch < 0 || store_fd < 0) {
    *error = "open(" + (watch < 0 ? stats_path : store_path) + ") failed: " + ErrnoText(errno);
    if (watch >= 0) close(watch);
    if (store_fd >= 0) close(store_fd);
    close(lock);
    return false;
  }
  pid_t pid = fork();
  if (pid == 0) {
    // A grandchild, adopted by init (or a subreaper) at once: it outlives
    // the master, and the supervisor never sees it among its children.
    pid_t cleanup = fork();
    if (cleanup != 0) _exit(cleanup < 0 ? 1 : 0);
    close(lock);
    RunCleanup(watch, store_fd, store_name, keep_store);
  }
  int fork_errno = errno;
  close(watch);
  close(store_fd);
  int status = 0;
  while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *error = pid < 0 ? std::string("fork() for the shm cleanup failed: ") + ErrnoText(fork_errno)
                     : std::string("the shm cleanup's second fork() failed");
    close(lock);
    return false;
  }
  setenv(kLockEnv, std::to_string(lock).c_str(), 1);
  return true;
}

}  // namespace redhub::master
