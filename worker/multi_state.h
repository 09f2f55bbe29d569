// A connection's transaction state: the commands queued between MULTI and
// EXEC, whether one was refused while queueing (EXEC then answers
// EXECABORT), and the keys it WATCHes with what they held when watched.
// Kept in the connection's session (auth.cc), created at its first MULTI or
// WATCH; transaction_commands.cc runs it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "command_table.h"

namespace redhub::worker {

// What a watched key held, to tell at EXEC whether anything changed it: its
// presence, expire time, length and a 64-bit digest of its value. A write
// that leaves all four as they were is not seen (Redis would abort on it;
// see transaction_commands.cc).
struct KeyState {
  bool exists = false;
  int64_t expire_ms = 0;
  uint64_t length = 0;
  uint64_t digest = 0;
  bool operator==(const KeyState&) const = default;
};

struct WatchedKey {
  std::string key;
  KeyState state;
};

class MultiState {
 public:
  struct Queued {
    const CommandSpec* spec;
    uint32_t first;  // its arguments: spans_[first, first + argc)
    uint32_t argc;
  };

  void Queue(const CommandSpec* spec, std::span<const std::string_view> args) {
    Queued q{spec, static_cast<uint32_t>(spans_.size()), static_cast<uint32_t>(args.size())};
    for (std::string_view a : args) {
      spans_.push_back({bytes_.size(), a.size()});
      bytes_.append(a);
    }
    commands_.push_back(q);
  }
  std::span<const Queued> commands() const { return commands_; }
  // The arguments of `q`, as views into this state (valid until Clear).
  void ArgsOf(const Queued& q, std::vector<std::string_view>* out) const {
    out->clear();
    for (uint32_t i = 0; i < q.argc; i++) {
      const auto& [at, len] = spans_[q.first + i];
      out->emplace_back(bytes_.data() + at, len);
    }
  }
  // Bytes of arguments queued (what MULTI holds in this process's memory).
  size_t queued_bytes() const { return bytes_.size(); }

  // A command was refused while queueing: EXEC discards the transaction.
  bool dirty = false;
  std::vector<WatchedKey> watched;

  // MULTI's queue, emptied by EXEC and DISCARD (the watched keys are
  // forgotten separately: UNWATCH, and EXEC and DISCARD after it).
  void ClearQueue() {
    commands_.clear();
    spans_.clear();
    bytes_.clear();
    dirty = false;
  }

 private:
  std::string bytes_;
  std::vector<std::pair<size_t, size_t>> spans_;
  std::vector<Queued> commands_;
};

}  // namespace redhub::worker
