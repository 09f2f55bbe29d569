// The server family: TIME, COMMAND (COUNT, INFO, DOCS) and SLOWLOG (GET,
// LEN, RESET, HELP), with Redis 7.0's replies. INFO and CONFIG have files of
// their own (info_command.cc, config_command.cc).
#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <vector>

#include "command_util.h"
#include "counters.h"

namespace redhub::worker {
namespace {

Action CmdTime(CommandContext& ctx) {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  ctx.w.Array(2);
  ctx.w.BulkInt(tv.tv_sec);
  ctx.w.BulkInt(tv.tv_usec);
  return Action::kNone;
}

// As Redis 7.0's COMMAND INFO: name, arity, flags (kCommandFlagNames, in
// Redis's order), key positions, ACL categories ("@read", in
// kAclCategoryNames's order); no tips, key specs or subcommands.
void WriteCommandInfo(resp::Writer& w, const CommandSpec& spec) {
  w.Array(10);
  w.Bulk(spec.name);
  w.Int(spec.arity);
  int64_t flags = 0;
  for (const auto& f : kCommandFlagNames) flags += (spec.flags & f.flag) != 0;
  w.Set(flags);
  for (const auto& f : kCommandFlagNames) {
    if (spec.flags & f.flag) w.String(f.name);
  }
  w.Int(spec.first_key);
  w.Int(spec.last_key);
  w.Int(spec.key_step);
  uint32_t categories = AclCategories(spec);
  int64_t ncategories = 0;
  for (const auto& c : kAclCategoryNames) ncategories += (categories & c.category) != 0;
  w.Set(ncategories);
  for (const auto& c : kAclCategoryNames) {
    if (categories & c.category) w.String(std::string("@") + c.name);
  }
  w.Set(0);    // tips
  w.Array(0);  // key specs
  w.Array(0);  // subcommands
}

Action CmdCommand(CommandContext& ctx) {
  const auto& table = CommandService::Table();
  if (ctx.args.size() == 1) {
    ctx.w.Array(static_cast<int64_t>(table.size()));
    for (const auto& spec : table) WriteCommandInfo(ctx.w, spec);
    return Action::kNone;
  }
  std::string_view sub = ctx.args[1];
  if (EqualsNoCase(sub, "COUNT") && ctx.args.size() == 2) {
    ctx.w.Int(static_cast<int64_t>(table.size()));
  } else if (EqualsNoCase(sub, "INFO")) {
    if (ctx.args.size() == 2) {
      ctx.w.Array(static_cast<int64_t>(table.size()));
      for (const auto& spec : table) WriteCommandInfo(ctx.w, spec);
    } else {
      ctx.w.Array(static_cast<int64_t>(ctx.args.size() - 2));
      for (size_t i = 2; i < ctx.args.size(); i++) {
        const CommandSpec* spec = CommandService::Lookup(ctx.args[i]);
        if (spec == nullptr) {
          ctx.w.Null();  // Redis's addReplyNull: "$-1" in RESP2, not the null array
        } else {
          WriteCommandInfo(ctx.w, *spec);
        }
      }
    }
  } else if (EqualsNoCase(sub, "DOCS")) {
    // No documentation is shipped; clients such as redis-cli then simply
    // show no hints.
    ctx.w.Map(0);
  } else {
    UnknownSubcommand(ctx.w, sub, "COMMAND");
  }
  return Action::kNone;
}

// SLOWLOG over the log every worker shares (shm/counters.h).
Action CmdSlowlog(CommandContext& ctx) {
  std::string_view sub = ctx.args[1];
  shm::CounterArea* area = ctx.service.counter_area();
  if (EqualsNoCase(sub, "GET") && ctx.args.size() <= 3) {
    int64_t count = 10;
    if (ctx.args.size() == 3 && (!ParseInt64(ctx.args[2], &count) || count < -1)) {
      ctx.w.Error("ERR count should be greater than or equal to -1");
      return Action::kNone;
    }
    std::vector<shm::SlowLogEntry> entries;
    if (area != nullptr) entries = area->SlowLogGet(count < 0 ? SIZE_MAX : count);
    ctx.w.Array(static_cast<int64_t>(entries.size()));
    for (const auto& e : entries) {
      ctx.w.Array(6);
      ctx.w.Int(static_cast<int64_t>(e.id));
      ctx.w.Int(e.unix_time);
      ctx.w.Int(e.micros);
      ctx.w.Array(static_cast<int64_t>(e.args.size()));
      for (const auto& a : e.args) ctx.w.Bulk(a);
      ctx.w.Bulk(e.client_addr);
      ctx.w.Bulk(e.client_name);
    }
  } else if (EqualsNoCase(sub, "LEN") && ctx.args.size() == 2) {
    ctx.w.Int(area != nullptr ? static_cast<int64_t>(area->SlowLogLen()) : 0);
  } else if (EqualsNoCase(sub, "RESET") && ctx.args.size() == 2) {
    if (area != nullptr) area->SlowLogReset();
    ctx.w.OK();
  } else if (EqualsNoCase(sub, "HELP") && ctx.args.size() == 2) {
    const char* lines[] = {
        "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET [<count>]",
        "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
        "    Entries are made of:",
        "    id, timestamp, time in microseconds, arguments array, client IP and port,",
        "    client name",
        "LEN",
        "    Return the length of the slowlog.",
        "RESET",
        "    Reset the slowlog.",
        "HELP",
        "    Print this help."};
    ctx.w.Array(static_cast<int64_t>(std::size(lines)));
    for (const char* l : lines) ctx.w.String(l);
  } else if (EqualsNoCase(sub, "GET") || EqualsNoCase(sub, "LEN") || EqualsNoCase(sub, "RESET")) {
    std::string name = "slowlog|" + std::string(sub);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    WrongArity(ctx.w, name);
  } else {
    UnknownSubcommand(ctx.w, sub, "SLOWLOG");
  }
  return Action::kNone;
}

// The subcommands the handlers serve, as Redis 7.0 reports them. COMMAND
// is no container: without a subcommand it runs itself, so its row has its
// own flags and categories as well.
const SubcommandSpec kCommandSubcommands[] = {
    // name, flags, ACL categories
    {"count", kLoading | kStale, kAclConnection},
    {"docs", kLoading | kStale, kAclConnection},
    {"info", kLoading | kStale, kAclConnection},
};
const SubcommandSpec kSlowlogSubcommands[] = {
    {"get", kAdmin | kLoading | kStale, 0},
    {"help", kLoading | kStale, 0},
    {"len", kAdmin | kLoading | kStale, 0},
    {"reset", kAdmin | kLoading | kStale, 0},
};

// The container rows' subcommands all run while loading (Redis: loading,
// stale on every COMMAND and SLOWLOG subcommand).
const CommandSpec kServerCommands[] = {
    // name, arity, flags, ACL categories, first key, last key, step, handler, slot
    {"command", -1, kLoading | kStale, kAclConnection, 0, 0, 0, CmdCommand, 1, 0,
     kCommandSubcommands},
    {"slowlog", -2, 0, 0, 0, 0, 0, CmdSlowlog, 9, kLoading | kStale, kSlowlogSubcommands},
    {"time", 1, kLoading | kStale | kFast, 0, 0, 0, 0, CmdTime, 10},
};

}  // namespace

std::span<const CommandSpec> ServerCommands() { return kServerCommands; }

}  // namespace redhub::worker
