// The Lua 5.1 scripting engine of EVAL and FUNCTION: a sandboxed Lua state
// per worker, Redis 7.0's `redis` API (call, pcall, error_reply,
// status_reply, sha1hex, log, setresp, set_repl, replicate_commands,
// breakpoint/debug as no-ops, the LOG_* and REPL_* constants), the
// libraries Redis exposes (cjson, cmsgpack, bit, struct), Redis's type
// conversions both ways in RESP2 and RESP3, shebang flags, and the function
// libraries of FUNCTION LOAD (redis.register_function).
//
// Transport-free: the engine never sees a socket, the store or the command
// table. What a script's redis.call reaches is the Host the caller passes
// (the daemon's command layer: it checks and runs the command and writes
// its reply in RESP); what the script returns is written to a
// resp::Writer. Errors are Redis's texts, returned as strings or written as
// error replies; nothing throws out of the engine (Lua errors are caught by
// lua_pcall inside it).
//
// One Engine per process and thread; not thread-safe.
#pragma once

#include <redhub/reply.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace redhub::script {

// A script's or function's flags (`#!lua flags=...` or register_function's
// flags): Redis 7.0's SCRIPT_FLAG_*.
struct Flags {
  bool has_shebang = false;  // EVAL: a `#!lua` first line (flags then apply)
  bool no_writes = false;
  bool allow_oom = false;
  bool allow_stale = false;
  bool no_cluster = false;
  bool allow_cross_slot_keys = false;
  bool allow_undeclared_keys = false;  // the daemon's: may touch keys it did not declare
};

// Redis's redis.log levels.
enum class LogLevel { kDebug = 0, kVerbose = 1, kNotice = 2, kWarning = 3 };

// The daemon's side of a running script.
class Host {
 public:
  virtual ~Host() = default;
  // redis.call / redis.pcall: runs args (args[0] the command name, as the
  // script passed it) and appends exactly one RESP reply to *reply, in
  // protocol `resp` (2 or 3, redis.setresp). Every check Redis's scriptCall
  // makes (unknown command, arity, noscript, no-writes, deny-oom, ACL,
  // undeclared keys) is the Host's: a refusal is an error reply like any
  // other ("-ERR ..."). The engine raises it (call) or returns it (pcall).
  virtual void Call(std::span<const std::string_view> args, int resp, std::string* reply) = 0;
  // redis.log.
  virtual void Log(LogLevel level, std::string_view message) = 0;
  // Asked from Lua's count hook (every ~100,000 instructions, and at each
  // redis.call): true stops the script, which then fails with Redis's
  // "ERR Script killed by user with SCRIPT KILL..." (or FUNCTION KILL).
  // The Host also learns here that the script is still running (BUSY).
  virtual bool ShouldStop() = 0;
};

// FUNCTION LIST's view of one function and one library.
struct FunctionInfo {
  std::string name;
  std::string description;  // "" when none was given
  Flags flags;
};
struct LibraryInfo {
  std::string name;
  std::string engine = "LUA";
  std::string code;  // as loaded, shebang included (WITHCODE, FUNCTION DUMP)
  std::vector<FunctionInfo> functions;
};

class Engine {
 public:
  Engine();
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // --- EVAL scripts ---
  // SHA1 of body, 40 lower-case hex digits (redis.sha1hex, SCRIPT LOAD).
  static std::string Sha1Hex(std::string_view body);
  // Parses the shebang of body: "" and *flags, or Redis's error
  // ("ERR Unexpected flag in script shebang: x", "ERR Unknown lua shebang
  // option: x", "ERR Unexpected engine in script shebang: x").
  static std::string ParseShebang(std::string_view body, Flags* flags);
  // Compiles body into the cache under its sha (SCRIPT LOAD, EVAL). "" on
  // success (also when already cached), else Redis's error text without
  // the '-' ("ERR Error compiling script (new function): user_script:1:
  // ..."). *sha and *flags are set on success.
  std::string Load(std::string_view body, std::string* sha, Flags* flags);
  bool Has(std::string_view sha) const;  // sha in either case
  // nullptr if not cached.
  const Flags* FlagsOf(std::string_view sha) const;
  void Flush();  // SCRIPT FLUSH: every cached script gone
  size_t script_count() const;
  size_t memory_bytes() const;  // lua_gc(LUA_GCCOUNT) in bytes (INFO used_memory_lua)

  // Runs a cached script (Has(sha) must be true) with KEYS and ARGV, the
  // caller's protocol `resp` (2 or 3: the conversion of the result), and
  // writes exactly one reply to w: the result converted as Redis does, or
  // the error as Redis 7.0 words it (a redis.call error raised:
  // "<error> script: <sha>, on @user_script:<line>."; a Lua runtime error:
  // "ERR user_script:<line>: <message> script: <sha>, on
  // @user_script:<line>."). The Lua stack and globals are as before after
  // it returns; redis.setresp resets to 2 for the next run.
  void Run(std::string_view sha, std::span<const std::string_view> keys,
           std::span<const std::string_view> argv, Host& host, int resp, resp::Writer& w);

  // --- Functions (FUNCTION LOAD, FCALL) ---
  // Loads a library ("#!lua name=<lib>" first line, then code that calls
  // redis.register_function). "" and *name on success, else Redis's error
  // ("ERR Library 'x' already exists", "ERR Function x already exists",
  // "ERR Missing library metadata", "ERR Error compiling function: ...",
  // "ERR Library names can only contain letters, numbers, or underscores(_)
  // and must be at least one character long", ...). replace: REPLACE.
  std::string LoadLibrary(std::string_view code, bool replace, std::string* name);
  bool DeleteLibrary(std::string_view name);  // false: "ERR Library not found"
  void FlushFunctions();
  // In load order.
  std::vector<LibraryInfo> Libraries() const;
  // nullptr if no such function (case-sensitive, as Redis).
  const FunctionInfo* FindFunction(std::string_view name) const;
  // FCALL / FCALL_RO of an existing function; the reply as Run's (errors
  // say "script: <function>, on @user_function:<line>.").
  void Call(std::string_view function, std::span<const std::string_view> keys,
            std::span<const std::string_view> argv, Host& host, int resp, resp::Writer& w);

  // True while Run or Call is on the stack (a Host::Call that re-enters is
  // refused by the Host; this lets it know).
  bool running() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace redhub::script
