// Per-process counter blocks in a small shared-memory segment of their own:
// how INFO (in any worker) and the admin process see figures summed over all
// workers, and how no counter ever goes backwards when a worker dies.
//
// Each worker claims one block and is its only writer (relaxed atomic
// stores: on the hot path they cost what a local increment costs, and no
// cache line is shared between writers). The first `gauges` slots of a block
// are gauges (connected clients...): they count only while their owner lives.
// The others are counters: when the owner dies, the next reader or claimer
// folds them into a retired total before the block is reused.
//
// The area's lock (robust, process-shared) guards claiming, folding and
// summing, never the writers. A fold is made idempotent by writing the new
// totals into the spare copy and publishing it with one store (`current`),
// so a reader that dies mid-fold leaves either the old or the new totals.
//
//   auto area = CounterArea::Create("/redhub-6379-stats", {.blocks = 256,
//                                   .counters = 512, .gauges = 16}, &err);
//   CounterBlock* mine = area->Claim(getpid());    // in the worker
//   mine->Add(kCommandsProcessed, 1);
//   std::vector<uint64_t> all = area->Sum();       // INFO, /metrics
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace redhub::shm {

// One SLOWLOG entry. args holds the command's arguments as Redis keeps
// them: at most 32 (the last saying "... (N more arguments)"), each cut at
// 128 bytes ("... (N more bytes)").
struct SlowLogEntry {
  uint64_t id = 0;
  int64_t unix_time = 0;
  int64_t micros = 0;
  std::vector<std::string> args;
  std::string client_addr;
  std::string client_name;
};

// Alive and not a zombie: a zombie still answers kill(pid, 0), but its
// gauges (clients it no longer has) must not count.
bool ProcessAlive(pid_t pid);

struct CounterAreaOptions {
  uint32_t blocks = 256;             // more than workers ever alive at once (reloads double them)
  uint32_t counters = 512;           // slots per block
  uint32_t gauges = 16;              // slots [0, gauges) are gauges
  uint32_t slowlog_capacity = 1024;  // the most SLOWLOG entries slowlog-max-len can keep
};

// One worker's counters. Only the owner writes.
class CounterBlock {
 public:
  void Add(uint32_t i, uint64_t n) {
    values_[i].store(values_[i].load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Set(uint32_t i, uint64_t v) { values_[i].store(v, std::memory_order_relaxed); }
  uint64_t Get(uint32_t i) const { return values_[i].load(std::memory_order_relaxed); }
  // The slot itself, for a word bumped from code that knows no block
  // (progress.h).
  std::atomic<uint64_t>* Word(uint32_t i) { return &values_[i]; }

 private:
  friend class CounterArea;
  std::atomic<int32_t> owner_;       // pid, 0 = free
  uint32_t pad_[15];                 // the values start on their own cache line
  std::atomic<uint64_t> values_[1];  // `counters` of them (flexible array)
};

class CounterArea {
 public:
  // Master: creates (replacing a stale one) and maps the segment.
  static std::unique_ptr<CounterArea> Create(const std::string& name,
                                             const CounterAreaOptions& options, std::string* error);
  // Another process (admin): maps an existing area, checking its header.
  static std::unique_ptr<CounterArea> Attach(const std::string& name, std::string* error);
  static bool Remove(const std::string& name);
  ~CounterArea();

  // Takes a free block for `pid`, zeroed, folding dead owners' blocks first;
  // a pid that already owns a block gets that one back, unchanged. nullptr if
  // every block belongs to a live process.
  CounterBlock* Claim(pid_t pid);
  // Gives a block back at a clean exit: its counters are folded at once.
  void Release(CounterBlock* block);
  // Retired totals plus every live block; gauges of live blocks only.
  std::vector<uint64_t> Sum();
  // Slot i of the block `pid` owns, read without the area's lock (the
  // master's watchdog must never wait on it); nullopt if pid owns none.
  std::optional<uint64_t> Peek(pid_t pid, uint32_t i);
  // Blocks owned by live processes now.
  uint32_t LiveBlocks();
  // One gauge summed over the owned blocks, without the lock and without
  // checking that owners live: cheap enough for every accept (the
  // daemon-wide maxclients). A dead owner's gauge counts until its block is
  // forgotten, which the master does when it reaps the worker (ForgetDead).
  // For a count that must never go over a limit, the caller stores its own
  // value, then issues a seq_cst fence, then sums: of two processes doing so
  // at once, at least one sees the other's store.
  uint64_t SumGauge(uint32_t i) const;
  // The master, on reaping `pid`: its gauges stop counting at once (cleared
  // without the lock), and dead owners' blocks are folded if the area's lock
  // is free (else by the next Sum or Claim). Never waits: a hung worker
  // holding the lock (INFO, SLOWLOG) must not stop the master's loop.
  void ForgetDead(pid_t pid);
  // Tests only: runs fn while holding the area's lock (a worker stuck
  // inside INFO or SLOWLOG, to a test).
  void WithLockForTesting(const std::function<void()>& fn);

  // Names of what the slots count, written by the master at creation so that
  // a reader that does not know the writer's table (admin) can label them.
  // At most 47 bytes each.
  void SetLabel(uint32_t i, std::string_view label);
  std::string Label(uint32_t i) const;

  // The slow log shared by every worker (SLOWLOG), under the area's lock.
  // Settings live in the segment so the master can change them at reload.
  void SetSlowLogSettings(int64_t slower_than_micros, uint32_t max_len);
  int64_t SlowLogThreshold() const;  // < 0: off
  uint32_t SlowLogMaxLen() const;
  void SlowLogAdd(const SlowLogEntry& entry);
  std::vector<SlowLogEntry> SlowLogGet(size_t count);  // newest first
  uint64_t SlowLogLen();
  void SlowLogReset();

  uint32_t counters() const;
  uint32_t gauges() const;

 private:
  struct Impl;
  explicit CounterArea(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace redhub::shm
