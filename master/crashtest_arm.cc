// Test builds only: linked into redhubd_crashtest (never into redhubd), so
// that the daemon-level kill test can make workers die inside the store's
// critical windows (a rehash move, a publish inside a batch, a multi-key
// commit, an eviction) instead of wherever a random SIGKILL lands.
//
//   REDHUB_CRASH_POINT=name:nth[,name:nth...]
//
// Every process the master forks (workers; also the admin and cleanup
// processes, which never reach a crash point) arms one entry of the list,
// taken in turn by fork order, at a reach drawn uniformly from 1..nth: it
// SIGKILLs itself there (shm/crash_point.h). The master itself is never
// armed (it takes no store lock anyway). Each armed process says so on
// stderr: "redhubd_crashtest: pid P armed <name> at reach R".
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "crash_point.h"

namespace {

struct Entry {
  redhub::shm::CrashPoint point;
  uint32_t nth;
};

std::vector<Entry> g_entries;
uint32_t g_forks = 0;  // in the master: children forked so far

bool Parse(const std::string& spec, std::vector<Entry>* out) {
  size_t at = 0;
  while (at <= spec.size()) {
    size_t end = spec.find(',', at);
    if (end == std::string::npos) end = spec.size();
    std::string item = spec.substr(at, end - at);
    size_t colon = item.find(':');
    if (colon == std::string::npos) return false;
    std::string name = item.substr(0, colon);
    char* tail = nullptr;
    unsigned long nth = strtoul(item.c_str() + colon + 1, &tail, 10);
    if (tail == item.c_str() + colon + 1 || *tail != '\0' || nth == 0 || nth > 1u << 30) {
      return false;
    }
    bool found = false;
    for (uint32_t p = 1; p < static_cast<uint32_t>(redhub::shm::CrashPoint::kCount); p++) {
      auto point = static_cast<redhub::shm::CrashPoint>(p);
      if (name == redhub::shm::CrashPointName(point)) {
        out->push_back({point, static_cast<uint32_t>(nth)});
        found = true;
      }
    }
    if (!found) return false;
    at = end + 1;
  }
  return !out->empty();
}

void InParent() { g_forks++; }

void InChild() {
  const Entry& e = g_entries[g_forks % g_entries.size()];
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t x = (static_cast<uint64_t>(getpid()) << 32) ^ static_cast<uint64_t>(ts.tv_nsec) ^
               0x9e3779b97f4a7c15ull;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  uint32_t reach = 1 + static_cast<uint32_t>(x % e.nth);
  redhub::shm::ArmCrashPointForTesting(e.point, reach);
  fprintf(stderr, "redhubd_crashtest: pid %d armed %s at reach %u\n", static_cast<int>(getpid()),
          redhub::shm::CrashPointName(e.point), reach);
}

[[gnu::constructor]] void Init() {
  const char* spec = getenv("REDHUB_CRASH_POINT");
  if (spec == nullptr || *spec == '\0') return;
  if (!Parse(spec, &g_entries)) {
    fprintf(stderr, "redhubd_crashtest: REDHUB_CRASH_POINT=%s: want name:nth[,name:nth...]\n",
            spec);
    _exit(2);
  }
  pthread_atfork(nullptr, InParent, InChild);
}

}  // namespace
