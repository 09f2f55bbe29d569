// The monitoring files in deploy/: the scrape configuration and the alert
// rules must load in Prometheus 2.42 (Debian 12), checked by promtool; the
// Grafana dashboard must be JSON. The container entrypoint, run here with a
// stand-in for redhubd (no docker needed): what configuration and command
// line it produces, what it refuses, and that no password reaches any
// command line. The shipped configurations bind loopback or need a
// password.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "admin_test_util.h"
#include "metrics_collector.h"
#include "worker_counters.h"

namespace redhub::admin {
namespace {

const std::string kDeploy = std::string(REDHUB_SOURCE_DIR) + "/deploy";
const std::string kTests = std::string(REDHUB_SOURCE_DIR) + "/tests/admin";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DeployFilesTest, PrometheusConfigLoads) {
  if (std::string(PROMTOOL_PATH).empty())
    FAIL() << "promtool not installed (deploy/install-deps.sh installs it)";
  // Also loads the rule files it names (relative to the config's folder).
  auto r = testing::RunCommand({PROMTOOL_PATH, "check", "config", "prometheus.yml"}, kDeploy);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(DeployFilesTest, AlertRulesLoad) {
  if (std::string(PROMTOOL_PATH).empty())
    FAIL() << "promtool not installed (deploy/install-deps.sh installs it)";
  auto r = testing::RunCommand({PROMTOOL_PATH, "check", "rules", "redhub-alerts.yml"}, kDeploy);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Each alert fires on the series it is meant for (redhub-alerts.test.yml).
TEST(DeployFilesTest, AlertRulesFireAsIntended) {
  if (std::string(PROMTOOL_PATH).empty())
    FAIL() << "promtool not installed (deploy/install-deps.sh installs it)";
  auto r = testing::RunCommand({PROMTOOL_PATH, "test", "rules", "redhub-alerts.test.yml"}, kTests);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Every redis_* or redhub_* name the alerts and the dashboard use is one
// that /metrics exports (with everything nonzero), so a rename cannot leave
// a silent alert or an empty panel behind.
TEST(DeployFilesTest, AlertsAndDashboardUseExportedNames) {
  namespace slots = shm::slots;
  Snapshot s;
  s.totals.assign(slots::kSlots, 1);
  s.command_names.assign(slots::kMaxCommands, "get");
  std::set<std::string> exported;
  for (const auto& f : BuildFamilies(s, StaticInfo{"v", 0, 1})) {
    exported.insert(f.name);
    if (f.type == prometheus::MetricType::Histogram) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) exported.insert(f.name + suffix);
    }
  }
  const std::regex name(R"(\b(redis|redhub)_[a-z_]+\b)");
  for (const char* file : {"redhub-alerts.yml", "grafana-dashboard.json"}) {
    const std::string text = ReadFile(kDeploy + "/" + file);
    ASSERT_FALSE(text.empty()) << file;
    int used = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), name), end; it != end; ++it) {
      EXPECT_TRUE(exported.count(it->str())) << file << " uses " << it->str();
      used++;
    }
    EXPECT_GT(used, 3) << file;
  }
}

TEST(DeployFilesTest, GrafanaDashboardIsJson) {
  if (std::string(PYTHON3_PATH).empty())
    FAIL() << "python3 not installed (deploy/install-deps.sh installs it)";
  auto r =
      testing::RunCommand({PYTHON3_PATH, "-m", "json.tool", "grafana-dashboard.json"}, kDeploy);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// ---- the container entrypoint ----

// A scratch directory with the entrypoint's inputs and a stand-in redhubd
// that records its command line, environment and configuration.
class EntrypointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char path[] = "/tmp/entrypoint_test_XXXXXX";
    ASSERT_NE(mkdtemp(path), nullptr);
    dir_ = path;
    Write("redhubd",
          "#!/bin/sh\n"
          "printf '%s\\n' \"$0\" \"$@\" > \"$FAKE_OUT/argv\"\n"
          "env > \"$FAKE_OUT/env\"\n"
          "cp \"$2\" \"$FAKE_OUT/config\"\n"
          "stat -c %a \"$2\" > \"$FAKE_OUT/mode\"\n"
          "stat -c %a \"$(dirname \"$2\")\" > \"$FAKE_OUT/dirmode\"\n");
    chmod(File("redhubd").c_str(), 0755);
  }
  void TearDown() override { testing::RunCommand({"/bin/rm", "-rf", dir_}, ""); }

  std::string File(const std::string& name) const { return dir_ + "/" + name; }
  std::string Write(const std::string& name, const std::string& text) const {
    std::ofstream(File(name)) << text;
    return File(name);
  }
  bool Exists(const std::string& name) const { return access(File(name).c_str(), F_OK) == 0; }

  // Runs deploy/docker-entrypoint.sh with only `env` (and what it needs to
  // find its files and the stand-in) in its environment, under strace so
  // that every program it executes is recorded with its arguments
  // (File("execve")). The base configuration is the image's unless env
  // names another REDHUB_CONFIG.
  testing::CommandResult Run(const std::vector<std::string>& env,
                             const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {"/usr/bin/env",
                                     "-i",
                                     "PATH=/usr/bin:/bin",
                                     "FAKE_OUT=" + dir_,
                                     "REDHUB_CONFIG=" + kDeploy + "/redhubd-container.conf",
                                     "REDHUB_RUNTIME_DIR=" + File("run"),
                                     "REDHUB_BINARY=" + File("redhubd")};
    argv.insert(argv.end(), env.begin(), env.end());
    for (const std::string& a :
         {"/usr/bin/strace", "-f", "-qq", "-e", "trace=execve", "-s", "4096", "-o"}) {
      argv.push_back(a);
    }
    argv.push_back(File("execve"));
    argv.push_back("/bin/sh");
    argv.push_back(kDeploy + "/docker-entrypoint.sh");
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunCommand(argv, dir_);
  }

  // Every execve the entrypoint made (the env and strace before it are the
  // test's), one per line.
  std::string Execs() const { return ReadFile(File("execve")); }

  std::string dir_;
};

// Lines of a configuration "key = value" for key.
std::vector<std::string> ConfigLines(const std::string& text, const std::string& key) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + " =", 0) == 0) out.push_back(line);
  }
  return out;
}

// The line the entrypoint writes for the default user: its password's
// SHA-256, as sha256sum prints it.
std::string DefaultUserLine(const std::string& password) {
  auto r = testing::RunCommand({"/usr/bin/sha256sum"}, "", password);
  return "user default on #" + r.output.substr(0, 64) + " ~* &* +@all\n";
}

TEST_F(EntrypointTest, PasswordFileBecomesAHashedUserNeverAnArgument) {
  ASSERT_EQ(access("/usr/bin/strace", X_OK), 0) << "deploy/install-deps.sh installs strace";
  // What a configuration file could not hold: quotes, spaces, '#', '\'.
  const std::string password = "it's a \"pw\" #\\ 7rQ";
  Write("password", password + "\n");
  auto r = Run({"REDHUB_PASSWORD_FILE=" + File("password")}, {"--maxmemory", "64mb"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ReadFile(File("argv")),
            File("redhubd") + "\n--config\n" + File("run/redhubd.conf") + "\n--maxmemory\n64mb\n");
  const std::string config = ReadFile(File("config"));
  EXPECT_EQ(ConfigLines(config, "aclfile"),
            std::vector<std::string>{"aclfile = " + File("run/users.acl")})
      << config;
  EXPECT_EQ(ConfigLines(config, "requirepass").size(), 0u) << config;
  EXPECT_EQ(config.find("7rQ"), std::string::npos) << config;
  EXPECT_EQ(ReadFile(File("run/users.acl")), DefaultUserLine(password));
  struct stat st {};
  ASSERT_EQ(stat(File("run/users.acl").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ConfigLines(config, "bind"), std::vector<std::string>{"bind = 0.0.0.0"});
  EXPECT_EQ(ConfigLines(config, "port"), std::vector<std::string>{"port = 6379"});
  EXPECT_EQ(ReadFile(File("mode")), "600\n");
  EXPECT_EQ(ReadFile(File("dirmode")), "700\n");
  const std::string execs = Execs();
  EXPECT_NE(execs.find("execve(\"" + File("redhubd") + "\""), std::string::npos) << execs;
  EXPECT_NE(execs.find("sha256sum"), std::string::npos) << execs;  // the trace sees the helpers
  EXPECT_EQ(execs.find("7rQ"), std::string::npos) << execs;
  EXPECT_EQ(ReadFile(File("env")).find("7rQ"), std::string::npos);
}

TEST_F(EntrypointTest, PasswordVariableIsUnsetBeforeRedhubdStarts) {
  auto r = Run({"REDHUB_PASSWORD=v4r-pass"}, {});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ReadFile(File("run/users.acl")), DefaultUserLine("v4r-pass"));
  const std::string env = ReadFile(File("env"));
  EXPECT_EQ(env.find("v4r-pass"), std::string::npos) << env;
  EXPECT_EQ(env.find("REDHUB_PASSWORD="), std::string::npos) << env;
  // The stand-in is redhubd's command line: only the generated file's path.
  EXPECT_EQ(ReadFile(File("argv")),
            File("redhubd") + "\n--config\n" + File("run/redhubd.conf") + "\n");
}

TEST_F(EntrypointTest, RefusesEveryInterfaceWithoutAPassword) {
  auto r = Run({}, {});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("refusing to listen on 0.0.0.0 without a password"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("REDHUB_PASSWORD_FILE"), std::string::npos);
  EXPECT_FALSE(Exists("argv")) << "redhubd ran";
  // Also when the address comes from the command line, last one winning.
  r = Run({}, {"--bind", "127.0.0.1", "--bind=10.1.2.3"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("on 10.1.2.3 without"), std::string::npos) << r.output;
  EXPECT_FALSE(Exists("argv"));
  r = Run({"REDHUB_PROTECTED_MODE=maybe"}, {});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("REDHUB_PROTECTED_MODE must be yes or no"), std::string::npos);
  Write("empty", "\n");
  r = Run({"REDHUB_PASSWORD_FILE=" + File("empty")}, {});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("is empty"), std::string::npos) << r.output;
  r = Run({"REDHUB_PASSWORD_FILE=" + File("missing")}, {});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("cannot read REDHUB_PASSWORD_FILE"), std::string::npos) << r.output;
  EXPECT_FALSE(Exists("argv"));
}

TEST_F(EntrypointTest, LoopbackNoTcpOrAnExplicitProtectedModeNeedNoPassword) {
  auto r = Run({}, {"--bind", "127.0.0.1"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = Run({}, {"--bind=127.0.0.1,::1"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = Run({}, {"--port", "0", "--unixsocket", File("sock")});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = Run({"REDHUB_PROTECTED_MODE=yes"}, {});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ConfigLines(ReadFile(File("config")), "protected-mode"),
            std::vector<std::string>{"protected-mode = yes"});
  EXPECT_EQ(ConfigLines(ReadFile(File("config")), "requirepass").size(), 0u);
  r = Run({"REDHUB_PROTECTED_MODE=no"}, {});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: serving every client on 0.0.0.0 without authentication"),
            std::string::npos)
      << r.output;
  r = Run({}, {"--aclfile", File("users.acl")});  // users (and their passwords) from the file
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(EntrypointTest, RefusesPasswordsOnTheCommandLineAndAmbiguousOnes) {
  auto r = Run({}, {"--requirepass", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--requirepass would show the password in ps"), std::string::npos)
      << r.output;
  r = Run({"REDHUB_PASSWORD=x"}, {"--requirepass=x"});
  EXPECT_EQ(r.exit_code, 1);
  r = Run({"REDHUB_PASSWORD=p"}, {"--aclfile", File("users.acl")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("give the default user's password in the ACL file"), std::string::npos)
      << r.output;
  Write("two-lines", "one\ntwo\n");
  r = Run({"REDHUB_PASSWORD_FILE=" + File("two-lines")}, {});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("more than one line"), std::string::npos) << r.output;
  r = Run({"REDHUB_PASSWORD=x"}, {"--config", "/etc/other.conf"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("REDHUB_CONFIG"), std::string::npos) << r.output;
  EXPECT_FALSE(Exists("argv"));
}

TEST_F(EntrypointTest, AdminPortLeavesLoopbackOnlyWithCredentialsOrWhenTold) {
  auto r = Run({"REDHUB_PASSWORD=p"}, {});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ConfigLines(ReadFile(File("config")), "admin-bind"),
            std::vector<std::string>{"admin-bind = 127.0.0.1"});
  r = Run({"REDHUB_PASSWORD=p", "REDHUB_ADMIN_TOKEN_FILE=/run/secrets/metrics-token"}, {});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string config = ReadFile(File("config"));
  EXPECT_EQ(ConfigLines(config, "admin-bind"), std::vector<std::string>{"admin-bind = 0.0.0.0"});
  EXPECT_EQ(ConfigLines(config, "admin-auth-token-file"),
            std::vector<std::string>{"admin-auth-token-file = /run/secrets/metrics-token"});
  r = Run({"REDHUB_PASSWORD=p", "REDHUB_ADMIN_USER=prom",
           "REDHUB_ADMIN_PASSWORD_FILE=/run/secrets/metrics-password"},
          {});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  config = ReadFile(File("config"));
  EXPECT_EQ(ConfigLines(config, "admin-bind"), std::vector<std::string>{"admin-bind = 0.0.0.0"});
  EXPECT_EQ(ConfigLines(config, "admin-auth-user"),
            std::vector<std::string>{"admin-auth-user = prom"});
  r = Run({"REDHUB_PASSWORD=p", "REDHUB_ADMIN_BIND=0.0.0.0"}, {});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ConfigLines(ReadFile(File("config")), "admin-bind"),
            std::vector<std::string>{"admin-bind = 0.0.0.0"});
  r = Run({"REDHUB_PASSWORD=p", "REDHUB_ADMIN_PASSWORD_FILE=/x"}, {});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("needs REDHUB_ADMIN_USER"), std::string::npos) << r.output;
}

// What ships: the sample configuration and the systemd units bind loopback
// (the admin port too), and the image runs the entrypoint, whose base
// configuration keeps the admin port on loopback.
TEST(DeployFilesTest, ShippedConfigurationsBindLoopbackOrNeedAPassword) {
  const std::string sample = ReadFile(kDeploy + "/redhubd.conf");
  ASSERT_FALSE(sample.empty());
  const std::regex bind_line(R"re(^\s*bind\s*=\s*"?([^"\n]*)"?)re", std::regex::multiline);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(sample, m, bind_line)) << "redhubd.conf names no bind";
  EXPECT_EQ(m[1].str(), "127.0.0.1");
  EXPECT_FALSE(std::regex_search(
      sample, std::regex(R"(^\s*(admin-bind|protected-mode)\s*=)", std::regex::multiline)))
      << "redhubd.conf: admin-bind and protected-mode stay at their defaults (loopback, yes)";
  for (const char* unit : {"redhubd.service", "redhubd@.service"}) {
    const std::string text = ReadFile(kDeploy + "/" + unit);
    std::smatch exec;
    ASSERT_TRUE(std::regex_search(text, exec, std::regex(R"(ExecStart=([^\n]*))"))) << unit;
    for (const char* flag : {"--bind", "--admin-bind", "--requirepass", "--protected-mode"}) {
      EXPECT_EQ(exec[1].str().find(flag), std::string::npos) << unit << ": " << exec[1].str();
    }
  }
  const std::string dockerfile = ReadFile(kDeploy + "/Dockerfile");
  EXPECT_NE(dockerfile.find("ENTRYPOINT [\"/usr/local/bin/docker-entrypoint.sh\"]"),
            std::string::npos);
  EXPECT_NE(dockerfile.find("COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh"),
            std::string::npos);
  EXPECT_NE(dockerfile.find("COPY deploy/redhubd-container.conf /etc/redhub/redhubd.conf"),
            std::string::npos);
  const std::string container = ReadFile(kDeploy + "/redhubd-container.conf");
  EXPECT_TRUE(std::regex_search(
      container, std::regex(R"(^admin-bind = 127\.0\.0\.1$)", std::regex::multiline)))
      << container;
  // The entrypoint is executable in the image (COPY keeps the mode).
  struct stat st {};
  ASSERT_EQ(stat((kDeploy + "/docker-entrypoint.sh").c_str(), &st), 0);
  EXPECT_NE(st.st_mode & S_IXUSR, 0u);
}

TEST(DeployFilesTest, EntrypointPassesShellcheck) {
  ASSERT_EQ(access("/usr/bin/shellcheck", X_OK), 0) << "deploy/install-deps.sh installs shellcheck";
  auto r = testing::RunCommand(
      {"/usr/bin/shellcheck", "-s", "sh", kDeploy + "/docker-entrypoint.sh"}, "");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace redhub::admin
