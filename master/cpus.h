// How many CPUs the daemon may use: the default worker count.
#pragma once

#include <optional>
#include <string_view>

namespace redhub::master {

// CPUs this process may run on (its affinity mask: taskset, systemd's
// CPUAffinity=, a container's cpuset), capped by the CPU bandwidth quota of
// its cgroup and of the cgroups above it (docker --cpus, systemd CPUQuota=),
// rounded up. At least 1. Workers beyond it would only take turns on the
// same CPUs.
int UsableCpus();

// A cgroup v2 cpu.max file ("max 100000" or "150000 100000"): the CPUs the
// quota allows, rounded up; nullopt if unlimited or not understood.
std::optional<int> CpusFromCpuMax(std::string_view text);

// cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us: the same; a quota of -1
// is unlimited.
std::optional<int> CpusFromCfs(long long quota_us, long long period_us);

}  // namespace redhub::master
