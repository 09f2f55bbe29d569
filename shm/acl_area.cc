#include "acl_area.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "crash_point.h"
#include "robust_mutex.h"
#include "syserr.h"

namespace redhub::shm {
namespace {

constexpr uint64_t kMagic = 0x52484143'4c534831ull;  // "RHACLSH1"
constexpr uint32_t kVersion = 1;
// Redis's ACL_LOG_GROUPING_MAX_TIME_DELTA.
constexpr int64_t kGroupingMillis = 60000;

struct AreaHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t log_capacity;
  uint64_t text_capacity;
  uint64_t text_offset[2];
  uint64_t log_offset;
  uint64_t total_bytes;
  pthread_mutex_t lock;
  // generation << 1 | the copy published: both move with one store.
  std::atomic<uint64_t> published;
  uint64_t text_len[2];
  std::atomic<uint32_t> log_max_len;
  uint64_t log_next_seq;  // under the lock; records with a seq are visible
};

// A field of a record: its bytes, cut to fit.
template <size_t N>
struct Field {
  uint16_t len;
  char bytes[N];
  void Set(const std::string& s) {
    len = static_cast<uint16_t>(std::min(s.size(), N));
    memcpy(bytes, s.data(), len);
  }
  std::string Get() const { return std::string(bytes, std::min<size_t>(len, N)); }
};

// One ACL LOG entry. seq 0: free. A record is filled while its seq is 0 and
// made visible by setting it (under the lock), so a writer's death leaves
// at most an invisible record.
struct LogRecord {
  uint64_t seq;
  uint64_t count;
  int64_t created_ms;
  Field<15> reason;
  Field<15> context;
  Field<255> object;
  Field<127> username;
  Field<511> client_info;
};

uint64_t AlignUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

int64_t NowMillis() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

struct AclArea::Impl {
  int fd = -1;
  void* base = nullptr;
  size_t bytes = 0;
  AreaHeader* h = nullptr;

  ~Impl() {
    if (base != nullptr) munmap(base, bytes);
    if (fd >= 0) close(fd);
  }
  char* text(uint32_t copy) { return reinterpret_cast<char*>(h) + h->text_offset[copy]; }
  LogRecord* record(uint32_t i) {
    return reinterpret_cast<LogRecord*>(reinterpret_cast<char*>(h) + h->log_offset) + i;
  }

  void Lock() { Took(LockRobustWaiting(&h->lock, "acl area", 0)); }
  bool TimedLock(long millis) {
    LockResult r = TimedLockRobust(&h->lock, "acl area", 0, millis);
    if (r == LockResult::kBusy) return false;
    Took(r);
    return true;
  }
  void Took(LockResult r) {
    if (r == LockResult::kOwnerDied) {
      // The published copy is whole whatever the dead holder was doing (it
      // wrote only the other copy, or an invisible log record). Publishing
      // it again makes every reader re-read, in case the holder died
      // between its publish and anything a reader keyed on.
      uint64_t p = h->published.load(std::memory_order_relaxed);
      h->published.store(p + 2, std::memory_order_release);
      MarkConsistent(&h->lock);
    }
  }
  void Unlock() { UnlockRobust(&h->lock); }

  // Visible records, newest first.
  std::vector<LogRecord*> Visible() {
    std::vector<LogRecord*> v;
    for (uint32_t i = 0; i < h->log_capacity; i++) {
      if (record(i)->seq != 0) v.push_back(record(i));
    }
    std::sort(v.begin(), v.end(), [](LogRecord* a, LogRecord* b) { return a->seq > b->seq; });
    return v;
  }
  // Keeps the newest max_len records.
  void Trim() {
    std::vector<LogRecord*> v = Visible();
    uint32_t max_len = std::min(h->log_max_len.load(std::memory_order_relaxed), h->log_capacity);
    for (size_t i = max_len; i < v.size(); i++) v[i]->seq = 0;
  }
  // A free record, or the oldest visible one.
  LogRecord* Slot() {
    LogRecord* oldest = nullptr;
    for (uint32_t i = 0; i < h->log_capacity; i++) {
      LogRecord* r = record(i);
      if (r->seq == 0) return r;
      if (oldest == nullptr || r->seq < oldest->seq) oldest = r;
    }
    return oldest;
  }
};

AclArea::AclArea(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)), published_(&impl_->h->published) {}
AclArea::~AclArea() = default;

std::unique_ptr<AclArea> AclArea::Create(const AclAreaOptions& options, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->fd = memfd_create("redhub-acl", MFD_CLOEXEC);
  if (impl->fd < 0) {
    *error = SysError("memfd_create(redhub-acl)", errno);
    return nullptr;
  }
  const uint64_t header = AlignUp(sizeof(AreaHeader), 64);
  const uint64_t text = AlignUp(options.text_capacity, 64);
  const uint64_t log = AlignUp(sizeof(LogRecord) * uint64_t{options.log_capacity}, 64);
  impl->bytes = header + 2 * text + log;
  if (ftruncate(impl->fd, static_cast<off_t>(impl->bytes)) != 0) {
    *error = SysError("ftruncate(redhub-acl, " + std::to_string(impl->bytes) + ")", errno);
    return nullptr;
  }
  impl->base = mmap(nullptr, impl->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, impl->fd, 0);
  if (impl->base == MAP_FAILED) {
    impl->base = nullptr;
    *error = SysError("mmap(redhub-acl, " + std::to_string(impl->bytes) + ")", errno);
    return nullptr;
  }
  auto* h = new (impl->base) AreaHeader{};
  h->version = kVersion;
  h->log_capacity = options.log_capacity;
  h->text_capacity = text;
  h->text_offset[0] = header;
  h->text_offset[1] = header + text;
  h->log_offset = header + 2 * text;
  h->total_bytes = impl->bytes;
  InitRobustMutex(&h->lock);
  h->published.store(0, std::memory_order_relaxed);
  h->log_max_len.store(128, std::memory_order_relaxed);
  h->log_next_seq = 1;
  std::atomic_thread_fence(std::memory_order_release);
  h->magic = kMagic;
  impl->h = h;
  return std::unique_ptr<AclArea>(new AclArea(std::move(impl)));
}

std::unique_ptr<AclArea> AclArea::Adopt(int fd, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->fd = fd;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    *error = SysError("fstat(acl area fd " + std::to_string(fd) + ")", errno);
    return nullptr;
  }
  if (static_cast<size_t>(st.st_size) < sizeof(AreaHeader)) {
    *error = "acl area fd " + std::to_string(fd) + " is too small to be one";
    return nullptr;
  }
  impl->bytes = static_cast<size_t>(st.st_size);
  impl->base = mmap(nullptr, impl->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (impl->base == MAP_FAILED) {
    impl->base = nullptr;
    *error = SysError("mmap(acl area fd " + std::to_string(fd) + ")", errno);
    return nullptr;
  }
  impl->h = static_cast<AreaHeader*>(impl->base);
  if (impl->h->magic != kMagic || impl->h->version != kVersion ||
      impl->h->total_bytes != impl->bytes) {
    *error = "acl area fd " + std::to_string(fd) + " has another format (version " +
             std::to_string(impl->h->version) + ", this binary reads " + std::to_string(kVersion) +
             ")";
    return nullptr;
  }
  return std::unique_ptr<AclArea>(new AclArea(std::move(impl)));
}

int AclArea::fd() const { return impl_->fd; }

uint64_t AclArea::Read(std::string* text) {
  impl_->Lock();
  const uint64_t p = impl_->h->published.load(std::memory_order_relaxed);
  const uint32_t copy = static_cast<uint32_t>(p & 1);
  text->assign(impl_->text(copy), impl_->h->text_len[copy]);
  impl_->Unlock();
  return p >> 1;
}

bool AclArea::Update(const UpdateFn& fn, std::string* error, long wait_ms, uint64_t* generation) {
  AreaHeader* h = impl_->h;
  if (wait_ms < 0) {
    impl_->Lock();
  } else if (!impl_->TimedLock(wait_ms)) {
    *error = "the ACL area's lock stayed busy for " + std::to_string(wait_ms) + " ms";
    return false;
  }
  const uint64_t p = h->published.load(std::memory_order_relaxed);
  const uint32_t copy = static_cast<uint32_t>(p & 1);
  std::string current(impl_->text(copy), h->text_len[copy]);
  std::string next;
  bool ok;
  try {
    ok = fn(current, &next, error);
  } catch (...) {
    impl_->Unlock();
    throw;
  }
  if (ok && next.size() > h->text_capacity) {
    *error = "the users take " + std::to_string(next.size()) +
             " bytes, more than the shared ACL area holds (" + std::to_string(h->text_capacity) +
             ")";
    ok = false;
  }
  if (ok) {
    const uint32_t other = copy ^ 1;
    const size_t half = next.size() / 2;
    memcpy(impl_->text(other), next.data(), half);
    MaybeCrash(CrashPoint::kAclCopyMid);
    memcpy(impl_->text(other) + half, next.data() + half, next.size() - half);
    h->text_len[other] = next.size();
    MaybeCrash(CrashPoint::kAclBeforePublish);
    // One store publishes the copy and the generation: a reader that sees
    // the new generation reads the new text (it takes the lock to read).
    h->published.store((((p >> 1) + 1) << 1) | other, std::memory_order_release);
    if (generation != nullptr) *generation = (p >> 1) + 1;
  }
  impl_->Unlock();
  return ok;
}

void AclArea::LogAdd(const AclLogEntry& e) {
  const int64_t now = e.created_ms != 0 ? e.created_ms : NowMillis();
  impl_->Lock();
  AreaHeader* h = impl_->h;
  uint64_t count = 1;
  LogRecord* match = nullptr;
  for (LogRecord* r : impl_->Visible()) {
    if (r->reason.Get() == e.reason && r->context.Get() == e.context &&
        r->object.Get() == e.object.substr(0, 255) &&
        r->username.Get() == e.username.substr(0, 127) && now - r->created_ms < kGroupingMillis) {
      match = r;
      count = r->count + 1;
      break;
    }
  }
  // The grouped entry is written whole into another record, then the old
  // one is hidden: a death in between shows both, never a torn one. (With
  // no other record free, the oldest is reused, which may be the match
  // itself: then a death mid-write loses that entry, never tears it.)
  // The seq stores are atomic (release) so that the compiler keeps them
  // where they are: a plain `seq = 0` before the fields, overwritten after
  // them, is a dead store it may drop, and a death mid-fill would then show
  // the reused record torn.
  LogRecord* slot = impl_->Slot();
  std::atomic_ref<uint64_t>(slot->seq).store(0, std::memory_order_release);
  slot->count = count;
  slot->created_ms = now;
  slot->reason.Set(e.reason);
  slot->context.Set(e.context);
  slot->object.Set(e.object);
  MaybeCrash(CrashPoint::kAclLogAdd);
  slot->username.Set(e.username);
  slot->client_info.Set(e.client_info);
  const uint64_t seq = h->log_next_seq++;
  std::atomic_ref<uint64_t>(slot->seq).store(seq, std::memory_order_release);
  if (match != nullptr && match != slot) match->seq = 0;
  impl_->Trim();
  impl_->Unlock();
}

std::vector<AclLogEntry> AclArea::LogGet(size_t count) {
  impl_->Lock();
  std::vector<AclLogEntry> out;
  count = std::min<size_t>(count, impl_->h->log_max_len.load(std::memory_order_relaxed));
  for (LogRecord* r : impl_->Visible()) {
    if (out.size() >= count) break;
    AclLogEntry e;
    e.count = r->count;
    e.reason = r->reason.Get();
    e.context = r->context.Get();
    e.object = r->object.Get();
    e.username = r->username.Get();
    e.created_ms = r->created_ms;
    e.client_info = r->client_info.Get();
    out.push_back(std::move(e));
  }
  impl_->Unlock();
  return out;
}

void AclArea::LogReset() {
  impl_->Lock();
  for (uint32_t i = 0; i < impl_->h->log_capacity; i++) impl_->record(i)->seq = 0;
  impl_->Unlock();
}

void AclArea::SetLogMaxLen(uint32_t max_len) {
  impl_->h->log_max_len.store(std::min(max_len, impl_->h->log_capacity), std::memory_order_relaxed);
}

uint32_t AclArea::log_capacity() const { return impl_->h->log_capacity; }

}  // namespace redhub::shm
