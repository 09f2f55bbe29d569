// This worker's scripts and function libraries: its own Lua engine
// (script/engine.h: a Lua state lives in one process) kept in step with the
// shared script area (shm/script_area.h), so that a script loaded on any
// worker is callable by EVALSHA on every worker, and a FUNCTION LOAD on one
// worker is an FCALL away on all of them, across reload and upgrade (the
// master holds the area).
//
// Every change goes to the area first (SCRIPT LOAD, EVAL of a new body,
// SCRIPT FLUSH, FUNCTION LOAD/DELETE/FLUSH/RESTORE), then this worker
// replays the area's log past what it has read (Sync), as every other
// worker does before it looks anything up: the engine's state is a
// function of the log. A change that can be refused (FUNCTION LOAD of an
// existing library without REPLACE) is checked against the log's state
// under the area's lock, so two workers cannot both succeed.
// Without an area (an embedded service, unit tests) the engine alone holds
// what this process loaded.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine.h"

namespace redhub::shm {
class ScriptArea;
struct ScriptRecord;
}  // namespace redhub::shm

namespace redhub::worker {

class ScriptCache {
 public:
  explicit ScriptCache(shm::ScriptArea* area) : area_(area) {}

  script::Engine& engine() { return engine_; }
  // Replays what other workers changed since the last call: one atomic
  // load when nothing did.
  void Sync();

  // SCRIPT LOAD and EVAL: compiled here and, if new, published for every
  // worker. "" or the error reply text (compile errors, a full area).
  std::string Load(std::string_view body, std::string* sha, script::Flags* flags);
  // A cached script's flags after Sync; nullptr: NOSCRIPT.
  const script::Flags* Find(std::string_view sha);
  void FlushScripts();

  // FUNCTION LOAD [REPLACE]: "" and *name, or the error reply text.
  std::string LoadLibrary(std::string_view code, bool replace, std::string* name);
  // FUNCTION DELETE: false if there is no such library.
  bool DeleteLibrary(std::string_view name);
  void FlushFunctions();
  // FUNCTION RESTORE: the libraries as one change (policy FLUSH: after a
  // function flush; APPEND: none may exist; REPLACE: each replaces).
  enum class RestorePolicy { kAppend, kReplace, kFlush };
  std::string RestoreLibraries(const std::vector<std::string>& codes, RestorePolicy policy);

  uint64_t replayed() const { return replayed_; }

 private:
  void Apply(const shm::ScriptRecord& r);
  // Appends records under the area's lock after Sync and `check` (which
  // may add records, or refuse with the error text); without an area,
  // applies them here. "" or the error text.
  using Check = std::function<std::string(std::vector<shm::ScriptRecord>* records)>;
  std::string Publish(std::vector<shm::ScriptRecord> records, const Check& check);
  std::string CheckLibraries(const std::vector<std::string>& codes, RestorePolicy policy,
                             std::vector<shm::ScriptRecord>* records, std::string* last_name);

  shm::ScriptArea* area_;
  script::Engine engine_;
  uint64_t epoch_ = 0;            // of the area's log, as last read
  uint64_t offset_ = 0;           // how far it was read
  uint64_t seen_ = ~uint64_t{0};  // the area's version word when last read
  uint64_t replayed_ = 0;         // records applied (tests, INFO)
};

}  // namespace redhub::worker
