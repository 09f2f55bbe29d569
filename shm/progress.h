// This process's sign of life for the master's watchdog: a counter in shared
// memory (the worker's counter block) that long-running work bumps as it
// goes. The watchdog kills a worker that neither heartbeats nor moves this
// word for --worker-timeout: a command that is slow but moving (KEYS over
// millions of keys, a huge MSET, a wait for a stripe another process holds)
// is not a hang; a stopped or spinning-in-place process is.
//
// Bumping is one relaxed load and store to a line only this process writes:
// cheap enough for per-key loops. Until a word is set, bumps go nowhere.
#pragma once

#include <atomic>
#include <cstdint>

namespace redhub::shm {

namespace internal {
inline std::atomic<uint64_t>* g_progress = nullptr;
}  // namespace internal

// Where this process reports progress (nullptr: nowhere). Process-local.
inline void SetProgressWord(std::atomic<uint64_t>* word) { internal::g_progress = word; }

inline void ReportProgress() {
  if (std::atomic<uint64_t>* p = internal::g_progress) {
    p->store(p->load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
}

}  // namespace redhub::shm
