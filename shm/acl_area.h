// The users of the daemon (ACL) and its ACL LOG, shared by the master and
// every worker: a small shared mapping the master creates before it forks
// (a memfd, so no /dev/shm name to clean up and nothing left behind by a
// killed master), which a binary upgrade hands to the new master by
// descriptor.
//
// The users are one text, in the worker's own serialisation (acl_user.h);
// this file knows nothing of its meaning. It is kept twice: a writer fills
// the copy not published, then publishes it and a new generation with one
// atomic store, all under the area's robust lock. A writer killed at any
// instant leaves the published copy whole (the half-written one is never
// read), so no reader ever sees a torn user, and the next locker only marks
// the lock consistent. Readers test the generation (one load of a shared
// word, on every command) and re-read the text only when it moved.
//
//   auto area = AclArea::Create({}, &err);           // master, before fork
//   area->Update([](const std::string& cur, std::string* next, std::string* e) {
//     *next = cur + "...";  return true; }, &err);   // any worker
//   if (area->generation() != mine) area->Read(&text);
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace redhub::shm {

struct AclAreaOptions {
  size_t text_capacity = 1 << 20;  // bytes of each copy of the users' text
  uint32_t log_capacity = 1024;    // the most ACL LOG entries acllog-max-len can keep
};

// One ACL LOG entry (Redis 7.0's fields). Text fields are cut at the record's
// sizes (AclLogRecord in acl_area.cc): object at 255 bytes, username at 127,
// client_info at 511.
struct AclLogEntry {
  uint64_t count = 1;
  std::string reason;   // "command", "key", "channel", "auth"
  std::string context;  // "toplevel", "multi", "lua"
  std::string object;
  std::string username;
  int64_t created_ms = 0;  // of the last occurrence, ms since the epoch
  std::string client_info;
};

class AclArea {
 public:
  static std::unique_ptr<AclArea> Create(const AclAreaOptions& options, std::string* error);
  // The new master after an upgrade: the area the old one handed over.
  static std::unique_ptr<AclArea> Adopt(int fd, std::string* error);
  ~AclArea();

  // The mapping's descriptor (close-on-exec; the upgrade clears it).
  int fd() const;

  // Moves at every Update; never 0 once the master wrote the first users.
  uint64_t generation() const { return published_->load(std::memory_order_acquire) >> 1; }
  // The text last published and its generation.
  uint64_t Read(std::string* text);
  // Under the lock: fn gets the published text and writes the next one, or
  // returns false with *error (nothing changes). The next text is published
  // with a new generation. False with *error also if it does not fit, or
  // if wait_ms >= 0 and the lock stayed busy that long (the master: it must
  // not wait on a hung worker); wait_ms < 0 waits, reporting progress.
  using UpdateFn =
      std::function<bool(const std::string& current, std::string* next, std::string* error)>;
  // *generation (if given): the generation the next text was published as.
  bool Update(const UpdateFn& fn, std::string* error, long wait_ms = -1,
              uint64_t* generation = nullptr);

  // ACL LOG, newest first. An entry with the same reason, context, object
  // and user as one logged in the last 60 s counts into it (and becomes the
  // newest), as Redis groups them.
  void LogAdd(const AclLogEntry& entry);
  std::vector<AclLogEntry> LogGet(size_t count);
  void LogReset();
  // Takes no lock (the master calls it); older entries beyond it are
  // dropped at the next LogAdd and never listed.
  void SetLogMaxLen(uint32_t max_len);
  uint32_t log_capacity() const;

 private:
  struct Impl;
  explicit AclArea(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  // The shared word generation() reads on every batch, without a call.
  const std::atomic<uint64_t>* published_;
};

}  // namespace redhub::shm
