#include "script_host.h"

#include "command_util.h"
#include "log.h"
#include "store.h"

namespace redhub::worker {

const SubcommandSpec* FindSubcommand(const CommandSpec& spec,
                                     std::span<const std::string_view> args) {
  if (spec.subcommands.empty() || args.size() < 2) return nullptr;
  for (const SubcommandSpec& sub : spec.subcommands) {
    if (EqualsNoCase(sub.name, args[1])) return &sub;
  }
  return nullptr;
}

bool ScriptHost::Declared(std::string_view key) const {
  for (std::string_view k : run_.keys) {
    if (k == key) return true;
  }
  return false;
}

std::string ScriptHost::Refusal(const CommandSpec* spec, std::span<const std::string_view> args) {
  // scriptVerifyCommandArity.
  if (spec == nullptr) return "ERR Unknown Redis command called from script";
  if (!ArityAllows(spec->arity, args.size())) {
    return "ERR Wrong number of args calling Redis command from script";
  }
  const SubcommandSpec* sub = FindSubcommand(*spec, args);
  const uint32_t flags = sub != nullptr ? sub->flags : spec->flags;
  if (flags & kNoScript) return "ERR This Redis command is not allowed from script";
  // (scriptVerifyACL is RefuseInScript, called by Call: it writes its own
  // reply and logs.)
  if ((flags & kWrite) && run_.read_only) {
    return "ERR Write commands are not allowed from read-only scripts.";
  }
  if ((flags & kDenyOom) && !run_.allow_oom && run_.service.store().OverMaxmemory()) {
    return "-" + std::string(kErrOom);
  }
  if (!run_.whole_store) {
    if (spec->flags & kWholeStore) {
      return "ERR script tried accessing the whole keyspace (" + std::string(spec->name) +
             ") without the allow-undeclared-keys flag";
    }
    std::string undeclared;
    ForEachKeyArg(*spec, args, [&](size_t, std::string_view key) {
      if (undeclared.empty() && !Declared(key)) undeclared = std::string(key);
    });
    if (!undeclared.empty()) return "ERR script tried accessing undeclared key: " + undeclared;
  }
  return "";
}

void ScriptHost::Call(std::span<const std::string_view> args, int resp, std::string* reply) {
  resp::Writer w(*reply, resp);
  const CommandSpec* spec = LookupCommand(args[0]);
  std::string refusal = Refusal(spec, args);
  if (!refusal.empty()) {
    if (refusal[0] == '-') refusal.erase(0, 1);
    w.Error(refusal);
    return;
  }
  if (run_.service.RefuseInScript(run_.conn, *spec, args, w)) return;
  run_.service.RunFromScript(run_.conn, *spec, args, w);
}

void ScriptHost::Log(script::LogLevel level, std::string_view message) {
  const int n = static_cast<int>(message.size());
  switch (level) {
    case script::LogLevel::kDebug:
      LOG_DEBUG("%.*s", n, message.data());
      break;
    case script::LogLevel::kVerbose:
      LOG_VERBOSE("%.*s", n, message.data());
      break;
    case script::LogLevel::kNotice:
      LOG_NOTICE("%.*s", n, message.data());
      break;
    case script::LogLevel::kWarning:
      LOG_WARNING("%.*s", n, message.data());
      break;
  }
}

bool ScriptHost::ShouldStop() { return false; }

}  // namespace redhub::worker
