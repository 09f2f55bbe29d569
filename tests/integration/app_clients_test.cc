// The client libraries applications use, each scenario a program of its own
// under tests/apps/ (python/*.py run by Debian's /usr/bin/python3 with
// python3-redis 4.3.4 and python3-limits 2.8; node/*.js run by /usr/bin/node
// with ioredis, node-redis v4 and rate-limiter-flexible from
// tests/apps/node/node_modules, which deploy/install-deps.sh installs with
// npm ci). Every scenario runs against redis-server 7.0.15, which proves the
// script itself right, and against redhubd with two workers, so that a
// scenario's two connections may land on two workers. A script checks its
// own results, prints what did not match and exits non-zero; it has a
// deadline of its own (20 s) inside the test's.
//
// A scenario whose redhubd instance waits for a feature redhubd lacks has
// that feature in `redhubd_waits_for`: its redhubd instance is then in the
// suite DISABLED_Apps/AppClientsTest (gtest and ctest list it, neither runs
// it; ctest shows it as integration.Apps/AppClientsTest.Scenario/
// <scenario>_redhubd, "Not Run (Disabled)"). Whoever builds the feature
// empties the field, and the test runs in Apps/AppClientsTest.
// The head of each script lists the commands its library sends (recorded
// with redis-cli MONITOR against redis-server).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

namespace fs = std::filesystem;

// The script's own deadline is 20 s; this one only catches a script that
// ignores it.
constexpr milliseconds kScenarioTimeout{40000};

enum class Runtime { kPython, kNode };

struct Scenario {
  const char* name;  // the test's name, and the script's file name without extension
  Runtime runtime;
  // The feature the redhubd instance waits for; "" runs it. The
  // redis-server instance always runs.
  const char* redhubd_waits_for;
};

const Scenario kScenarios[] = {
    // redis-py pipeline(transaction=True).
    {"py_transaction", Runtime::kPython, ""},
    // redis-py WATCH retry loop, two connections.
    {"py_watch", Runtime::kPython, ""},
    // redis-py Lock: SET NX PX, then its scripts by EVALSHA.
    {"py_lock", Runtime::kPython, "EVALSHA/SCRIPT LOAD (Lua scripting)"},
    // redis-py register_script: every Lua reply type, SCRIPT EXISTS/FLUSH.
    {"py_script", Runtime::kPython, "EVALSHA/SCRIPT LOAD/EXISTS/FLUSH (Lua scripting)"},
    // redis-py db=1: SELECT on connect, FLUSHDB per db.
    {"py_select_db", Runtime::kPython, "SELECT (numbered databases)"},
    // python3-limits moving window: Lua scripts over lists.
    {"py_limits_moving_window", Runtime::kPython,
     "EVALSHA/SCRIPT LOAD (Lua scripting) and lists (LPUSH/LTRIM/LINDEX/LRANGE)"},
    // ioredis multi().
    {"ioredis_multi", Runtime::kNode, ""},
    // ioredis defineCommand: EVAL, then EVALSHA.
    {"ioredis_define_command", Runtime::kNode, "EVAL/EVALSHA/SCRIPT EXISTS/FLUSH (Lua scripting)"},
    // ioredis defineCommand inside multi().
    {"ioredis_script_in_multi", Runtime::kNode, "MULTI/EXEC and EVAL/EVALSHA (Lua scripting)"},
    // node-redis v4 multi().exec(), execAsPipeline, WATCH.
    {"node_redis_multi", Runtime::kNode, ""},
    // rate-limiter-flexible RateLimiterRedis over ioredis: EVAL, then EVALSHA.
    {"rate_limiter_flexible", Runtime::kNode, "EVAL/EVALSHA (Lua scripting)"},
};

enum class Target { kRedisServer, kRedhubd };

struct Param {
  const Scenario* scenario;
  Target target;
};

void PrintTo(const Param& p, std::ostream* os) {
  *os << p.scenario->name << (p.target == Target::kRedhubd ? " on redhubd" : " on redis-server");
}

// The instances that run (waiting = false), or those that wait for a
// feature (true): every redis-server instance runs.
std::vector<Param> Params(bool waiting) {
  std::vector<Param> params;
  for (const Scenario& s : kScenarios) {
    if (!waiting) params.push_back({&s, Target::kRedisServer});
    if ((s.redhubd_waits_for[0] != '\0') == waiting) params.push_back({&s, Target::kRedhubd});
  }
  return params;
}

std::string ParamName(const ::testing::TestParamInfo<Param>& info) {
  const Param& p = info.param;
  return std::string(p.scenario->name) +
         (p.target == Target::kRedisServer ? "_redis_server" : "_redhubd");
}

// What a scenario needs besides its script: the interpreter and the
// libraries. Empty if all is there, else why not.
std::string MissingTools(const Scenario& s) {
  const std::string install = " (deploy/install-deps.sh installs it)";
  if (s.runtime == Runtime::kPython) {
    if (std::string(PYTHON3_PATH).empty()) return "python3 not found in /usr/bin" + install;
    // Debian's modules, checked up front so that a missing one says so.
    const char* module = std::string(s.name) == "py_limits_moving_window" ? "limits" : "redis";
    RunResult r = RunCommand({PYTHON3_PATH, "-c", std::string("import ") + module}, kTimeout);
    if (!r.ok()) {
      return std::string("python module ") + module + " not importable by " + PYTHON3_PATH +
             " (python3-" + module + ")" + install + ": " + r.Describe();
    }
    return "";
  }
  if (std::string(NODEJS_PATH).empty()) return "node not found in /usr/bin" + install;
  const fs::path modules = APP_NODE_MODULES_PATH;
  for (const char* package : {"ioredis", "redis", "rate-limiter-flexible"}) {
    if (!fs::exists(modules / package / "package.json")) {
      return "node package " + std::string(package) + " missing from " + modules.string() +
             install + " by npm ci from tests/apps/node/package-lock.json";
    }
  }
  // npm ci writes node_modules/.package-lock.json at its end; a lockfile
  // newer than it is an install that no longer matches.
  const fs::path marker = modules / ".package-lock.json";
  const fs::path lock = fs::path(APP_CLIENTS_DIR) / "node" / "package-lock.json";
  std::error_code ec;
  if (!fs::exists(marker) || fs::last_write_time(lock, ec) > fs::last_write_time(marker, ec)) {
    return modules.string() + " is older than tests/apps/node/package-lock.json or incomplete;" +
           " deploy/install-deps.sh reinstalls it";
  }
  return "";
}

class AppClientsTest : public ::testing::TestWithParam<Param> {};

TEST_P(AppClientsTest, Scenario) {
  const Scenario& s = *GetParam().scenario;
  std::string missing = MissingTools(s);
  if (!missing.empty()) FAIL() << missing;

  const fs::path script = fs::path(APP_CLIENTS_DIR) /
                          (s.runtime == Runtime::kPython ? "python" : "node") /
                          (std::string(s.name) + (s.runtime == Runtime::kPython ? ".py" : ".js"));
  ASSERT_TRUE(fs::exists(script)) << script;

  std::unique_ptr<ServerProcess> server =
      GetParam().target == Target::kRedhubd ? StartRedhubd({"--workers", "2"}) : StartRedisServer();
  ASSERT_NE(server, nullptr);

  const std::string interpreter = s.runtime == Runtime::kPython ? PYTHON3_PATH : NODEJS_PATH;
  std::vector<std::string> argv = {interpreter};
  if (s.runtime == Runtime::kPython) argv.push_back("-B");  // no __pycache__ in the source tree
  argv.insert(argv.end(), {script.string(), "127.0.0.1", std::to_string(server->port())});
  RunResult r = RunCommand(argv, kScenarioTimeout);
  EXPECT_TRUE(r.ok()) << s.name << " against "
                      << (GetParam().target == Target::kRedhubd ? "redhubd" : "redis-server")
                      << "; by hand: " << interpreter << " " << script.string()
                      << " 127.0.0.1 PORT\n"
                      << r.Describe();
  if (r.ok()) EXPECT_EQ(r.out, "ok\n") << r.Describe();
}

INSTANTIATE_TEST_SUITE_P(Apps, AppClientsTest, ::testing::ValuesIn(Params(false)), ParamName);
// A suite named DISABLED_...: gtest lists its tests and does not run them,
// and gtest_discover_tests registers them with ctest as disabled ("Not Run
// (Disabled)"). --gtest_also_run_disabled_tests runs them by hand.
// Once every feature has landed it is empty (GoogleTest accepts that) and
// can go.
INSTANTIATE_TEST_SUITE_P(DISABLED_Apps, AppClientsTest, ::testing::ValuesIn(Params(true)),
                         ParamName);

}  // namespace
}  // namespace redhub::integration
