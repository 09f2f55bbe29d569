// The scripting family: EVAL, EVAL_RO, EVALSHA, EVALSHA_RO, SCRIPT, FCALL,
// FCALL_RO, FUNCTION, with Redis 7.0's replies and errors (src/eval.c,
// src/functions.c).
//
// A script is atomic against every other worker and across a death, as an
// EXEC is (transaction_commands.cc): before it runs, its declared keys'
// stripes are locked once, in the store's lock order, with staged writes
// (Store::LockKeys), or every stripe if it may touch keys it did not
// declare (Store::LockAll, the allow-undeclared-keys flag); its commands
// run through that one Txn (a Store::Scope: script_host.cc), and every
// write becomes visible at once when the Txn ends, before the reply
// leaves. A worker killed at any instant before that leaves none of the
// script's writes; after it, all. Inside an EXEC the script runs in the
// EXEC's scope, whose locks already cover its keys (EXEC finds them through
// the rows' movable keys, and takes LockAll for an undeclared-keys script).
//
// As in Redis, a script's error does not roll back what it wrote before it.
#include <algorithm>

#include "command_util.h"
#include "function_payload.h"
#include "glob.h"
#include "script_cache.h"
#include "script_host.h"
#include "store.h"

namespace redhub::worker {

ScriptCache& CommandService::scripts() {
  if (!scripts_) scripts_ = std::make_unique<ScriptCache>(script_area_);
  return *scripts_;
}

namespace {

// EVAL's and FCALL's numkeys, as evalGenericCommand and fcallCommandGeneric
// check it; false after writing the error.
bool ParseNumKeys(CommandContext& ctx, bool function, int64_t* numkeys) {
  if (!ParseInt64(ctx.args[2], numkeys)) {
    ctx.w.Error(kErrNotInteger);
    return false;
  }
  if (*numkeys > static_cast<int64_t>(ctx.args.size()) - 3) {
    ctx.w.Error(function ? "ERR Number of keys can't be greater than number of args"
                         : "ERR Number of keys can't be greater than number of args");
    return false;
  }
  if (*numkeys < 0) {
    ctx.w.Error("ERR Number of keys can't be negative");
    return false;
  }
  return true;
}

// Runs `run` with the script's keys locked (or every stripe), atomically.
template <typename Run>
void Locked(CommandContext& ctx, std::span<const std::string_view> keys, bool whole, Run&& run) {
  shm::Store& store = ctx.service.store();
  if (store.in_scope()) {
    // Inside EXEC: the transaction's Txn already holds what the script
    // needs (EXEC took the script's keys, or every stripe).
    run(whole || store.scope_holds_all());
    return;
  }
  shm::Store::Txn txn = whole ? store.LockAll() : store.LockKeys(keys, shm::Store::Writes::kStaged);
  {
    shm::Store::Scope scope(store, txn);
    run(whole);
  }
  txn.Unlock();  // the commit: every write of the script visible at once
}

// Redis 7.0's checks of a script's flags before it runs
// (scriptPrepareForRun), for the flags of a script with a shebang or of a
// function. "" or the error.
std::string FlagRefusal(CommandContext& ctx, const script::Flags& flags, bool ro_command) {
  if (!flags.has_shebang) return "";
  if (ro_command && !flags.no_writes) {
    return "ERR Can not execute a script with write flag using *_ro command.";
  }
  if (!flags.no_writes && !flags.allow_oom && ctx.service.store().OverMaxmemory()) {
    return "-" + std::string(kErrOom);
  }
  return "";
}

void RunScript(CommandContext& ctx, bool ro_command, const std::string& sha,
               const script::Flags& flags, int64_t numkeys) {
  if (std::string e = FlagRefusal(ctx, flags, ro_command); !e.empty()) {
    ctx.w.Error(e[0] == '-' ? std::string_view(e).substr(1) : std::string_view(e));
    return;
  }
  const auto keys = ctx.args.subspan(3, static_cast<size_t>(numkeys));
  const auto argv = ctx.args.subspan(3 + static_cast<size_t>(numkeys));
  Locked(ctx, keys, flags.allow_undeclared_keys, [&](bool whole) {
    ScriptRun run{ctx.conn, ctx.service, keys};
    run.read_only = ro_command || (flags.has_shebang && flags.no_writes);
    run.allow_oom = flags.has_shebang && flags.allow_oom;
    run.whole_store = whole;
    ScriptHost host(run);
    ctx.service.script_depth_++;
    ctx.service.scripts().engine().Run(sha, keys, argv, host, ctx.w.protocol(), ctx.w);
    ctx.service.script_depth_--;
  });
}

Action EvalGeneric(CommandContext& ctx, bool by_sha, bool ro_command) {
  int64_t numkeys = 0;
  if (!ParseNumKeys(ctx, false, &numkeys)) return Action::kNone;
  ScriptCache& cache = ctx.service.scripts();
  std::string sha;
  script::Flags flags;
  if (by_sha) {
    sha = AsciiLower(ctx.args[1]);
    const script::Flags* f = sha.size() == 40 ? cache.Find(sha) : nullptr;
    if (f == nullptr) {
      ctx.w.Error("NOSCRIPT No matching script. Please use EVAL.");
      return Action::kNone;
    }
    flags = *f;
  } else if (std::string e = cache.Load(ctx.args[1], &sha, &flags); !e.empty()) {
    ctx.w.Error(e);
    return Action::kNone;
  }
  RunScript(ctx, ro_command, sha, flags, numkeys);
  return Action::kNone;
}

Action CmdEval(CommandContext& ctx) { return EvalGeneric(ctx, false, false); }
Action CmdEvalRo(CommandContext& ctx) { return EvalGeneric(ctx, false, true); }
Action CmdEvalSha(CommandContext& ctx) { return EvalGeneric(ctx, true, false); }
Action CmdEvalShaRo(CommandContext& ctx) { return EvalGeneric(ctx, true, true); }

Action FcallGeneric(CommandContext& ctx, bool ro_command) {
  ScriptCache& cache = ctx.service.scripts();
  cache.Sync();
  const script::FunctionInfo* fn = cache.engine().FindFunction(ctx.args[1]);
  if (fn == nullptr) {
    ctx.w.Error("ERR Function not found");
    return Action::kNone;
  }
  int64_t numkeys = 0;
  if (!ParseInt64(ctx.args[2], &numkeys)) {
    ctx.w.Error(kErrNotInteger);
    return Action::kNone;
  }
  if (numkeys > static_cast<int64_t>(ctx.args.size()) - 3) {
    ctx.w.Error("ERR Number of keys can't be greater than number of args");
    return Action::kNone;
  }
  if (numkeys < 0) {
    ctx.w.Error("ERR Number of keys can't be negative");
    return Action::kNone;
  }
  script::Flags flags = fn->flags;
  flags.has_shebang = true;  // a function's flags always apply
  if (std::string e = FlagRefusal(ctx, flags, ro_command); !e.empty()) {
    ctx.w.Error(e[0] == '-' ? std::string_view(e).substr(1) : std::string_view(e));
    return Action::kNone;
  }
  const std::string name = fn->name;
  const auto keys = ctx.args.subspan(3, static_cast<size_t>(numkeys));
  const auto argv = ctx.args.subspan(3 + static_cast<size_t>(numkeys));
  Locked(ctx, keys, flags.allow_undeclared_keys, [&](bool whole) {
    ScriptRun run{ctx.conn, ctx.service, keys};
    run.read_only = ro_command || flags.no_writes;
    run.allow_oom = flags.allow_oom;
    run.whole_store = whole;
    ScriptHost host(run);
    ctx.service.script_depth_++;
    cache.engine().Call(name, keys, argv, host, ctx.w.protocol(), ctx.w);
    ctx.service.script_depth_--;
  });
  return Action::kNone;
}

Action CmdFcall(CommandContext& ctx) { return FcallGeneric(ctx, false); }
Action CmdFcallRo(CommandContext& ctx) { return FcallGeneric(ctx, true); }

void Help(CommandContext& ctx, std::span<const char* const> lines) {
  ctx.w.Array(static_cast<int64_t>(lines.size()));
  for (const char* l : lines) ctx.w.String(l);
}

constexpr const char* kScriptHelp[] = {
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
};

// FLUSH's optional mode (both flush at once here: the cache is small).
bool FlushModeOk(CommandContext& ctx, const char* what) {
  if (ctx.args.size() == 2) return true;
  if (ctx.args.size() == 3 &&
      (EqualsNoCase(ctx.args[2], "SYNC") || EqualsNoCase(ctx.args[2], "ASYNC"))) {
    return true;
  }
  ctx.w.Error(std::string("ERR ") + what + " FLUSH only support SYNC|ASYNC option");
  return false;
}

struct Sub {
  const char* name;
  int arity;
};

// The subcommand row of args[1] with its arity checked, or nullptr after
// the error.
const Sub* FindSub(CommandContext& ctx, std::span<const Sub> subs, const char* container) {
  for (const Sub& s : subs) {
    if (EqualsNoCase(ctx.args[1], s.name)) {
      if (!ArityAllows(s.arity, ctx.args.size())) {
        WrongArity(ctx.w, AsciiLower(container) + "|" + AsciiLower(ctx.args[1]));
        return nullptr;
      }
      return &s;
    }
  }
  UnknownSubcommand(ctx.w, ctx.args[1], container);
  return nullptr;
}

constexpr Sub kScriptSubs[] = {{"debug", 3}, {"exists", -3}, {"flush", -2},
                               {"help", 2},  {"kill", 2},    {"load", 3}};

Action CmdScript(CommandContext& ctx) {
  const Sub* sub = FindSub(ctx, kScriptSubs, "SCRIPT");
  if (sub == nullptr) return Action::kNone;
  const std::string_view name = sub->name;
  ScriptCache& cache = ctx.service.scripts();
  if (name == "help") {
    Help(ctx, kScriptHelp);
  } else if (name == "load") {
    std::string sha;
    script::Flags flags;
    if (std::string e = cache.Load(ctx.args[2], &sha, &flags); !e.empty()) {
      ctx.w.Error(e);
    } else {
      ctx.w.Bulk(sha);
    }
  } else if (name == "exists") {
    cache.Sync();
    ctx.w.Array(static_cast<int64_t>(ctx.args.size() - 2));
    for (size_t i = 2; i < ctx.args.size(); i++) {
      ctx.w.Int(cache.engine().Has(AsciiLower(ctx.args[i])) ? 1 : 0);
    }
  } else if (name == "flush") {
    if (!FlushModeOk(ctx, "SCRIPT")) return Action::kNone;
    cache.FlushScripts();
    ctx.w.OK();
  } else if (name == "kill") {
    // A script runs with this worker's loop busy; one on another worker is
    // not visible from here yet.
    ctx.w.Error("NOTBUSY No scripts in execution right now.");
  } else {  // debug
    ctx.w.Error("ERR SCRIPT DEBUG is not supported by this server");
  }
  return Action::kNone;
}

constexpr const char* kFunctionHelp[] = {
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using "
    "FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore "
    "policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, "
    "replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance "
    "of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
};

// Redis's function flags as FUNCTION LIST names them.
void WriteFunctionFlags(resp::Writer& w, const script::Flags& f) {
  std::vector<const char*> names;
  if (f.no_writes) names.push_back("no-writes");
  if (f.allow_oom) names.push_back("allow-oom");
  if (f.allow_stale) names.push_back("allow-stale");
  if (f.no_cluster) names.push_back("no-cluster");
  if (f.allow_cross_slot_keys) names.push_back("allow-cross-slot-keys");
  if (f.allow_undeclared_keys) names.push_back("allow-undeclared-keys");
  w.Set(static_cast<int64_t>(names.size()));
  for (const char* n : names) w.Bulk(n);
}

void FunctionList(CommandContext& ctx) {
  bool with_code = false;
  std::string_view pattern;
  bool have_pattern = false;
  for (size_t i = 2; i < ctx.args.size(); i++) {
    if (EqualsNoCase(ctx.args[i], "WITHCODE")) {
      if (with_code) {
        ctx.w.Error("ERR Unknown argument withcode");
        return;
      }
      with_code = true;
    } else if (EqualsNoCase(ctx.args[i], "LIBRARYNAME")) {
      if (have_pattern) {
        ctx.w.Error("ERR library name argument was already given");
        return;
      }
      if (i + 1 >= ctx.args.size()) {
        ctx.w.Error("ERR library name argument was not given");
        return;
      }
      pattern = ctx.args[++i];
      have_pattern = true;
    } else {
      ctx.w.Error("ERR Unknown argument " + std::string(ctx.args[i]));
      return;
    }
  }
  ScriptCache& cache = ctx.service.scripts();
  cache.Sync();
  std::vector<script::LibraryInfo> libs = cache.engine().Libraries();
  if (have_pattern) {
    std::erase_if(libs, [&](const script::LibraryInfo& l) { return !GlobMatch(pattern, l.name); });
  }
  ctx.w.Array(static_cast<int64_t>(libs.size()));
  for (const script::LibraryInfo& lib : libs) {
    ctx.w.Map(with_code ? 4 : 3);
    ctx.w.Bulk("library_name");
    ctx.w.Bulk(lib.name);
    ctx.w.Bulk("engine");
    ctx.w.Bulk(lib.engine);
    ctx.w.Bulk("functions");
    ctx.w.Array(static_cast<int64_t>(lib.functions.size()));
    for (const script::FunctionInfo& f : lib.functions) {
      ctx.w.Map(3);
      ctx.w.Bulk("name");
      ctx.w.Bulk(f.name);
      ctx.w.Bulk("description");
      if (f.description.empty()) {
        ctx.w.Null();
      } else {
        ctx.w.Bulk(f.description);
      }
      ctx.w.Bulk("flags");
      WriteFunctionFlags(ctx.w, f.flags);
    }
    if (with_code) {
      ctx.w.Bulk("library_code");
      ctx.w.Bulk(lib.code);
    }
  }
}

void FunctionDumpOrRestore(CommandContext& ctx, bool dump) {
  ScriptCache& cache = ctx.service.scripts();
  if (dump) {
    cache.Sync();
    std::vector<std::string> codes;
    for (const script::LibraryInfo& lib : cache.engine().Libraries()) codes.push_back(lib.code);
    ctx.w.Bulk(DumpFunctionPayload(codes));
    return;
  }
  ScriptCache::RestorePolicy policy = ScriptCache::RestorePolicy::kAppend;
  if (ctx.args.size() > 4) {
    ctx.w.Error(kErrSyntax);
    return;
  }
  if (ctx.args.size() == 4) {
    const std::string_view p = ctx.args[3];
    if (EqualsNoCase(p, "FLUSH")) {
      policy = ScriptCache::RestorePolicy::kFlush;
    } else if (EqualsNoCase(p, "REPLACE")) {
      policy = ScriptCache::RestorePolicy::kReplace;
    } else if (!EqualsNoCase(p, "APPEND")) {
      ctx.w.Error(
          "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.");
      return;
    }
  }
  std::vector<std::string> codes;
  std::string error;
  if (!ParseFunctionPayload(ctx.args[2], &codes, &error)) {
    ctx.w.Error(error);
    return;
  }
  if (std::string e = cache.RestoreLibraries(codes, policy); !e.empty()) {
    ctx.w.Error(e);
    return;
  }
  ctx.w.OK();
}

constexpr Sub kFunctionSubs[] = {{"delete", 3}, {"dump", 2},     {"flush", -2},
                                 {"help", 2},   {"kill", 2},     {"list", -2},
                                 {"load", -3},  {"restore", -3}, {"stats", 2}};

Action CmdFunction(CommandContext& ctx) {
  const Sub* sub = FindSub(ctx, kFunctionSubs, "FUNCTION");
  if (sub == nullptr) return Action::kNone;
  const std::string_view name = sub->name;
  ScriptCache& cache = ctx.service.scripts();
  if (name == "help") {
    Help(ctx, kFunctionHelp);
  } else if (name == "load") {
    bool replace = false;
    size_t i = 2;
    for (; i + 1 < ctx.args.size(); i++) {
      if (!EqualsNoCase(ctx.args[i], "REPLACE")) {
        ctx.w.Error("ERR Unknown option given: " + std::string(ctx.args[i]));
        return Action::kNone;
      }
      replace = true;
    }
    std::string lib;
    if (std::string e = cache.LoadLibrary(ctx.args[i], replace, &lib); !e.empty()) {
      ctx.w.Error(e);
    } else {
      ctx.w.Bulk(lib);
    }
  } else if (name == "delete") {
    if (!cache.DeleteLibrary(ctx.args[2])) {
      ctx.w.Error("ERR Library not found");
    } else {
      ctx.w.OK();
    }
  } else if (name == "flush") {
    if (!FlushModeOk(ctx, "FUNCTION")) return Action::kNone;
    cache.FlushFunctions();
    ctx.w.OK();
  } else if (name == "list") {
    FunctionList(ctx);
  } else if (name == "kill") {
    ctx.w.Error("NOTBUSY No scripts in execution right now.");
  } else if (name == "stats") {
    cache.Sync();
    size_t functions = 0;
    const std::vector<script::LibraryInfo> libs = cache.engine().Libraries();
    for (const script::LibraryInfo& l : libs) functions += l.functions.size();
    ctx.w.Map(2);
    ctx.w.Bulk("running_script");
    ctx.w.Null();
    ctx.w.Bulk("engines");
    ctx.w.Map(1);
    ctx.w.Bulk("LUA");
    ctx.w.Map(2);
    ctx.w.Bulk("libraries_count");
    ctx.w.Int(static_cast<int64_t>(libs.size()));
    ctx.w.Bulk("functions_count");
    ctx.w.Int(static_cast<int64_t>(functions));
  } else {
    FunctionDumpOrRestore(ctx, name == "dump");
  }
  return Action::kNone;
}

// Redis 7.0's COMMAND INFO flags of each subcommand.
const SubcommandSpec kScriptSubcommands[] = {
    {"debug", kNoScript, kAclScripting},
    {"exists", kNoScript, kAclScripting},
    {"flush", kNoScript, kAclScripting},
    {"help", kLoading | kStale, kAclScripting},
    {"kill", kNoScript | kAllowBusy, kAclScripting},
    {"load", kNoScript | kStale, kAclScripting},
};
const SubcommandSpec kFunctionSubcommands[] = {
    {"delete", kWrite | kNoScript, kAclScripting},
    {"dump", kNoScript, kAclScripting},
    {"flush", kWrite | kNoScript, kAclScripting},
    {"help", kLoading | kStale, kAclScripting},
    {"kill", kNoScript | kAllowBusy, kAclScripting},
    {"list", kNoScript, kAclScripting},
    {"load", kWrite | kDenyOom | kNoScript, kAclScripting},
    {"restore", kWrite | kDenyOom | kNoScript, kAclScripting},
    {"stats", kNoScript | kAllowBusy, kAclScripting},
};

constexpr uint32_t kEvalFlags = kNoScript | kStale | kSkipMonitor | kNoMandatoryKeys | kMovableKeys;

// Slots 61 and up: a command's slot is its place in the counter blocks,
// which a binary upgrade keeps, so new rows take new slots.
const CommandSpec kScriptCommands[] = {
    // name, arity, flags, ACL categories, first key, last key, step, handler, slot
    {"eval", -3, kEvalFlags, kAclScripting, 0, 0, 0, CmdEval, 61},
    {"eval_ro", -3, kReadOnly | kEvalFlags, kAclScripting, 0, 0, 0, CmdEvalRo, 62},
    {"evalsha", -3, kEvalFlags, kAclScripting, 0, 0, 0, CmdEvalSha, 63},
    {"evalsha_ro", -3, kReadOnly | kEvalFlags, kAclScripting, 0, 0, 0, CmdEvalShaRo, 64},
    {"script", -2, 0, 0, 0, 0, 0, CmdScript, 65, kNoScript | kStale | kLoading | kAllowBusy,
     kScriptSubcommands},
    {"fcall", -3, kEvalFlags, kAclScripting, 0, 0, 0, CmdFcall, 66},
    {"fcall_ro", -3, kReadOnly | kEvalFlags, kAclScripting, 0, 0, 0, CmdFcallRo, 67},
    {"function", -2, 0, 0, 0, 0, 0, CmdFunction, 68,
     kWrite | kDenyOom | kNoScript | kStale | kLoading | kAllowBusy, kFunctionSubcommands},
};

}  // namespace

bool ScriptNeedsWholeStore(CommandService& service, const CommandSpec& spec,
                           std::span<const std::string_view> args) {
  if (!(spec.flags & kMovableKeys) || args.size() < 2) return false;
  ScriptCache& cache = service.scripts();
  if (spec.handler == CmdFcall || spec.handler == CmdFcallRo) {
    cache.Sync();
    const script::FunctionInfo* fn = cache.engine().FindFunction(args[1]);
    return fn != nullptr && fn->flags.allow_undeclared_keys;
  }
  script::Flags flags;
  if (spec.handler == CmdEval || spec.handler == CmdEvalRo) {
    std::string ignored;
    if (!script::Engine::ParseShebang(args[1], &flags).empty()) return false;
    return flags.has_shebang && flags.allow_undeclared_keys;
  }
  const script::Flags* f = cache.Find(AsciiLower(args[1]));
  return f != nullptr && f->allow_undeclared_keys;
}

std::span<const CommandSpec> ScriptCommands() { return kScriptCommands; }

}  // namespace redhub::worker
