#include "health_checks.h"

#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "worker_counters.h"

namespace redhub::admin {

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  // A zombie still answers kill(0): read its state from /proc.
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = fopen(path, "r");
  if (f == nullptr) return false;
  char buf[512];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* paren = strrchr(buf, ')');  // "pid (comm) S ...": comm may hold ')'
  return paren == nullptr || paren[1] == '\0' || paren[2] != 'Z';
}

Verdict Liveness(pid_t master_pid) {
  if (master_pid > 0 && !ProcessAlive(master_pid)) {
    return {503, "master process " + std::to_string(master_pid) + " is not running\n"};
  }
  return {200, "ok\n"};
}

Verdict Readiness(const std::vector<uint64_t>& totals) {
  namespace slots = shm::slots;
  auto at = [&](uint32_t i) { return i < totals.size() ? totals[i] : 0; };
  uint64_t configured = at(slots::kConfiguredSlots);
  uint64_t serving = at(slots::kServingSlots);
  if (configured == 0) return {503, "no worker slots configured\n"};
  // More serving than configured happens for an instant when a reload
  // shrinks the worker count: every configured slot is served then.
  if (serving >= configured) return {200, "ok\n"};
  return {503, std::to_string(serving) + " of " + std::to_string(configured) +
                   " worker slots serving\n"};
}

}  // namespace redhub::admin
