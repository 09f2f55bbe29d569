// CONFIG: GET only, over the master's settings table (master/settings.h),
// whose rows the master renders into ServiceInfo::config_parameters.
#include <string>
#include <utility>
#include <vector>

#include "command_util.h"
#include "glob.h"

namespace redhub::worker {
namespace {

// CONFIG GET answers with the settings Redis clients and tools ask about.
Action CmdConfig(CommandContext& ctx) {
  std::string_view sub = ctx.args[1];
  if (!EqualsNoCase(sub, "GET")) {
    UnknownSubcommand(ctx.w, sub, "CONFIG");
    return Action::kNone;
  }
  if (ctx.args.size() < 3) {
    WrongArity(ctx.w, "config|get");
    return Action::kNone;
  }
  // Rendered by the master from its settings table, in Redis's names,
  // and replaced at every reload (ServiceInfo::config_parameters).
  const ConfigParameterList& params = ctx.service.info().config_parameters;
  std::vector<const std::pair<std::string, std::string>*> found;
  for (const auto& p : params) {
    for (size_t i = 2; i < ctx.args.size(); i++) {
      if (GlobMatch(ctx.args[i], p.first, true)) {
        found.push_back(&p);
        break;
      }
    }
  }
  ctx.w.Map(static_cast<int64_t>(found.size()));
  for (const auto* p : found) {
    ctx.w.Bulk(p->first);
    ctx.w.Bulk(p->second);
  }
  return Action::kNone;
}

// The CONFIG subcommands CmdConfig serves, as Redis 7.0 reports them.
const SubcommandSpec kConfigSubcommands[] = {
    // name, flags, ACL categories
    {"get", kAdmin | kNoScript | kLoading | kStale, 0},
};

// CONFIG's subcommands all run while loading (Redis: loading, stale).
const CommandSpec kConfigCommands[] = {
    // name, arity, flags, ACL categories, first key, last key, step, handler, slot
    {"config", -2, 0, 0, 0, 0, 0, CmdConfig, 2, kLoading | kStale, kConfigSubcommands},
};

}  // namespace

std::span<const CommandSpec> ConfigCommands() { return kConfigCommands; }

}  // namespace redhub::worker
