// The daemon's commands, as data: one CommandSpec row per command (name,
// arity, Redis 7.0's flags, key positions, handler, counter slot), looked up
// case-insensitively without copying the name. Each family keeps its rows
// next to its handlers (connection_commands.cc, server_commands.cc,
// info_command.cc, config_command.cc, transaction_commands.cc,
// string_commands.cc, keyspace_commands.cc); the table is their union,
// ordered by slot.
//
// Adding a command: one row in its family's table, with the next free slot,
// and one handler. The dispatcher (dispatcher.cc) reads the row's arity and
// flags before the handler runs, so a handler never checks them itself.
#pragma once

#include <redhub/server.h>

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace redhub::worker {

class CommandService;

struct CommandContext {
  Conn& conn;
  std::span<const std::string_view> args;
  resp::Writer& w;
  CommandService& service;
};

// Redis 7.0's command flags (src/server.h CMD_*), in the order COMMAND
// reports them (kCommandFlagNames). Each row carries exactly the flags
// Redis's COMMAND INFO shows for that command.
enum CommandFlag : uint32_t {
  kWrite = 1 << 0,
  kReadOnly = 1 << 1,
  kDenyOom = 1 << 2,  // refused before it runs while memory is over maxmemory
  kAdmin = 1 << 3,
  kPubSub = 1 << 4,
  kNoScript = 1 << 5,
  kLoading = 1 << 6,  // allowed while the dataset loads
  kStale = 1 << 7,
  kSkipSlowlog = 1 << 8,
  kFast = 1 << 9,
  kNoAuth = 1 << 10,
  kAllowBusy = 1 << 11,
  // The daemon's own, never reported: runs inside MULTI, whose state its
  // handler knows (EXEC, DISCARD, MULTI, QUIT; see the dispatcher).
  kRunsInMulti = 1u << 31,
};

struct CommandFlagName {
  uint32_t flag;
  const char* name;
};
inline constexpr CommandFlagName kCommandFlagNames[] = {
    {kWrite, "write"},     {kReadOnly, "readonly"}, {kDenyOom, "denyoom"},
    {kAdmin, "admin"},     {kPubSub, "pubsub"},     {kNoScript, "noscript"},
    {kLoading, "loading"}, {kStale, "stale"},       {kSkipSlowlog, "skip_slowlog"},
    {kFast, "fast"},       {kNoAuth, "no_auth"},    {kAllowBusy, "allow_busy"},
};

// Conn::session_flags() bits of the daemon's command layer.
enum SessionFlag : uint32_t {
  // After MULTI, until EXEC or DISCARD: transactions are not supported yet,
  // so every command in between is refused unrun (the dispatcher).
  kSessionInMulti = 1 << 0,
  // Authenticated (Redis's c->authenticated): by AUTH or HELLO AUTH, or at
  // accept because the default user needed no password then.
  kSessionAuthenticated = 1 << 1,
};

struct CommandSpec {
  const char* name;  // lower case, as Redis names commands
  int arity;         // Redis's convention: -N means at least N arguments
  uint32_t flags;    // CommandFlag bits
  int first_key, last_key, key_step;
  Action (*handler)(CommandContext& ctx);
  // The command's place in the counter blocks (commandstats, latency,
  // shm/worker_counters.h), which a binary upgrade keeps while old workers
  // still write it: a new command takes the next free slot, never an
  // existing one.
  uint32_t slot;
  // A command with subcommands (CLIENT, CONFIG, SLOWLOG) reports no flags of
  // its own, as Redis does; its subcommands' rows (not separate here yet)
  // carry them, and what all of them share is here, for the checks.
  uint32_t subcommand_flags = 0;
  // Redis 7.0's ACL categories of the command beyond those its flags imply
  // (acl_user.h CategoriesOf: bit i is CategoryNames()[i]).
  uint64_t acl_categories = 0;

  // What the dispatcher's checks read.
  uint32_t check_flags() const { return flags | subcommand_flags; }
};

// The families.
std::span<const CommandSpec> ConnectionCommands();
std::span<const CommandSpec> ServerCommands();
std::span<const CommandSpec> InfoCommands();
std::span<const CommandSpec> ConfigCommands();
std::span<const CommandSpec> TransactionCommands();
std::span<const CommandSpec> StringCommands();
std::span<const CommandSpec> KeyspaceCommands();
std::span<const CommandSpec> AclCommands();

// Every row, indexed by slot (a gap or a slot taken twice aborts at start).
const std::vector<CommandSpec>& CommandTable();
// The row of `name` in any case; nullptr for an unknown command.
const CommandSpec* LookupCommand(std::string_view name);

}  // namespace redhub::worker
