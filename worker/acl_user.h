// One ACL user as Redis 7.0 models it (src/acl.c): on/off, passwords (SHA-256
// of each), the commands it may run (a bit per row of the command table,
// plus per-subcommand exceptions), the key patterns with their read/write
// permissions, and the channel patterns. Built by applying ACL SETUSER rules
// one by one (Apply, with Redis's error texts), described back as ACL LIST
// and ACL GETUSER write it (Describe*), and asked, for each command, whether
// it may run (CanRun, CanAccessKey, CanAccessChannel).
//
// Not supported: selectors ("(...)" rules, Redis 7.0's second sets of
// permissions); such a rule is refused with a message saying so.
//
// Subcommands: those a row lists (CommandSpec::subcommands) have bits of
// their own, set by their own categories, as Redis's; one Redis has and this
// server does not serve ("+client|kill") is kept by name as an exception to
// its container's bit, so that ACL files written for Redis still load.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "command_table.h"

namespace redhub::worker {
// The user a new connection is, and the one requirepass sets the password of.
inline constexpr char kDefaultUser[] = "default";
}  // namespace redhub::worker

namespace redhub::worker::acl {

// Key permissions of a pattern and of a command's use of a key.
enum KeyPerm : uint8_t { kKeyRead = 1, kKeyWrite = 2, kKeyReadWrite = 3 };

// Redis 7.0's categories, in ACL CAT's order: the table's kAclCategoryNames,
// name i for bit i of AclCategories().
std::span<const char* const> CategoryNames();
// Index of a category (case-insensitive), or -1.
int CategoryIndex(std::string_view name);

// What command rules name: every row of the table (id = its slot), then
// each row's listed subcommands ("client|setname"), each with its categories.
struct CommandIds {
  std::vector<std::string> names;
  std::vector<uint64_t> categories;
  std::vector<size_t> row;       // the row an id belongs to
  std::vector<size_t> sub_base;  // per row: the id of its first subcommand
};
const CommandIds& Ids();
// Whether any command or subcommand here is in the category.
bool CategoryHasCommands(int category);

struct KeyPattern {
  uint8_t perms;  // KeyPerm
  std::string pattern;
  bool operator==(const KeyPattern&) const = default;
};

class User {
 public:
  explicit User(std::string name);

  // ACL SETUSER's rule `rule`: "" once applied, else Redis's reason (the
  // text after "Error in ACL SETUSER modifier '...': ").
  std::string Apply(std::string_view rule);
  // Rules separated by spaces (Describe()'s, an ACL file's), applied to
  // this user in order: "" or "'<rule>': <reason>".
  std::string ApplyAll(std::string_view rules);

  const std::string& name() const { return name_; }
  bool enabled() const { return enabled_; }
  bool nopass() const { return nopass_; }
  // A user that may run every command on every key and channel: the
  // dispatcher skips the ACL check for it.
  bool unrestricted() const { return unrestricted_; }

  bool CheckPassword(std::string_view password) const;
  // `sub` is the first argument, for commands with subcommands.
  bool CanRun(const CommandSpec& spec, std::string_view sub) const;
  bool CanAccessKey(std::string_view key, uint8_t perms) const;
  bool CanAccessChannel(std::string_view channel) const;

  // ACL LIST's line without "user <name> ".
  std::string Describe() const;
  // ACL GETUSER's fields.
  std::vector<std::string> FlagNames() const;
  const std::vector<std::string>& password_hashes() const { return passwords_; }
  std::string DescribeCommands() const;
  std::string DescribeKeys() const;
  std::string DescribeChannels() const;

  // Whether a name may be a user's (Redis: no spaces or NUL bytes).
  static bool ValidName(std::string_view name);
  // Lower-case hex SHA-256 of `password`.
  static std::string HashPassword(std::string_view password);

 private:
  std::string ApplyCommandRule(std::string_view rule);
  void SetCommand(size_t slot, bool allow);
  void SetCategory(int category, bool allow);
  void SetAll(bool allow);
  void Recompute();

  std::string name_;
  bool enabled_ = false;
  bool nopass_ = false;
  bool sanitize_payload_ = false;  // shown only when set explicitly, as Redis
  bool skip_sanitize_payload_ = false;
  std::vector<std::string> passwords_;  // hex SHA-256, in the order added
  std::vector<bool> allowed_;           // by command id (Ids())
  bool future_commands_ = false;        // +@all: commands added later too
  // Per slot: first arguments allowed although the bit is off, and denied
  // although it is on ("+config|get", "-config|set"), lower case.
  std::vector<std::vector<std::string>> allowed_subs_;
  std::vector<std::vector<std::string>> denied_subs_;
  // "+@hash"-like rules naming categories none of this server's commands
  // is in, in the order given (the last for each category).
  std::vector<std::string> foreign_categories_;
  bool all_keys_ = false;
  std::vector<KeyPattern> keys_;
  bool all_channels_ = false;
  std::vector<std::string> channels_;
  bool unrestricted_ = false;
};

// Whether `user` may run this request (args[0] is the command), as Redis's
// ACLCheckAllPerm: the command rules, then each key with the permissions
// the command needs on it (Redis 7.0's key specs). object: the command's
// full name ("config|get") or the key refused.
struct Denial {
  enum Kind { kNone, kCommand, kKey } kind = kNone;
  std::string object;
};
Denial Check(const User& user, const CommandSpec& spec, std::span<const std::string_view> args);
// ACL DRYRUN's reply text for a refusal, "" if allowed.
std::string DenialOf(const User& user, const CommandSpec& spec,
                     std::span<const std::string_view> args);
// "set", or "config|get" for a command with subcommands.
std::string FullName(const CommandSpec& spec, std::span<const std::string_view> args);

}  // namespace redhub::worker::acl
