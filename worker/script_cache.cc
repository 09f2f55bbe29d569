#include "script_cache.h"

#include <functional>

#include "log.h"
#include "script_area.h"

namespace redhub::worker {

void ScriptCache::Sync() {
  if (area_ == nullptr) return;
  const uint64_t v = area_->version();
  if (v == seen_) [[likely]] {
    return;
  }
  std::vector<shm::ScriptRecord> records;
  uint64_t epoch = 0;
  const uint64_t end = area_->Read(epoch_, offset_, &records, &epoch);
  if (epoch != epoch_) {
    // Compacted since (or never read): the new half holds the whole state.
    engine_.Flush();
    engine_.FlushFunctions();
  }
  for (const shm::ScriptRecord& r : records) Apply(r);
  epoch_ = epoch;
  offset_ = end;
  seen_ = v;
}

void ScriptCache::Apply(const shm::ScriptRecord& r) {
  replayed_++;
  std::string error, sha, name;
  script::Flags flags;
  switch (r.kind) {
    case shm::ScriptRecord::kScript:
      error = engine_.Load(r.bytes, &sha, &flags);
      break;
    case shm::ScriptRecord::kScriptFlush:
      engine_.Flush();
      break;
    case shm::ScriptRecord::kLibrary:
      // Checked by the worker that published it, against this same log.
      error = engine_.LoadLibrary(r.bytes, /*replace=*/true, &name);
      break;
    case shm::ScriptRecord::kLibraryDelete:
      engine_.DeleteLibrary(r.key);
      break;
    case shm::ScriptRecord::kFunctionFlush:
      engine_.FlushFunctions();
      break;
  }
  // Another binary's Lua (an upgrade) could in principle refuse what the
  // old one took: the script is then missing here (NOSCRIPT), not wrong.
  if (!error.empty()) {
    LOG_WARNING("script cache: cannot replay %s '%s': %s",
                r.kind == shm::ScriptRecord::kScript ? "script" : "library", r.key.c_str(),
                error.c_str());
  }
}

std::string ScriptCache::Publish(std::vector<shm::ScriptRecord> records, const Check& check) {
  if (area_ == nullptr) {
    if (check) {
      if (std::string e = check(&records); !e.empty()) return e;
    }
    for (const shm::ScriptRecord& r : records) Apply(r);
    return "";
  }
  std::string error;
  const bool ok = area_->Append(std::move(records), &error,
                                [&](std::vector<shm::ScriptRecord>* more, std::string* e) {
                                  Sync();  // the log's state, under its lock
                                  if (!check) return true;
                                  *e = check(more);
                                  return e->empty();
                                });
  if (!ok) return error;
  Sync();  // this worker applies its own change as every other one does
  return "";
}

std::string ScriptCache::Load(std::string_view body, std::string* sha, script::Flags* flags) {
  Sync();
  const std::string digest = script::Engine::Sha1Hex(body);
  if (const script::Flags* f = engine_.FlagsOf(digest)) {
    *sha = digest;
    *flags = *f;
    return "";
  }
  // Compiled here first: a script that does not compile is never published.
  if (std::string e = engine_.Load(body, sha, flags); !e.empty()) return e;
  if (area_ == nullptr) return "";
  std::string error;
  if (!area_->Append({{shm::ScriptRecord::kScript, *sha, std::string(body)}}, &error)) {
    return error;
  }
  return "";
}

const script::Flags* ScriptCache::Find(std::string_view sha) {
  Sync();
  return engine_.FlagsOf(sha);
}

void ScriptCache::FlushScripts() { Publish({{shm::ScriptRecord::kScriptFlush, "", ""}}, nullptr); }

// The libraries as they would be after the change, built in a scratch
// engine from this worker's (synced) ones: a refusal leaves every library
// as it was, and the records to publish are only known once checked.
std::string ScriptCache::CheckLibraries(const std::vector<std::string>& codes, RestorePolicy policy,
                                        std::vector<shm::ScriptRecord>* records,
                                        std::string* last_name) {
  script::Engine scratch;
  std::string name;
  if (policy != RestorePolicy::kFlush) {
    for (const script::LibraryInfo& lib : engine_.Libraries()) {
      if (std::string e = scratch.LoadLibrary(lib.code, true, &name); !e.empty()) return e;
    }
  }
  for (const std::string& code : codes) {
    if (std::string e = scratch.LoadLibrary(code, policy == RestorePolicy::kReplace, &name);
        !e.empty()) {
      return e;
    }
    records->push_back({shm::ScriptRecord::kLibrary, name, code});
    *last_name = name;
  }
  return "";
}

std::string ScriptCache::LoadLibrary(std::string_view code, bool replace, std::string* name) {
  std::string loaded;
  const std::vector<std::string> codes{std::string(code)};
  const std::string e = Publish({}, [&](std::vector<shm::ScriptRecord>* records) {
    return CheckLibraries(codes, replace ? RestorePolicy::kReplace : RestorePolicy::kAppend,
                          records, &loaded);
  });
  if (!e.empty()) return e;
  *name = loaded;
  return "";
}

bool ScriptCache::DeleteLibrary(std::string_view name) {
  const std::string e = Publish({{shm::ScriptRecord::kLibraryDelete, std::string(name), ""}},
                                [&](std::vector<shm::ScriptRecord>*) -> std::string {
                                  for (const script::LibraryInfo& lib : engine_.Libraries()) {
                                    if (lib.name == name) return "";
                                  }
                                  return "ERR Library not found";
                                });
  return e.empty();
}

void ScriptCache::FlushFunctions() {
  Publish({{shm::ScriptRecord::kFunctionFlush, "", ""}}, nullptr);
}

std::string ScriptCache::RestoreLibraries(const std::vector<std::string>& codes,
                                          RestorePolicy policy) {
  std::vector<shm::ScriptRecord> first;
  if (policy == RestorePolicy::kFlush) first.push_back({shm::ScriptRecord::kFunctionFlush, "", ""});
  std::string last;
  return Publish(std::move(first), [&](std::vector<shm::ScriptRecord>* records) {
    return CheckLibraries(codes, policy, records, &last);
  });
}

}  // namespace redhub::worker
