#include "counters.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "robust_mutex.h"
#include "syserr.h"

namespace redhub::shm {
namespace {

namespace bip = boost::interprocess;

constexpr uint64_t kMagic = 0x52484354'52534831ull;  // "RHCTRSH1"
constexpr uint32_t kVersion = 2;
constexpr int32_t kNoFold = -1;
constexpr size_t kLabelBytes = 48;

struct AreaHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t blocks;
  uint32_t counters;
  uint32_t gauges;
  uint64_t block_bytes;
  uint64_t retired_offset;  // two copies of `counters` totals
  uint64_t labels_offset;   // kLabelBytes per slot: what the slot counts
  uint64_t blocks_offset;
  uint64_t total_bytes;
  pthread_mutex_t lock;           // claim, fold, sum; never the writers
  std::atomic<uint32_t> current;  // which retired copy is published
  // Fold intent: the block being folded and the copy it started from. A
  // fold is committed once `current` differs from fold_from.
  int32_t fold_block;
  uint32_t fold_from;
  // The slow log: a ring of slowlog_capacity fixed-size records. An entry is
  // written completely, then published by advancing next_id (under the
  // lock), so a writer's death leaves at most an unpublished record.
  uint64_t slowlog_offset;
  uint32_t slowlog_capacity;
  std::atomic<uint32_t> slowlog_max_len;
  std::atomic<int64_t> slowlog_threshold;  // micros; < 0 = off
  uint64_t slowlog_next_id;                // ids below this are published
  uint64_t slowlog_oldest_id;              // ids below this were reset or overwritten
  // One past the highest block ever claimed, so that SumGauge (every accept
  // of every worker) reads only the blocks in use, not all of them. It only
  // grows. Added in the header's tail padding without a version change
  // (the blocks still start at the same offset): an area made by an older
  // binary has 0 here until a newer one claims, and 0 means "every block".
  std::atomic<uint32_t> blocks_claimed;
};
// The padding blocks_claimed went into: the header still rounds up to the
// same size, so the retired totals and the blocks keep their offsets.
static_assert(sizeof(AreaHeader) <= 192, "AreaHeader outgrew its 192 bytes: bump kVersion");

// A SLOWLOG record in the ring: the arguments as (u16 length, bytes) pairs.
struct SlowRecord {
  uint64_t id;
  int64_t unix_time;
  int64_t micros;
  uint16_t argc;
  uint16_t args_bytes;
  char client_addr[46];
  char client_name[32];
  char args[560];
};

uint64_t AlignUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

}  // namespace

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = fopen(path, "r");
  if (f == nullptr) return false;
  char buf[512];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  // "pid (comm) S ...": the state follows the last ')'.
  const char* paren = strrchr(buf, ')');
  return paren == nullptr || paren[1] == '\0' || paren[2] != 'Z';
}

struct CounterArea::Impl {
  bip::shared_memory_object shm;
  bip::mapped_region region;
  AreaHeader* h = nullptr;
  std::string name;

  uint64_t* retired(uint32_t copy) {
    return reinterpret_cast<uint64_t*>(reinterpret_cast<char*>(h) + h->retired_offset) +
           uint64_t{copy} * h->counters;
  }
  CounterBlock* block(uint32_t i) {
    return reinterpret_cast<CounterBlock*>(reinterpret_cast<char*>(h) + h->blocks_offset +
                                           i * h->block_bytes);
  }

  // Locks the area, finishing or discarding a fold that a dead holder left.
  void Lock() { Took(LockRobustWaiting(&h->lock, "counter area", 0)); }
  // Never waits (the master's loop must not): false if another process
  // holds the lock.
  bool TryLock() {
    LockResult r = TryLockRobust(&h->lock, "counter area", 0);
    if (r == LockResult::kBusy) return false;
    Took(r);
    return true;
  }
  void Took(LockResult r) {
    if (r == LockResult::kOwnerDied) {
      if (h->fold_block != kNoFold) {
        if (h->current.load(std::memory_order_relaxed) != h->fold_from) {
          // Committed: the totals include the block; free it.
          block(h->fold_block)->owner_.store(0, std::memory_order_relaxed);
        }
        // Not committed: the block is still owned by a dead pid and will be
        // folded again from the start.
        h->fold_block = kNoFold;
      }
      MarkConsistent(&h->lock);
    }
  }
  void Unlock() { UnlockRobust(&h->lock); }

  void Fold(uint32_t b) {
    CounterBlock* blk = block(b);
    uint32_t c = h->current.load(std::memory_order_relaxed);
    h->fold_from = c;
    h->fold_block = static_cast<int32_t>(b);
    uint64_t* from = retired(c);
    uint64_t* to = retired(1 - c);
    for (uint32_t i = 0; i < h->counters; i++) {
      to[i] = from[i] + (i < h->gauges ? 0 : blk->values_[i].load(std::memory_order_relaxed));
    }
    h->current.store(1 - c, std::memory_order_release);  // the commit point
    blk->owner_.store(0, std::memory_order_relaxed);
    h->fold_block = kNoFold;
  }

  void FoldDead() {
    for (uint32_t b = 0; b < h->blocks; b++) {
      pid_t owner = block(b)->owner_.load(std::memory_order_relaxed);
      if (owner != 0 && !ProcessAlive(owner)) Fold(b);
    }
  }
};

CounterArea::CounterArea(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CounterArea::~CounterArea() = default;

std::unique_ptr<CounterArea> CounterArea::Create(const std::string& name,
                                                 const CounterAreaOptions& o, std::string* error) {
  if (o.blocks == 0 || o.counters == 0 || o.gauges > o.counters || o.blocks > 65536 ||
      o.counters > 65536) {
    *error = "invalid counter area geometry";
    return nullptr;
  }
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  uint64_t block_bytes = AlignUp(offsetof(CounterBlock, values_) + 8ull * o.counters, 64);
  uint64_t retired_offset = AlignUp(sizeof(AreaHeader), 64);
  uint64_t labels_offset = AlignUp(retired_offset + 2 * 8ull * o.counters, 64);
  uint64_t blocks_offset = AlignUp(labels_offset + kLabelBytes * o.counters, 64);
  uint64_t slowlog_offset = AlignUp(blocks_offset + block_bytes * o.blocks, 64);
  uint64_t total = slowlog_offset + sizeof(SlowRecord) * o.slowlog_capacity;
  try {
    bip::shared_memory_object::remove(name.c_str());
    bip::permissions perm;
    perm.set_permissions(0600);
    impl->shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, perm);
    // SLOWLOG keeps command arguments here: no other user may read them,
    // whatever the umask (shm_open's mode goes through it, and Boost ignores
    // a failure of its own fchmod).
    if (fchmod(impl->shm.get_mapping_handle().handle, 0600) != 0) {
      *error = "fchmod(" + name + ", 0600) failed: " + ErrnoText(errno);
      bip::shared_memory_object::remove(name.c_str());
      return nullptr;
    }
    impl->shm.truncate(static_cast<bip::offset_t>(total));
    // Reserve the pages now: a full /dev/shm fails here, not with SIGBUS.
    if (int err =
            posix_fallocate(impl->shm.get_mapping_handle().handle, 0, static_cast<off_t>(total));
        err != 0) {
      *error =
          "posix_fallocate(" + name + ", " + std::to_string(total) + ") failed: " + ErrnoText(err);
      bip::shared_memory_object::remove(name.c_str());
      return nullptr;
    }
    impl->region = bip::mapped_region(impl->shm, bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    *error = "shared memory " + name + ": " + e.what();
    bip::shared_memory_object::remove(name.c_str());
    return nullptr;
  }
  auto* h = static_cast<AreaHeader*>(impl->region.get_address());
  memset(static_cast<void*>(h), 0, total);
  h->version = kVersion;
  h->blocks = o.blocks;
  h->counters = o.counters;
  h->gauges = o.gauges;
  h->block_bytes = block_bytes;
  h->retired_offset = retired_offset;
  h->labels_offset = labels_offset;
  h->slowlog_offset = slowlog_offset;
  h->slowlog_capacity = o.slowlog_capacity;
  h->slowlog_max_len.store(std::min<uint32_t>(128, o.slowlog_capacity));
  h->slowlog_threshold.store(10000);
  h->blocks_offset = blocks_offset;
  h->total_bytes = total;
  InitRobustMutex(&h->lock);
  h->current.store(0, std::memory_order_relaxed);
  h->fold_block = kNoFold;
  std::atomic_thread_fence(std::memory_order_release);
  h->magic = kMagic;  // last: an attacher never sees a half-made header
  impl->h = h;
  return std::unique_ptr<CounterArea>(new CounterArea(std::move(impl)));
}

std::unique_ptr<CounterArea> CounterArea::Attach(const std::string& name, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  try {
    impl->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
    impl->region = bip::mapped_region(impl->shm, bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    *error = "shared memory " + name + ": " + e.what();
    return nullptr;
  }
  auto* h = static_cast<AreaHeader*>(impl->region.get_address());
  if (impl->region.get_size() < sizeof(AreaHeader) || h->magic != kMagic ||
      h->version != kVersion || h->total_bytes > impl->region.get_size()) {
    *error =
        "shared memory " + name + " is not a counter area of version " + std::to_string(kVersion);
    return nullptr;
  }
  impl->h = h;
  return std::unique_ptr<CounterArea>(new CounterArea(std::move(impl)));
}

bool CounterArea::Remove(const std::string& name) {
  return bip::shared_memory_object::remove(name.c_str());
}

CounterBlock* CounterArea::Claim(pid_t pid) {
  impl_->Lock();
  impl_->FoldDead();
  CounterBlock* got = nullptr;
  // A pid owns at most one block: a process that claims again (the master
  // after re-executing itself) gets its block back with its figures.
  for (uint32_t b = 0; b < impl_->h->blocks && got == nullptr; b++) {
    if (impl_->block(b)->owner_.load(std::memory_order_relaxed) == pid) got = impl_->block(b);
  }
  for (uint32_t b = 0; b < impl_->h->blocks && got == nullptr; b++) {
    CounterBlock* blk = impl_->block(b);
    if (blk->owner_.load(std::memory_order_relaxed) != 0) continue;
    for (uint32_t i = 0; i < impl_->h->counters; i++) {
      blk->values_[i].store(0, std::memory_order_relaxed);
    }
    blk->owner_.store(pid, std::memory_order_release);
    got = blk;
  }
  // Every block owned now, not only this one: blocks claimed by an older
  // binary before an upgrade did not raise blocks_claimed.
  uint32_t high = impl_->h->blocks_claimed.load(std::memory_order_relaxed);
  for (uint32_t b = high; b < impl_->h->blocks; b++) {
    if (impl_->block(b)->owner_.load(std::memory_order_relaxed) != 0) high = b + 1;
  }
  impl_->h->blocks_claimed.store(high, std::memory_order_release);
  impl_->Unlock();
  return got;
}

void CounterArea::Release(CounterBlock* block) {
  impl_->Lock();
  for (uint32_t b = 0; b < impl_->h->blocks; b++) {
    if (impl_->block(b) == block && block->owner_.load(std::memory_order_relaxed) != 0) {
      impl_->Fold(b);
    }
  }
  impl_->Unlock();
}

std::optional<uint64_t> CounterArea::Peek(pid_t pid, uint32_t i) {
  if (i >= impl_->h->counters) return std::nullopt;
  for (uint32_t b = 0; b < impl_->h->blocks; b++) {
    CounterBlock* blk = impl_->block(b);
    if (blk->owner_.load(std::memory_order_acquire) == pid) return blk->Get(i);
  }
  return std::nullopt;
}

std::vector<uint64_t> CounterArea::Sum() {
  impl_->Lock();
  impl_->FoldDead();
  AreaHeader* h = impl_->h;
  const uint64_t* retired = impl_->retired(h->current.load(std::memory_order_acquire));
  std::vector<uint64_t> sum(retired, retired + h->counters);
  for (uint32_t b = 0; b < h->blocks; b++) {
    CounterBlock* blk = impl_->block(b);
    if (blk->owner_.load(std::memory_order_acquire) == 0) continue;
    for (uint32_t i = 0; i < h->counters; i++) sum[i] += blk->Get(i);
  }
  impl_->Unlock();
  return sum;
}

uint64_t CounterArea::SumGauge(uint32_t i) const {
  AreaHeader* h = impl_->h;
  uint32_t n = h->blocks_claimed.load(std::memory_order_acquire);
  if (n == 0 || n > h->blocks) n = h->blocks;
  uint64_t sum = 0;
  for (uint32_t b = 0; b < n; b++) {
    CounterBlock* blk = impl_->block(b);
    if (blk->owner_.load(std::memory_order_relaxed) != 0) sum += blk->Get(i);
  }
  return sum;
}

void CounterArea::WithLockForTesting(const std::function<void()>& fn) {
  impl_->Lock();
  fn();
  impl_->Unlock();
}

void CounterArea::ForgetDead(pid_t pid) {
  // The dead process writes its block no more, so its gauges can be
  // cleared without the lock: other workers' admission (SumGauge) stops
  // counting its clients now, whoever holds the lock.
  for (uint32_t b = 0; b < impl_->h->blocks; b++) {
    CounterBlock* blk = impl_->block(b);
    if (blk->owner_.load(std::memory_order_acquire) != pid) continue;
    for (uint32_t i = 0; i < impl_->h->gauges; i++) blk->Set(i, 0);
  }
  // The counters are folded now if the lock is free, else by the next
  // Sum or Claim (any process), which folds dead owners first.
  if (impl_->TryLock()) {
    impl_->FoldDead();
    impl_->Unlock();
  }
}

uint32_t CounterArea::LiveBlocks() {
  impl_->Lock();
  impl_->FoldDead();
  uint32_t n = 0;
  for (uint32_t b = 0; b < impl_->h->blocks; b++) {
    if (impl_->block(b)->owner_.load(std::memory_order_relaxed) != 0) n++;
  }
  impl_->Unlock();
  return n;
}

void CounterArea::SetLabel(uint32_t i, std::string_view label) {
  if (i >= impl_->h->counters) return;
  char* dst = reinterpret_cast<char*>(impl_->h) + impl_->h->labels_offset + i * kLabelBytes;
  size_t n = std::min(label.size(), kLabelBytes - 1);
  memcpy(dst, label.data(), n);
  dst[n] = '\0';
}

std::string CounterArea::Label(uint32_t i) const {
  if (i >= impl_->h->counters) return {};
  const char* src =
      reinterpret_cast<const char*>(impl_->h) + impl_->h->labels_offset + i * kLabelBytes;
  return std::string(src, strnlen(src, kLabelBytes));
}

void CounterArea::SetSlowLogSettings(int64_t slower_than_micros, uint32_t max_len) {
  impl_->h->slowlog_threshold.store(slower_than_micros, std::memory_order_relaxed);
  impl_->h->slowlog_max_len.store(std::min(max_len, impl_->h->slowlog_capacity),
                                  std::memory_order_relaxed);
}

int64_t CounterArea::SlowLogThreshold() const {
  return impl_->h->slowlog_threshold.load(std::memory_order_relaxed);
}

uint32_t CounterArea::SlowLogMaxLen() const {
  return impl_->h->slowlog_max_len.load(std::memory_order_relaxed);
}

namespace {

void CopyCut(char* dst, size_t cap, std::string_view src) {
  size_t n = std::min(src.size(), cap - 1);
  memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

}  // namespace

void CounterArea::SlowLogAdd(const SlowLogEntry& e) {
  AreaHeader* h = impl_->h;
  if (h->slowlog_capacity == 0) return;
  impl_->Lock();
  auto* ring = reinterpret_cast<SlowRecord*>(reinterpret_cast<char*>(h) + h->slowlog_offset);
  uint64_t id = h->slowlog_next_id;
  SlowRecord* r = &ring[id % h->slowlog_capacity];
  r->id = id;
  r->unix_time = e.unix_time;
  r->micros = e.micros;
  CopyCut(r->client_addr, sizeof(r->client_addr), e.client_addr);
  CopyCut(r->client_name, sizeof(r->client_name), e.client_name);
  size_t used = 0;
  uint16_t argc = 0;
  for (const std::string& a : e.args) {
    size_t n = std::min(a.size(), sizeof(r->args) - used - 2);
    if (used + 2 > sizeof(r->args) || (n == 0 && !a.empty())) break;
    uint16_t len = static_cast<uint16_t>(n);
    memcpy(r->args + used, &len, 2);
    memcpy(r->args + used + 2, a.data(), n);
    used += 2 + n;
    argc++;
  }
  r->argc = argc;
  r->args_bytes = static_cast<uint16_t>(used);
  h->slowlog_next_id = id + 1;  // publish
  impl_->Unlock();
}

std::vector<SlowLogEntry> CounterArea::SlowLogGet(size_t count) {
  AreaHeader* h = impl_->h;
  std::vector<SlowLogEntry> out;
  impl_->Lock();
  auto* ring = reinterpret_cast<SlowRecord*>(reinterpret_cast<char*>(h) + h->slowlog_offset);
  uint64_t len = std::min<uint64_t>(h->slowlog_next_id - h->slowlog_oldest_id,
                                    h->slowlog_max_len.load(std::memory_order_relaxed));
  for (uint64_t i = 0; i < len && out.size() < count; i++) {
    const SlowRecord* r = &ring[(h->slowlog_next_id - 1 - i) % h->slowlog_capacity];
    SlowLogEntry e;
    e.id = r->id;
    e.unix_time = r->unix_time;
    e.micros = r->micros;
    e.client_addr = std::string(r->client_addr, strnlen(r->client_addr, sizeof(r->client_addr)));
    e.client_name = std::string(r->client_name, strnlen(r->client_name, sizeof(r->client_name)));
    size_t at = 0;
    for (uint16_t a = 0; a < r->argc && at + 2 <= r->args_bytes; a++) {
      uint16_t n;
      memcpy(&n, r->args + at, 2);
      if (at + 2 + n > r->args_bytes) break;
      e.args.emplace_back(r->args + at + 2, n);
      at += 2 + n;
    }
    out.push_back(std::move(e));
  }
  impl_->Unlock();
  return out;
}

uint64_t CounterArea::SlowLogLen() {
  impl_->Lock();
  uint64_t len = std::min<uint64_t>(impl_->h->slowlog_next_id - impl_->h->slowlog_oldest_id,
                                    impl_->h->slowlog_max_len.load(std::memory_order_relaxed));
  impl_->Unlock();
  return len;
}

void CounterArea::SlowLogReset() {
  impl_->Lock();
  impl_->h->slowlog_oldest_id = impl_->h->slowlog_next_id;
  impl_->Unlock();
}

uint32_t CounterArea::counters() const { return impl_->h->counters; }
uint32_t CounterArea::gauges() const { return impl_->h->gauges; }

}  // namespace redhub::shm
