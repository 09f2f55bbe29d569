// A cheap clock for per-command timing (INFO commandstats, the latency
// histogram, SLOWLOG). clock_gettime costs ~20 ns even through the vDSO and
// timing every command took two of them: 10% of a pipelined GET's CPU. With
// an invariant TSC (constant_tsc and nonstop_tsc in /proc/cpuinfo) rdtsc is
// a few ns; elsewhere this falls back to CLOCK_MONOTONIC.
#pragma once

#include <cstdint>

namespace redhub::worker {

class CycleClock {
 public:
  // Calibrates against CLOCK_MONOTONIC (spins ~2 ms once per process).
  CycleClock();
  uint64_t Now() const;
  // Ticks to nanoseconds.
  uint64_t Nanos(uint64_t ticks) const {
    return static_cast<uint64_t>(static_cast<double>(ticks) * us_per_tick_ * 1000);
  }

 private:
  bool tsc_ = false;
  double us_per_tick_ = 0.001;  // nanoseconds when falling back
};

}  // namespace redhub::worker
