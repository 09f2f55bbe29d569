// The scripts and function libraries of the daemon (SCRIPT LOAD, EVAL,
// FUNCTION LOAD / DELETE / FLUSH / RESTORE), shared by every worker: a
// shared mapping the master creates before it forks (a memfd, as the ACL
// area: nothing left in /dev/shm, handed to a new master by descriptor at a
// binary upgrade, so scripts survive reload and upgrade).
//
// It is a log, not a table: each change is a record (a script's body, a
// library's code, a delete, a flush) appended under the area's robust lock
// and made visible by one atomic store of the log's end. A worker keeps
// its own compiled copy (a Lua state cannot live in shared memory) and
// replays the records past the offset it has read, in order, before it
// runs anything that depends on them: every worker converges to the same
// scripts and libraries in the same order. This file knows nothing of Lua:
// a record is a kind, a key (a script's sha, a library's name) and bytes.
//
// A writer killed at any instant leaves the log as before its append (the
// bytes past the end are never read, the next writer overwrites them).
// When the log is full it is compacted into the other half of the mapping
// (the live records only: the newest script of each key since the last
// script flush, the newest library of each name not deleted since the last
// function flush), published with a new epoch by the same one store;
// readers that see a new epoch replay the new half from its start.
//
//   auto area = ScriptArea::Create({}, &err);                 // master
//   area->Append({{ScriptRecord::kScript, sha, body}}, &err);  // a worker
//   uint64_t epoch, end = area->Read(epoch_seen, from, &records, &epoch);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace redhub::shm {

struct ScriptAreaOptions {
  size_t half_bytes = 32 << 20;  // each half of the log; pages are used as written
};

struct ScriptRecord {
  enum Kind : uint32_t {
    kScript = 1,         // key: sha; bytes: the body
    kScriptFlush = 2,    // SCRIPT FLUSH
    kLibrary = 3,        // key: library name; bytes: its code (replaces one of that name)
    kLibraryDelete = 4,  // key: library name
    kFunctionFlush = 5,  // FUNCTION FLUSH
  };
  Kind kind;
  std::string key;
  std::string bytes;
};

class ScriptArea {
 public:
  static std::unique_ptr<ScriptArea> Create(const ScriptAreaOptions& options, std::string* error);
  // The new master after an upgrade: the area the old one handed over.
  static std::unique_ptr<ScriptArea> Adopt(int fd, std::string* error);
  ~ScriptArea();

  int fd() const;  // close-on-exec; the upgrade clears it

  // One load: the (epoch, end) word. A reader compares it with what it has
  // replayed before doing more.
  uint64_t version() const;

  // Records published after `from` in epoch `epoch`, appended to *out; the
  // return value is the offset to pass next time. If the area's epoch is
  // not `epoch` (compacted since, or epoch 0 = never read), every record
  // of the current epoch is returned and *epoch_out differs from `epoch`:
  // the reader must drop what it had first. Takes no lock.
  uint64_t Read(uint64_t epoch, uint64_t from, std::vector<ScriptRecord>* out,
                uint64_t* epoch_out) const;

  // Under the lock: `check` (if given) runs first and may refuse with
  // *error, or add to *records (it typically replays the log and validates
  // the change against it, so that two workers loading the same library
  // are serialised); then the records are appended and published together
  // by one store. False with *error if refused or if they do not fit even
  // after a compaction.
  using CheckFn = std::function<bool(std::vector<ScriptRecord>* records, std::string* error)>;
  bool Append(std::vector<ScriptRecord> records, std::string* error,
              const CheckFn& check = nullptr);

  uint64_t bytes_used() const;  // of the current half
  uint64_t compactions() const;

 private:
  struct Impl;
  explicit ScriptArea(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace redhub::shm
