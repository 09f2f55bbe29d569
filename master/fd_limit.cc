#include "fd_limit.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "log.h"
#include "syserr.h"

namespace redhub::master {
namespace {

// Redis's CONFIG_MIN_RESERVED_FDS.
constexpr uint64_t kRedisReservedFds = 32;

// The most descriptors the kernel lets any process have (fs.nr_open); even
// a privileged setrlimit above it fails.
uint64_t KernelMaxFds() {
  uint64_t n = 0;
  if (FILE* f = fopen("/proc/sys/fs/nr_open", "r")) {
    unsigned long long v = 0;
    if (fscanf(f, "%llu", &v) == 1) n = v;
    fclose(f);
  }
  return n;
}

}  // namespace

uint64_t ReservedFds(const Config& config) {
  const uint64_t workers = static_cast<uint64_t>(std::max(config.workers, 1));
  const uint64_t listeners = ((config.port != 0 ? config.bind.size() : 0) +
                              (config.tls_port != 0 ? config.bind.size() : 0)) *
                                 workers +
                             (config.unix_socket.empty() ? 0 : 1);
  return kRedisReservedFds + listeners + workers + 2;
}

bool AdjustOpenFilesLimit(Config* config, bool at_start) {
  size_t& maxclients = config->server.max_clients;
  const uint64_t reserved = ReservedFds(*config);
  const uint64_t maxfiles = maxclients + reserved;
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    LOG_WARNING(
        "Unable to obtain the current NOFILE limit (%s), assuming 1024 and setting the max "
        "clients configuration accordingly.",
        ErrnoText(errno).c_str());
    if (reserved >= 1024) return false;
    maxclients = std::min<size_t>(maxclients, 1024 - reserved);
    return true;
  }
  const rlim_t oldlimit = limit.rlim_cur;
  if (oldlimit != RLIM_INFINITY && oldlimit < maxfiles) {
    // As Redis: the limit asked for, then a little less at a time. The
    // first try fails with EINVAL when it is above the hard limit, which we
    // keep; so the next is the hard limit itself (or fs.nr_open under an
    // unlimited one), then Redis's steps of 16.
    rlim_t best = maxfiles;
    int setrlimit_error = 0;
    const uint64_t kernel_max = KernelMaxFds();
    while (best > oldlimit) {
      rlimit want = {best, limit.rlim_max};
      if (setrlimit(RLIMIT_NOFILE, &want) == 0) break;
      if (setrlimit_error == 0) setrlimit_error = errno;
      rlim_t next = best < 16 ? oldlimit : best - 16;
      if (limit.rlim_max != RLIM_INFINITY && next > limit.rlim_max) next = limit.rlim_max;
      if (kernel_max > 0 && next > kernel_max) next = kernel_max;
      best = next;
    }
    if (best < oldlimit) best = oldlimit;
    if (best < maxfiles) {
      const size_t requested = maxclients;
      if (best <= reserved) {
        LOG_WARNING(
            "Your current 'ulimit -n' of %llu is not enough for the server to start. Please "
            "increase your open file limit to at least %llu.%s",
            static_cast<unsigned long long>(oldlimit), static_cast<unsigned long long>(maxfiles),
            at_start ? " Exiting." : "");
        return false;
      }
      maxclients = static_cast<size_t>(best - reserved);
      LOG_WARNING("You requested maxclients of %zu requiring at least %llu max file descriptors.",
                  requested, static_cast<unsigned long long>(maxfiles));
      LOG_WARNING("Server can't set maximum open files to %llu because of OS error: %s.",
                  static_cast<unsigned long long>(maxfiles), ErrnoText(setrlimit_error).c_str());
      LOG_WARNING(
          "Current maximum open files is %llu. maxclients has been reduced to %zu to compensate "
          "for low ulimit. If you need higher maxclients increase 'ulimit -n'.",
          static_cast<unsigned long long>(best), maxclients);
    } else {
      LOG_NOTICE("Increased maximum number of open files to %llu (it was originally set to %llu).",
                 static_cast<unsigned long long>(maxfiles),
                 static_cast<unsigned long long>(oldlimit));
    }
  }
  return true;
}

}  // namespace redhub::master
