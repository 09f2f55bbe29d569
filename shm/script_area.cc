#include "script_area.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>

#include "crash_point.h"
#include "robust_mutex.h"
#include "syserr.h"

namespace redhub::shm {
namespace {

constexpr uint64_t kMagic = 0x52484c55'414c4f47ull;  // "RHLUALOG"
constexpr uint32_t kVersion = 1;
// The published word: epoch << kEndBits | end. 2^40 bytes is beyond any half.
constexpr int kEndBits = 40;
constexpr uint64_t kEndMask = (uint64_t{1} << kEndBits) - 1;

struct AreaHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t pad;
  uint64_t half_bytes;
  uint64_t half_offset[2];
  uint64_t total_bytes;
  pthread_mutex_t lock;
  std::atomic<uint64_t> published;
  std::atomic<uint64_t> compactions;
};

// A record in the log: this header, the key, the bytes, padding to 8.
struct RecordHeader {
  uint32_t kind;
  uint32_t key_len;
  uint64_t bytes_len;
};

uint64_t AlignUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

uint64_t RecordSize(const ScriptRecord& r) {
  return AlignUp(sizeof(RecordHeader) + r.key.size() + r.bytes.size(), 8);
}

}  // namespace

struct ScriptArea::Impl {
  int fd = -1;
  void* base = nullptr;
  size_t bytes = 0;
  AreaHeader* h = nullptr;

  ~Impl() {
    if (base != nullptr) munmap(base, bytes);
    if (fd >= 0) close(fd);
  }
  char* half(uint64_t epoch) const {
    return reinterpret_cast<char*>(h) + h->half_offset[epoch & 1];
  }

  void Lock() {
    // A dead holder wrote at most bytes past the published end, which no
    // reader looks at and the next append overwrites: nothing to repair.
    if (LockRobustWaiting(&h->lock, "script area", 0) == LockResult::kOwnerDied) {
      MarkConsistent(&h->lock);
    }
  }
  void Unlock() { UnlockRobust(&h->lock); }

  // Parses the records of half `epoch` in [from, end). False if a record
  // runs past `end` (a torn read: the half was rewritten under the reader).
  bool Parse(uint64_t epoch, uint64_t from, uint64_t end, std::vector<ScriptRecord>* out) const {
    const char* p = half(epoch);
    while (from < end) {
      if (end - from < sizeof(RecordHeader)) return false;
      RecordHeader rh;
      memcpy(&rh, p + from, sizeof rh);
      const uint64_t size = AlignUp(sizeof rh + uint64_t{rh.key_len} + rh.bytes_len, 8);
      if (size > end - from) return false;
      ScriptRecord r;
      r.kind = static_cast<ScriptRecord::Kind>(rh.kind);
      r.key.assign(p + from + sizeof rh, rh.key_len);
      r.bytes.assign(p + from + sizeof rh + rh.key_len, rh.bytes_len);
      out->push_back(std::move(r));
      from += size;
    }
    return true;
  }

  // Writes records into half `epoch` from `at`; returns the new end.
  uint64_t Write(uint64_t epoch, uint64_t at, std::span<const ScriptRecord> records) {
    char* p = half(epoch);
    for (const ScriptRecord& r : records) {
      RecordHeader rh{static_cast<uint32_t>(r.kind), static_cast<uint32_t>(r.key.size()),
                      r.bytes.size()};
      memcpy(p + at, &rh, sizeof rh);
      memcpy(p + at + sizeof rh, r.key.data(), r.key.size());
      MaybeCrash(CrashPoint::kScriptAppend);
      memcpy(p + at + sizeof rh + r.key.size(), r.bytes.data(), r.bytes.size());
      at += RecordSize(r);
    }
    return at;
  }
};

ScriptArea::ScriptArea(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ScriptArea::~ScriptArea() = default;

std::unique_ptr<ScriptArea> ScriptArea::Create(const ScriptAreaOptions& options,
                                               std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->fd = memfd_create("redhub-scripts", MFD_CLOEXEC);
  if (impl->fd < 0) {
    *error = SysError("memfd_create(redhub-scripts)", errno);
    return nullptr;
  }
  const uint64_t header = AlignUp(sizeof(AreaHeader), 64);
  const uint64_t half = AlignUp(options.half_bytes, 4096);
  impl->bytes = header + 2 * half;
  // Sparse: a page of the memfd takes memory only once written.
  if (ftruncate(impl->fd, static_cast<off_t>(impl->bytes)) != 0) {
    *error = SysError("ftruncate(redhub-scripts, " + std::to_string(impl->bytes) + ")", errno);
    return nullptr;
  }
  impl->base = mmap(nullptr, impl->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, impl->fd, 0);
  if (impl->base == MAP_FAILED) {
    impl->base = nullptr;
    *error = SysError("mmap(redhub-scripts, " + std::to_string(impl->bytes) + ")", errno);
    return nullptr;
  }
  auto* h = new (impl->base) AreaHeader{};
  h->version = kVersion;
  h->half_bytes = half;
  h->half_offset[0] = header;
  h->half_offset[1] = header + half;
  h->total_bytes = impl->bytes;
  InitRobustMutex(&h->lock);
  // Epoch 1: a reader's 0 means "never read".
  h->published.store(uint64_t{1} << kEndBits, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  h->magic = kMagic;
  impl->h = h;
  return std::unique_ptr<ScriptArea>(new ScriptArea(std::move(impl)));
}

std::unique_ptr<ScriptArea> ScriptArea::Adopt(int fd, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->fd = fd;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    *error = SysError("fstat(script area fd " + std::to_string(fd) + ")", errno);
    return nullptr;
  }
  if (static_cast<size_t>(st.st_size) < sizeof(AreaHeader)) {
    *error = "script area fd " + std::to_string(fd) + " is too small to be one";
    return nullptr;
  }
  impl->bytes = static_cast<size_t>(st.st_size);
  impl->base = mmap(nullptr, impl->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (impl->base == MAP_FAILED) {
    impl->base = nullptr;
    *error = SysError("mmap(script area fd " + std::to_string(fd) + ")", errno);
    return nullptr;
  }
  impl->h = static_cast<AreaHeader*>(impl->base);
  if (impl->h->magic != kMagic || impl->h->version != kVersion ||
      impl->h->total_bytes != impl->bytes) {
    *error = "script area fd " + std::to_string(fd) + " has another format (version " +
             std::to_string(impl->h->version) + ", this binary reads " + std::to_string(kVersion) +
             ")";
    return nullptr;
  }
  return std::unique_ptr<ScriptArea>(new ScriptArea(std::move(impl)));
}

int ScriptArea::fd() const { return impl_->fd; }

uint64_t ScriptArea::version() const { return impl_->h->published.load(std::memory_order_acquire); }

uint64_t ScriptArea::Read(uint64_t epoch, uint64_t from, std::vector<ScriptRecord>* out,
                          uint64_t* epoch_out) const {
  const size_t kept = out->size();
  for (;;) {
    const uint64_t p = impl_->h->published.load(std::memory_order_acquire);
    const uint64_t e = p >> kEndBits, end = p & kEndMask;
    const uint64_t start = e == epoch ? from : 0;
    const bool parsed = impl_->Parse(e, start, end, out);
    // The half read is rewritten only by the compaction after next (each
    // compaction writes the other half): the read was whole unless the
    // epoch moved by two or more meanwhile.
    const uint64_t after = impl_->h->published.load(std::memory_order_acquire) >> kEndBits;
    if (parsed && after < e + 2) {
      *epoch_out = e;
      return end;
    }
    out->resize(kept);
  }
}

bool ScriptArea::Append(std::vector<ScriptRecord> records, std::string* error,
                        const CheckFn& check) {
  AreaHeader* h = impl_->h;
  impl_->Lock();
  if (check && !check(&records, error)) {
    impl_->Unlock();
    return false;
  }
  uint64_t need = 0;
  for (const ScriptRecord& r : records) need += RecordSize(r);
  const uint64_t p = h->published.load(std::memory_order_relaxed);
  uint64_t epoch = p >> kEndBits, end = p & kEndMask;
  if (end + need <= h->half_bytes) {
    end = impl_->Write(epoch, end, records);
  } else {
    // Compaction: the live records of this half and the new ones, in their
    // order, into the other half.
    std::vector<ScriptRecord> all;
    impl_->Parse(epoch, 0, end, &all);
    all.insert(all.end(), records.begin(), records.end());
    std::vector<ScriptRecord> live;
    std::map<std::string, size_t> script_at, library_at;  // key -> index in live
    for (ScriptRecord& r : all) {
      switch (r.kind) {
        case ScriptRecord::kScriptFlush:
          for (auto& [k, i] : script_at) live[i].kind = ScriptRecord::kScriptFlush;
          script_at.clear();
          break;
        case ScriptRecord::kScript:
          if (!script_at.count(r.key)) {
            script_at[r.key] = live.size();
            live.push_back(std::move(r));
          }
          break;
        case ScriptRecord::kLibrary:
          if (auto it = library_at.find(r.key); it != library_at.end()) {
            live[it->second].kind = ScriptRecord::kScriptFlush;  // dropped below
          }
          library_at[r.key] = live.size();
          live.push_back(std::move(r));
          break;
        case ScriptRecord::kLibraryDelete:
          if (auto it = library_at.find(r.key); it != library_at.end()) {
            live[it->second].kind = ScriptRecord::kScriptFlush;
            library_at.erase(it);
          }
          break;
        case ScriptRecord::kFunctionFlush:
          for (auto& [k, i] : library_at) live[i].kind = ScriptRecord::kScriptFlush;
          library_at.clear();
          break;
      }
    }
    // Entries marked kScriptFlush above are the dead ones: a flush needs no
    // record in a fresh half, which starts empty.
    std::vector<ScriptRecord> kept;
    uint64_t size = 0;
    for (ScriptRecord& r : live) {
      if (r.kind == ScriptRecord::kScriptFlush) continue;
      size += RecordSize(r);
      kept.push_back(std::move(r));
    }
    if (size > h->half_bytes) {
      impl_->Unlock();
      *error = "ERR the shared script cache is full (" + std::to_string(h->half_bytes) +
               " bytes of live scripts and libraries)";
      return false;
    }
    epoch++;
    end = impl_->Write(epoch, 0, kept);
    h->compactions.fetch_add(1, std::memory_order_relaxed);
  }
  MaybeCrash(CrashPoint::kScriptBeforePublish);
  h->published.store(epoch << kEndBits | end, std::memory_order_release);
  impl_->Unlock();
  return true;
}

uint64_t ScriptArea::bytes_used() const { return version() & kEndMask; }
uint64_t ScriptArea::compactions() const {
  return impl_->h->compactions.load(std::memory_order_relaxed);
}

}  // namespace redhub::shm
