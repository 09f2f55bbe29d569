// The daemon's commands, as data: one CommandSpec row per command (name,
// arity, Redis 7.0's flags and ACL categories, key positions, handler,
// counter slot), looked up
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
  kSkipMonitor = 1 << 12,
  kNoMandatoryKeys = 1 << 13,
  // The keys are found from the arguments, not only the row's positions:
  // EVAL's and FCALL's numkeys at args[2], then that many keys
  // (ForEachKeyArg).
  kMovableKeys = 1 << 14,
  // The daemon's own, never reported: runs inside MULTI instead of being
  // queued, as its handler knows the state (EXEC, DISCARD, MULTI, WATCH,
  // QUIT; see the dispatcher).
  kRunsInMulti = 1u << 31,
  // The daemon's own: reads or writes the whole keyspace, not named keys
  // (KEYS, SCAN, DBSIZE, FLUSHALL, RANDOMKEY): in EXEC or a script it needs
  // every stripe held (Store::LockAll).
  kWholeStore = 1u << 30,
};

struct CommandFlagName {
  uint32_t flag;
  const char* name;
};
inline constexpr CommandFlagName kCommandFlagNames[] = {
    {kWrite, "write"},
    {kReadOnly, "readonly"},
    {kDenyOom, "denyoom"},
    {kAdmin, "admin"},
    {kPubSub, "pubsub"},
    {kNoScript, "noscript"},
    {kLoading, "loading"},
    {kStale, "stale"},
    {kSkipMonitor, "skip_monitor"},
    {kSkipSlowlog, "skip_slowlog"},
    {kFast, "fast"},
    {kNoAuth, "no_auth"},
    {kNoMandatoryKeys, "no_mandatory_keys"},
    {kMovableKeys, "movablekeys"},
    {kAllowBusy, "allow_busy"},
};

// Redis 7.0's ACL categories (src/server.h ACL_CATEGORY_*), in the order
// `ACL CAT` lists them and COMMAND INFO reports a command's set
// (kAclCategoryNames). A row declares the categories Redis's command JSON
// gives it (acl_categories); AclCategories() adds those Redis derives from
// the flags, which is what COMMAND INFO and ACL rules see.
enum AclCategory : uint32_t {
  kAclKeyspace = 1 << 0,
  kAclRead = 1 << 1,
  kAclWrite = 1 << 2,
  kAclSet = 1 << 3,
  kAclSortedSet = 1 << 4,
  kAclList = 1 << 5,
  kAclHash = 1 << 6,
  kAclString = 1 << 7,
  kAclBitmap = 1 << 8,
  kAclHyperLogLog = 1 << 9,
  kAclGeo = 1 << 10,
  kAclStream = 1 << 11,
  kAclPubSub = 1 << 12,
  kAclAdmin = 1 << 13,
  kAclFast = 1 << 14,
  kAclSlow = 1 << 15,
  kAclBlocking = 1 << 16,
  kAclDangerous = 1 << 17,
  kAclConnection = 1 << 18,
  kAclTransaction = 1 << 19,
  kAclScripting = 1 << 20,
};

struct AclCategoryName {
  uint32_t category;
  const char* name;  // without the '@' that COMMAND INFO and ACL rules put before it
};
inline constexpr AclCategoryName kAclCategoryNames[] = {
    {kAclKeyspace, "keyspace"},
    {kAclRead, "read"},
    {kAclWrite, "write"},
    {kAclSet, "set"},
    {kAclSortedSet, "sortedset"},
    {kAclList, "list"},
    {kAclHash, "hash"},
    {kAclString, "string"},
    {kAclBitmap, "bitmap"},
    {kAclHyperLogLog, "hyperloglog"},
    {kAclGeo, "geo"},
    {kAclStream, "stream"},
    {kAclPubSub, "pubsub"},
    {kAclAdmin, "admin"},
    {kAclFast, "fast"},
    {kAclSlow, "slow"},
    {kAclBlocking, "blocking"},
    {kAclDangerous, "dangerous"},
    {kAclConnection, "connection"},
    {kAclTransaction, "transaction"},
    {kAclScripting, "scripting"},
};

// The full category set of a command with these flags that declares
// `declared`, by Redis 7.0's rules (setImplicitACLCategories): write ->
// @write; readonly -> @read, except for @scripting commands (EVAL_RO and
// the like are not reads as ACL sees them); admin -> @admin and @dangerous;
// pubsub -> @pubsub; fast -> @fast; and every command not @fast is @slow.
// (Redis's blocking flag gives @blocking; no row has that flag yet.)
constexpr uint32_t ImplicitAclCategories(uint32_t flags, uint32_t declared) {
  uint32_t c = declared;
  if (flags & kWrite) c |= kAclWrite;
  if ((flags & kReadOnly) && !(declared & kAclScripting)) c |= kAclRead;
  if (flags & kAdmin) c |= kAclAdmin | kAclDangerous;
  if (flags & kPubSub) c |= kAclPubSub;
  if (flags & kFast) c |= kAclFast;
  // On the categories, not the flags: a command may declare @fast alone.
  if (!(c & kAclFast)) c |= kAclSlow;
  return c;
}

// The category of `name` ("read", "SortedSet": any case, no '@'), as
// `ACL CAT <category>` takes it; 0 for a name that is not one.
uint32_t LookupAclCategory(std::string_view name);

// Conn::session_flags() bits of the daemon's command layer.
enum SessionFlag : uint32_t {
  // After MULTI, until EXEC or DISCARD: commands are queued (the
  // dispatcher), not run.
  kSessionInMulti = 1 << 0,
  // Authenticated (Redis's c->authenticated): by AUTH or HELLO AUTH, or at
  // accept because the default user needed no password then.
  kSessionAuthenticated = 1 << 1,
};

inline bool InMulti(const Conn& conn) { return (conn.session_flags() & kSessionInMulti) != 0; }

// One subcommand of a container row, as Redis 7.0's COMMAND INFO gives it
// in the container's subcommands: its flags (CommandFlag bits) and the
// categories it declares. Arity and the handler stay the container's.
struct SubcommandSpec {
  const char* name;  // lower case, without the container's name ("kill")
  uint32_t flags;
  uint32_t acl_categories;
};

struct CommandSpec {
  const char* name;  // lower case, as Redis names commands
  int arity;         // Redis's convention: -N means at least N arguments
  uint32_t flags;    // CommandFlag bits
  // AclCategory bits the command declares (its Redis JSON's
  // acl_categories); AclCategories() gives the full set.
  uint32_t acl_categories;
  int first_key, last_key, key_step;
  Action (*handler)(CommandContext& ctx);
  // The command's place in the counter blocks (commandstats, latency,
  // shm/worker_counters.h), which a binary upgrade keeps while old workers
  // still write it: a new command takes the next free slot, never an
  // existing one.
  uint32_t slot;
  // A command with subcommands (CLIENT, CONFIG, SLOWLOG) reports no flags of
  // its own, as Redis does; its subcommands carry them (`subcommands`), and
  // what all of them share is here, for the checks.
  uint32_t subcommand_flags = 0;
  // The subcommands the handler serves, each with Redis's flags and
  // categories for it (Redis checks ACL rules and lists `ACL CAT` per
  // subcommand, as "client|kill"); empty for a command without any.
  std::span<const SubcommandSpec> subcommands = {};

  // What the dispatcher's checks read.
  uint32_t check_flags() const { return flags | subcommand_flags; }
};

// A command's or subcommand's full ACL category set, as COMMAND INFO
// reports it. A container row (CLIENT, CONFIG, SLOWLOG) has no flags and
// declares nothing, so it is @slow only, as in Redis.
constexpr uint32_t AclCategories(const CommandSpec& spec) {
  return ImplicitAclCategories(spec.flags, spec.acl_categories);
}
constexpr uint32_t AclCategories(const SubcommandSpec& sub) {
  return ImplicitAclCategories(sub.flags, sub.acl_categories);
}

// Redis's arity convention: N means exactly N arguments (the name
// included), -N at least N. The dispatcher's check, ACL's subcommands and
// ACL DRYRUN all judge by it.
constexpr bool ArityAllows(int arity, size_t argc) {
  const int n = static_cast<int>(argc);
  return arity > 0 ? n == arity : n >= -arity;
}

// Calls fn(n, key) for each key argument of `args` by the row's key
// positions (first_key, last_key, key_step: Redis's legacy key spec), n
// counting from 0. ACL's key check, EXEC and scripts find keys with it.
template <typename Fn>
void ForEachKeyArg(const CommandSpec& spec, std::span<const std::string_view> args, Fn&& fn) {
  if (spec.flags & kMovableKeys) {
    // EVAL, FCALL: numkeys, then the keys (a bad numkeys names none: the
    // handler refuses it).
    int64_t numkeys = 0;
    if (args.size() < 3 || !resp::ParseInt64(args[2], &numkeys) || numkeys < 0 ||
        numkeys > static_cast<int64_t>(args.size()) - 3) {
      return;
    }
    for (int64_t i = 0; i < numkeys; i++) fn(static_cast<size_t>(i), args[3 + i]);
    return;
  }
  if (spec.first_key <= 0) return;
  const int argc = static_cast<int>(args.size());
  const int last = spec.last_key < 0 ? argc + spec.last_key : spec.last_key;
  size_t n = 0;
  for (int i = spec.first_key; i <= last && i < argc; i += spec.key_step, n++) fn(n, args[i]);
}

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
