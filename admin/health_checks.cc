#include "health_checks.h"

#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "counters.h"
#include "worker_counters.h"

namespace redhub::admin {

bool ProcessAlive(pid_t pid) { return shm::ProcessAlive(pid); }

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
