// What the cgroup allows: CPU quota and memory files as the kernel writes
// them, and the affinity mask of the running process.
#include "cgroup.h"

#include <gtest/gtest.h>
#include <sched.h>

namespace redhub::master {
namespace {

TEST(CpusTest, CgroupV2CpuMax) {
  EXPECT_EQ(CpusFromCpuMax("max 100000\n"), std::nullopt);
  EXPECT_EQ(CpusFromCpuMax("200000 100000\n"), 2);
  EXPECT_EQ(CpusFromCpuMax("150000 100000\n"), 2);  // 1.5 CPUs: rounded up
  EXPECT_EQ(CpusFromCpuMax("50000 100000"), 1);     // half a CPU still needs a worker
  EXPECT_EQ(CpusFromCpuMax("400000 50000\n"), 8);
  EXPECT_EQ(CpusFromCpuMax(""), std::nullopt);
  EXPECT_EQ(CpusFromCpuMax("garbage"), std::nullopt);
  EXPECT_EQ(CpusFromCpuMax("12x 100000"), std::nullopt);
}

TEST(CpusTest, CgroupV1Cfs) {
  EXPECT_EQ(CpusFromCfs(-1, 100000), std::nullopt);  // unlimited
  EXPECT_EQ(CpusFromCfs(300000, 100000), 3);
  EXPECT_EQ(CpusFromCfs(250000, 100000), 3);
  EXPECT_EQ(CpusFromCfs(1000, 100000), 1);
  EXPECT_EQ(CpusFromCfs(100000, 0), std::nullopt);
}

TEST(MemoryTest, LimitMinusUsage) {
  EXPECT_EQ(MemoryLeft("max\n", "1000\n", ""), std::nullopt);                  // v2, no limit
  EXPECT_EQ(MemoryLeft("9223372036854771712\n", "5000\n", ""), std::nullopt);  // v1, no limit
  EXPECT_EQ(MemoryLeft("536870912\n", "136870912\n", ""), uint64_t{400000000});
  EXPECT_EQ(MemoryLeft("1000", "2000", ""), uint64_t{0});  // over the limit: nothing left
  EXPECT_EQ(MemoryLeft("", "0", ""), std::nullopt);
  EXPECT_EQ(MemoryLeft("12k", "0", ""), std::nullopt);
  EXPECT_EQ(MemoryLeft("1000", "x", ""), std::nullopt);
}

// Inactive file cache fills a cgroup up to its limit and is reclaimed on
// demand: it counts as free.
TEST(MemoryTest, InactiveFileCacheCountsAsFree) {
  // v2 memory.stat
  EXPECT_EQ(MemoryLeft("1000000\n", "900000\n", "anon 100000\nfile 800000\ninactive_file 700000\n"),
            uint64_t{800000});
  // v1 memory.stat: the cgroup's own and the hierarchy's total
  EXPECT_EQ(MemoryLeft("1000000", "900000",
                       "cache 800000\ninactive_file 500000\ntotal_inactive_file 700000\n"),
            uint64_t{800000});
  // A name that only starts like the field does not count.
  EXPECT_EQ(MemoryLeft("1000000", "900000", "inactive_file_x 700000\n"), uint64_t{100000});
  // More cache than usage (counters read at different moments): all free.
  EXPECT_EQ(MemoryLeft("1000000", "100000", "inactive_file 200000\n"), uint64_t{1000000});
}

TEST(CpusTest, FollowsTheAffinityMask) {
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  int allowed = CPU_COUNT(&all);
  EXPECT_GE(UsableCpus(), 1);
  EXPECT_LE(UsableCpus(), allowed);
  if (allowed < 2) GTEST_SKIP() << "one CPU only: nothing to narrow";
  int first = 0;
  while (!CPU_ISSET(first, &all)) first++;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  int narrowed = UsableCpus();
  ASSERT_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
  EXPECT_EQ(narrowed, 1);
}

}  // namespace
}  // namespace redhub::master
