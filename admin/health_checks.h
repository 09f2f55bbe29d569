// /healthz and /readyz: what they answer, as pure functions of what the
// admin process sees, so that tests can check each verdict.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace redhub::admin {

struct Verdict {
  int status = 200;  // HTTP status: 200 or 503
  std::string body;  // one line, ending in '\n'
};

// True if `pid` names a live process that is not a zombie.
bool ProcessAlive(pid_t pid);

// Liveness: the master lives (master_pid 0 is not watched). The segments are
// attached for the whole life of the process, so they need no check here.
Verdict Liveness(pid_t master_pid);

// Readiness from the master-written gauges (shm::slots::kConfiguredSlots and
// kServingSlots in the summed totals): ready when at least one slot is
// configured and every configured slot is serving.
Verdict Readiness(const std::vector<uint64_t>& totals);

}  // namespace redhub::admin
