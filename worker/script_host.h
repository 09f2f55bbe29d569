// What a running script's redis.call reaches (script::Host): Redis 7.0's
// scriptCall checks, in its order, then the command's handler through the
// one Txn the script holds (a Store::Scope), so that every command of a
// script is atomic with the rest of it against every other worker.
//
// The daemon's own check comes last: a script may only name the keys it
// declared (KEYS), whose stripes it holds; another key, or a command over
// the whole keyspace, is refused ("ERR script tried accessing undeclared
// key: <key>") unless the script runs with the whole store held
// (allow-undeclared-keys). Redis does not refuse it outside a cluster;
// Dragonfly does by default, as here.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "command_service.h"
#include "engine.h"

namespace redhub::worker {

struct ScriptRun {
  Conn& conn;
  CommandService& service;
  std::span<const std::string_view> keys;  // declared
  bool read_only = false;                  // EVAL_RO, FCALL_RO, or the no-writes flag
  bool allow_oom = false;                  // the allow-oom flag
  bool whole_store = false;                // every stripe is held: any key may be named
};

class ScriptHost : public script::Host {
 public:
  explicit ScriptHost(const ScriptRun& run) : run_(run) {}

  void Call(std::span<const std::string_view> args, int resp, std::string* reply) override;
  void Log(script::LogLevel level, std::string_view message) override;
  bool ShouldStop() override;

 private:
  // "" if the script may run `args` here, else the error reply text.
  std::string Refusal(const CommandSpec* spec, std::span<const std::string_view> args);
  bool Declared(std::string_view key) const;

  ScriptRun run_;
};

// EXEC: a queued script command that needs every stripe held (its script
// or function has the allow-undeclared-keys flag).
bool ScriptNeedsWholeStore(CommandService& service, const CommandSpec& spec,
                           std::span<const std::string_view> args);

// The subcommand row of a container (CLIENT, CONFIG, SCRIPT...) named by
// args[1], nullptr if none: scripts judge noscript and write by it.
const SubcommandSpec* FindSubcommand(const CommandSpec& spec,
                                     std::span<const std::string_view> args);

}  // namespace redhub::worker
