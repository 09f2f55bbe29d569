#include "cycle_clock.h"

#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include <fstream>
#include <string>

namespace redhub::worker {
namespace {

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

bool InvariantTsc() {
#if defined(__x86_64__)
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0) {
      return line.find(" constant_tsc") != std::string::npos &&
             line.find(" nonstop_tsc") != std::string::npos;
    }
  }
#endif
  return false;
}

}  // namespace

CycleClock::CycleClock() {
#if defined(__x86_64__)
  if (!InvariantTsc()) return;
  uint64_t t0 = MonotonicNs();
  uint64_t c0 = __rdtsc();
  uint64_t t1;
  do {
    t1 = MonotonicNs();
  } while (t1 - t0 < 2000000);
  uint64_t c1 = __rdtsc();
  if (c1 <= c0) return;
  us_per_tick_ = (t1 - t0) / 1000.0 / static_cast<double>(c1 - c0);
  tsc_ = true;
#endif
}

uint64_t CycleClock::Now() const {
#if defined(__x86_64__)
  if (tsc_) return __rdtsc();
#endif
  return MonotonicNs();
}

}  // namespace redhub::worker
