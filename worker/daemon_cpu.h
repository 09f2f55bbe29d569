// CPU time of the whole daemon, for INFO's CPU section, readable from any
// worker.
//
// Why /proc and not figures published in the counter blocks: the kernel
// already keeps the exact numbers, for every process, in shared state any
// worker can read. The master's /proc/<pid>/stat has its own time and, in
// cutime/cstime, that of every child it has reaped (workers killed or
// replaced at reload, an earlier admin process), final to the last tick;
// the live children (workers, admin) are listed by the kernel too. So a
// dead worker's CPU never vanishes, nothing in the daemon has to publish
// anything periodically (a published figure would lag, and a SIGKILLed
// worker would lose what it used since it last published), and the admin
// process, which owns no counter block, counts as well. The price is the
// kernel's resolution: clock ticks (10 ms at USER_HZ 100).
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace redhub::worker {

struct CpuTimes {
  uint64_t user_us = 0;
  uint64_t sys_us = 0;
};

// User and system time of `master`, of every child of it now alive, and of
// every child it has reaped: all the daemon's processes, live and exited.
// Consistent against a child exiting while it reads (a child reaped in the
// middle would be counted twice or not at all; the read is then repeated).
// With master <= 0 (no daemon around this process), this process alone.
CpuTimes DaemonCpuTimes(pid_t master);

}  // namespace redhub::worker
