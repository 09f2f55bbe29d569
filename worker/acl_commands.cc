// The ACL command (Redis 7.0): CAT, DELUSER, DRYRUN, GENPASS, GETUSER, HELP,
// LIST, LOAD, LOG, SAVE, SETUSER, USERS, WHOAMI, with Redis's replies and
// error texts. Every change goes through the shared users
// (acl::Registry::Modify), so it applies on every worker; the connections of
// a user it removes or disables are closed by each worker's sweep
// (auth.cc).
#include <fcntl.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>

#include "acl_area.h"
#include "acl_registry.h"
#include "command_util.h"
#include "log.h"
#include "syserr.h"

namespace redhub::worker {
namespace {

using acl::Users;

constexpr std::string_view kNoAclFile =
    "ERR This Redis instance is not configured to use an ACL file. You may want to specify "
    "users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a "
    "Redis configuration file set) in order to store users in the Redis configuration.";

std::string AclFile(const CommandService& svc) {
  for (const auto& [name, value] : svc.info().config_parameters) {
    if (name == "aclfile") return value;
  }
  return "";
}

void WriteUser(resp::Writer& w, const acl::User& u) {
  w.Map(6);
  w.Bulk("flags");
  std::vector<std::string> flags = u.FlagNames();
  w.Set(static_cast<int64_t>(flags.size()));
  for (const std::string& f : flags) w.Bulk(f);
  w.Bulk("passwords");
  w.Array(static_cast<int64_t>(u.password_hashes().size()));
  for (const std::string& p : u.password_hashes()) w.Bulk(p);
  w.Bulk("commands");
  w.Bulk(u.DescribeCommands());
  w.Bulk("keys");
  w.Bulk(u.DescribeKeys());
  w.Bulk("channels");
  w.Bulk(u.DescribeChannels());
  w.Bulk("selectors");
  w.Array(0);
}

Action AclSetUser(CommandContext& ctx) {
  const std::string name(ctx.args[2]);
  if (!acl::User::ValidName(name)) {
    ctx.w.Error("ERR Usernames can't contain spaces or null characters");
    return Action::kNone;
  }
  std::string e = ctx.service.ModifyUsers([&](Users& users, uint64_t& next_id) -> std::string {
    // All rules or none, as Redis applies them to a copy.
    auto it = users.find(name);
    auto u = it != users.end() ? std::make_shared<acl::User>(*it->second.user)
                               : std::make_shared<acl::User>(name);
    for (size_t i = 3; i < ctx.args.size(); i++) {
      if (std::string r = u->Apply(ctx.args[i]); !r.empty()) {
        return "ERR Error in ACL SETUSER modifier '" + std::string(ctx.args[i]) + "': " + r;
      }
    }
    if (it != users.end()) {
      it->second.user = std::move(u);
    } else {
      users[name] = acl::Entry{next_id++, std::move(u)};
    }
    return "";
  });
  if (!e.empty()) {
    ctx.w.Error(e);
  } else {
    ctx.w.OK();
  }
  return Action::kNone;
}

Action AclDelUser(CommandContext& ctx) {
  int64_t deleted = 0;
  std::string e = ctx.service.ModifyUsers([&](Users& users, uint64_t&) -> std::string {
    deleted = 0;
    for (size_t i = 2; i < ctx.args.size(); i++) {
      if (ctx.args[i] == kDefaultUser) return "ERR The 'default' user cannot be removed";
    }
    for (size_t i = 2; i < ctx.args.size(); i++) {
      auto it = users.find(ctx.args[i]);
      if (it != users.end()) {
        users.erase(it);
        deleted++;
      }
    }
    return "";
  });
  if (!e.empty()) {
    ctx.w.Error(e);
  } else {
    ctx.w.Int(deleted);
  }
  return Action::kNone;
}

Action AclCat(CommandContext& ctx) {
  auto names = acl::CategoryNames();
  if (ctx.args.size() == 2) {
    ctx.w.Array(static_cast<int64_t>(names.size()));
    for (const char* n : names) ctx.w.Bulk(n);
    return Action::kNone;
  }
  const int c = acl::CategoryIndex(ctx.args[2]);
  if (c < 0) {
    ctx.w.Error("ERR Unknown category '" + std::string(ctx.args[2]) + "'");
    return Action::kNone;
  }
  std::vector<const std::string*> in;
  const acl::CommandIds& ids = acl::Ids();
  for (size_t i = 0; i < ids.names.size(); i++) {
    if (ids.categories[i] & (uint64_t{1} << c)) in.push_back(&ids.names[i]);
  }
  ctx.w.Array(static_cast<int64_t>(in.size()));
  for (const std::string* n : in) ctx.w.Bulk(*n);
  return Action::kNone;
}

Action AclGenPass(CommandContext& ctx) {
  int64_t bits = 256;
  if (ctx.args.size() == 3) {
    if (!ParseInt64(ctx.args[2], &bits)) {
      ctx.w.Error(kErrNotInteger);
      return Action::kNone;
    }
    if (bits <= 0 || bits > 4096) {
      ctx.w.Error(
          "ERR ACL GENPASS argument must be the number of bits for the output password, a "
          "positive number up to 4096");
      return Action::kNone;
    }
  }
  const size_t chars = static_cast<size_t>((bits + 3) / 4);
  std::vector<unsigned char> bytes((chars + 1) / 2);
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    ctx.w.Error("ERR cannot draw random bytes (RAND_bytes failed)");
    return Action::kNone;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  out.resize(chars);
  ctx.w.Bulk(out);
  return Action::kNone;
}

Action AclLog(CommandContext& ctx) {
  shm::AclArea* area = ctx.service.acl_area();
  int64_t count = 10;
  if (ctx.args.size() == 3) {
    if (EqualsNoCase(ctx.args[2], "RESET")) {
      area->LogReset();
      ctx.w.OK();
      return Action::kNone;
    }
    if (!ParseInt64(ctx.args[2], &count)) {
      ctx.w.Error(kErrNotInteger);
      return Action::kNone;
    }
    if (count < 0) count = 0;
  }
  std::vector<shm::AclLogEntry> entries = area->LogGet(static_cast<size_t>(count));
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  const int64_t now_ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  ctx.w.Array(static_cast<int64_t>(entries.size()));
  for (const shm::AclLogEntry& e : entries) {
    ctx.w.Map(7);
    ctx.w.Bulk("count");
    ctx.w.Int(static_cast<int64_t>(e.count));
    ctx.w.Bulk("reason");
    ctx.w.Bulk(e.reason);
    ctx.w.Bulk("context");
    ctx.w.Bulk(e.context);
    ctx.w.Bulk("object");
    ctx.w.Bulk(e.object);
    ctx.w.Bulk("username");
    ctx.w.Bulk(e.username);
    ctx.w.Bulk("age-seconds");
    // Redis 7.0's addReplyDouble: "%.17g" (0.021999999999999999), a bulk
    // string in RESP2 and a double in RESP3.
    char age[64];
    snprintf(age, sizeof(age), "%.17g", static_cast<double>(now_ms - e.created_ms) / 1000.0);
    if (ctx.conn.protocol() >= 3) {
      ctx.w.Raw("," + std::string(age) + "\r\n");
    } else {
      ctx.w.Bulk(age);
    }
    ctx.w.Bulk("client-info");
    ctx.w.Bulk(e.client_info);
  }
  return Action::kNone;
}

// ACL SAVE: Redis's ACLSaveToFile: a temporary file next to the target,
// written whole, then renamed over it.
Action AclSave(CommandContext& ctx) {
  const std::string path = AclFile(ctx.service);
  if (path.empty()) {
    ctx.w.Error(kNoAclFile);
    return Action::kNone;
  }
  const std::string text = acl::FileText(ctx.service.acl()->users());
  const std::string tmp = path + ".tmp-" + std::to_string(getpid()) + "-" +
                          std::to_string(static_cast<long long>(time(nullptr)));
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0;
  if (!ok) LOG_WARNING("ACL SAVE: %s", SysError("open(" + tmp + ")", errno).c_str());
  size_t done = 0;
  while (ok && done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      LOG_WARNING("ACL SAVE: %s", SysError("write(" + tmp + ")", errno).c_str());
      ok = false;
    } else {
      done += static_cast<size_t>(n);
    }
  }
  if (ok && fsync(fd) != 0) {
    LOG_WARNING("ACL SAVE: %s", SysError("fsync(" + tmp + ")", errno).c_str());
    ok = false;
  }
  if (fd >= 0) close(fd);
  if (ok && rename(tmp.c_str(), path.c_str()) != 0) {
    LOG_WARNING("ACL SAVE: %s", SysError("rename(" + tmp + ", " + path + ")", errno).c_str());
    ok = false;
  }
  if (!ok) {
    unlink(tmp.c_str());
    ctx.w.Error(
        "ERR There was an error trying to save the ACLs. Please check the server logs for more "
        "information");
  } else {
    ctx.w.OK();
  }
  return Action::kNone;
}

Action AclLoad(CommandContext& ctx) {
  const std::string path = AclFile(ctx.service);
  if (path.empty()) {
    ctx.w.Error(kNoAclFile);
    return Action::kNone;
  }
  std::string text;
  if (std::string e = acl::ReadFile(path, &text); !e.empty()) {
    ctx.w.Error("ERR Error loading ACLs, opening file '" + path + "': " + e);
    return Action::kNone;
  }
  std::map<std::string, std::shared_ptr<const acl::User>> loaded;
  if (std::string e = acl::ParseFile(path, text, &loaded); !e.empty()) {
    ctx.w.Error("ERR " + e);
    return Action::kNone;
  }
  std::string e = ctx.service.ModifyUsers(
      [&](Users& users, uint64_t& next_id) { return acl::ReplaceUsers(users, next_id, loaded); });
  if (!e.empty()) {
    ctx.w.Error(e);
  } else {
    ctx.w.OK();
  }
  return Action::kNone;
}

Action AclDryRun(CommandContext& ctx) {
  const acl::Entry* e = ctx.service.acl()->Find(ctx.args[2]);
  if (e == nullptr) {
    ctx.w.Error("ERR User '" + std::string(ctx.args[2]) + "' not found");
    return Action::kNone;
  }
  const CommandSpec* spec = LookupCommand(ctx.args[3]);
  if (spec == nullptr) {
    ctx.w.Error("ERR Command '" + std::string(ctx.args[3]) + "' not found");
    return Action::kNone;
  }
  auto args = ctx.args.subspan(3);
  if (!ArityAllows(spec->arity, args.size())) {
    WrongArity(ctx.w, spec->name);
    return Action::kNone;
  }
  std::string denied = acl::DenialOf(*e->user, *spec, args);
  if (denied.empty()) {
    ctx.w.OK();
  } else {
    ctx.w.Bulk(denied);
  }
  return Action::kNone;
}

Action AclHelp(CommandContext& ctx) {
  static constexpr const char* kLines[] = {
      "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
      "CAT [<category>]",
      "    List all commands that belong to <category>, or all command categories",
      "    when no category is specified.",
      "DELUSER <username> [<username> ...]",
      "    Delete a list of users.",
      "DRYRUN <username> <command> [<arg> ...]",
      "    Returns whether the user can execute the given command without executing the command.",
      "GETUSER <username>",
      "    Get the user's details.",
      "GENPASS [<bits>]",
      "    Generate a secure 256-bit user password. The optional `bits` argument can",
      "    be used to specify a different size.",
      "LIST",
      "    Show users details in config file format.",
      "LOAD",
      "    Reload users from the ACL file.",
      "LOG [<count> | RESET]",
      "    Show the ACL log entries.",
      "SAVE",
      "    Save the current config to the ACL file.",
      "SETUSER <username> <attribute> [<attribute> ...]",
      "    Create or modify a user with the specified attributes.",
      "USERS",
      "    List all the registered usernames.",
      "WHOAMI",
      "    Return the current connection username.",
      "HELP",
      "    Prints this help.",
  };
  ctx.w.Array(static_cast<int64_t>(std::size(kLines)));
  for (const char* l : kLines) ctx.w.String(l);
  return Action::kNone;
}

struct Sub {
  const char* name;
  int arity;
  Action (*fn)(CommandContext&);
};
constexpr Sub kSubs[] = {
    {"cat", -2, AclCat},         {"deluser", -3, AclDelUser}, {"dryrun", -4, AclDryRun},
    {"genpass", -2, AclGenPass}, {"getuser", 3, nullptr},     {"help", 2, AclHelp},
    {"list", 2, nullptr},        {"load", 2, AclLoad},        {"log", -2, AclLog},
    {"save", 2, AclSave},        {"setuser", -3, AclSetUser}, {"users", 2, nullptr},
    {"whoami", 2, nullptr},
};

Action CmdAcl(CommandContext& ctx) {
  const std::string_view sub = ctx.args[1];
  const Sub* found = nullptr;
  for (const Sub& s : kSubs) {
    if (EqualsNoCase(sub, s.name)) found = &s;
  }
  if (found == nullptr) {
    UnknownSubcommand(ctx.w, sub, "ACL");
    return Action::kNone;
  }
  if (!ArityAllows(found->arity, ctx.args.size())) {
    WrongArity(ctx.w, "acl|" + AsciiLower(sub));
    return Action::kNone;
  }
  // CAT, GENPASS and LOG take at most one argument: Redis's aclCommand
  // answers more with its subcommand syntax error.
  if (ctx.args.size() > 3 &&
      (EqualsNoCase(sub, "CAT") || EqualsNoCase(sub, "GENPASS") || EqualsNoCase(sub, "LOG"))) {
    ctx.w.Error("ERR unknown subcommand or wrong number of arguments for '" + std::string(sub) +
                "'. Try ACL HELP.");
    return Action::kNone;
  }
  if (ctx.service.acl() == nullptr) {
    ctx.w.Error("ERR this server has no users");
    return Action::kNone;
  }
  ctx.service.RefreshUsers();
  if (found->fn != nullptr) return found->fn(ctx);
  const acl::Registry& reg = *ctx.service.acl();
  if (EqualsNoCase(sub, "WHOAMI")) {
    ctx.w.Bulk(UserName(ctx.conn));
  } else if (EqualsNoCase(sub, "USERS")) {
    ctx.w.Array(static_cast<int64_t>(reg.users().size()));
    for (const auto& [name, e] : reg.users()) ctx.w.Bulk(name);
  } else if (EqualsNoCase(sub, "LIST")) {
    ctx.w.Array(static_cast<int64_t>(reg.users().size()));
    for (const auto& [name, e] : reg.users()) ctx.w.Bulk("user " + name + " " + e.user->Describe());
  } else {  // GETUSER
    const acl::Entry* e = reg.Find(ctx.args[2]);
    if (e == nullptr) {
      ctx.w.Null();
    } else {
      WriteUser(ctx.w, *e->user);
    }
  }
  return Action::kNone;
}

// Redis 7.0's flags and categories of each subcommand (COMMAND INFO ACL).
const SubcommandSpec kAclSubcommands[] = {
    {"cat", kNoScript | kLoading | kStale, 0},
    {"deluser", kAdmin | kNoScript | kLoading | kStale, 0},
    {"dryrun", kAdmin | kNoScript | kLoading | kStale, 0},
    {"genpass", kNoScript | kLoading | kStale, 0},
    {"getuser", kAdmin | kNoScript | kLoading | kStale, 0},
    {"help", kLoading | kStale, 0},
    {"list", kAdmin | kNoScript | kLoading | kStale, 0},
    {"load", kAdmin | kNoScript | kLoading | kStale, 0},
    {"log", kAdmin | kNoScript | kLoading | kStale, 0},
    {"save", kAdmin | kNoScript | kLoading | kStale, 0},
    {"setuser", kAdmin | kNoScript | kLoading | kStale, 0},
    {"users", kAdmin | kNoScript | kLoading | kStale, 0},
    {"whoami", kNoScript | kLoading | kStale, 0},
};

// ACL's subcommands all run while loading (Redis: noscript, loading, stale);
// SETUSER, DELUSER, LOAD, SAVE, LOG, LIST, USERS, GETUSER and DRYRUN are
// admin (in the row's categories).
const CommandSpec kAclCommands[] = {
    // name, arity, flags, first key, last key, step, handler, slot
    {"acl", -2, 0, 0, 0, 0, 0, CmdAcl, 60, kNoScript | kLoading | kStale, kAclSubcommands},
};

}  // namespace

std::span<const CommandSpec> AclCommands() { return kAclCommands; }

}  // namespace redhub::worker
