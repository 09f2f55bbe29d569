// What the process's cgroup allows: the CPUs the default worker count
// follows, and the memory the store's segment must fit in.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace redhub::master {

// CPUs this process may run on (its affinity mask: taskset, systemd's
// CPUAffinity=, a container's cpuset), capped by the CPU bandwidth quota of
// its cgroup and of the cgroups above it (docker --cpus, systemd CPUQuota=),
// rounded up. At least 1. Workers beyond it would only take turns on the
// same CPUs.
int UsableCpus();

// Bytes the memory limit of this process's cgroup, or of one above it, still
// allows (limit minus usage, not counting inactive file cache, which the
// kernel reclaims on demand; the smallest over the levels): docker --memory,
// systemd MemoryMax=. Pages of /dev/shm count against it, so a segment larger
// than this gets the process OOM-killed while it is reserved. nullopt if no
// limit is set or none can be read.
std::optional<uint64_t> MemoryAvailable();

// A cgroup v2 cpu.max file ("max 100000" or "150000 100000"): the CPUs the
// quota allows, rounded up; nullopt if unlimited or not understood.
std::optional<int> CpusFromCpuMax(std::string_view text);

// cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us: the same; a quota of -1
// is unlimited.
std::optional<int> CpusFromCfs(long long quota_us, long long period_us);

// A memory limit file (v2 memory.max: "max" or bytes; v1
// memory.limit_in_bytes: bytes, where a number near 2^63 means none), the
// matching usage file (memory.current, memory.usage_in_bytes) and the
// cgroup's memory.stat: the bytes left, counting inactive file cache
// (inactive_file, v1 total_inactive_file) as free; nullopt if unlimited or
// not understood.
std::optional<uint64_t> MemoryLeft(std::string_view limit, std::string_view usage,
                                   std::string_view stat);

}  // namespace redhub::master
