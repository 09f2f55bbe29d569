// The settings table (master/settings.h): its rows, and what is derived
// from them: parsing flags and a config file, the reload classes, CONFIG
// GET's parameters.
#include "settings.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <set>

namespace redhub::master {
namespace {

// Parses args (after the program name); returns ParseArgs's code.
int Parse(std::vector<std::string> args, Config* config) {
  args.insert(args.begin(), "redhubd");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return ParseArgs(static_cast<int>(argv.size()), argv.data(), config);
}

TEST(SettingsTest, EveryRowHasAFlagHelpAndAClass) {
  std::set<std::string> names;
  for (const Setting& s : Settings()) {
    ASSERT_NE(s.name, nullptr);
    EXPECT_TRUE(names.insert(s.name).second) << "two rows named " << s.name;
    // A flag and a config-file key: lower case and dashes.
    EXPECT_EQ(std::string(s.name).find_first_not_of("abcdefghijklmnopqrstuvwxyz-"),
              std::string::npos)
        << s.name;
    EXPECT_TRUE(s.help != nullptr && *s.help != '\0') << s.name;
    EXPECT_NE(NameOf(s.change), "?") << s.name;
    EXPECT_TRUE(s.add && s.same && s.text) << s.name;
    EXPECT_EQ(FindSetting(s.name), &s);
  }
  // Every flag of --help but --help, --config and --version: 27, the ACL
  // settings (requirepass, aclfile, protected-mode, acllog-max-len), the
  // admin endpoint's protection (admin-auth-*, admin-tls-*) and the 15 TLS
  // rows.
  EXPECT_EQ(names.size(), 51u);
  for (const char* flag : {"bind", "port", "workers", "maxclients", "maxmemory", "shm-keep"}) {
    EXPECT_NE(FindSetting(flag), nullptr) << flag;
  }
}

TEST(SettingsTest, FlagsAndAConfigFileMakeTheConfigAndItsParameters) {
  char path[] = "/tmp/redhub-settings-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << "maxclients = 1000\ntimeout = 30\nmaxmemory = 64mb\nbind = \"0.0.0.0,::1\"\n"
           "output-buffer-hard-limit = 1mb\noutput-buffer-soft-limit = 4kb\n";
  }
  Config c;
  int rc = Parse({"--config", path, "--port", "7001", "--maxmemory-policy", "allkeys-lru",
                  "--workers", "3", "--slowlog-max-len", "7"},
                 &c);
  unlink(path);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(c.config_file, path);
  EXPECT_EQ(c.bind, (std::vector<std::string>{"0.0.0.0", "::1"}));
  EXPECT_EQ(c.port, 7001);
  EXPECT_EQ(c.workers, 3);
  EXPECT_EQ(c.server.max_clients, 1000u);
  EXPECT_EQ(c.server.idle_timeout.count(), 30);
  EXPECT_EQ(c.maxmemory, 64u << 20);
  EXPECT_EQ(c.maxmemory_policy, "allkeys-lru");
  EXPECT_EQ(c.shm_name, "/redhub-7001");  // derived from the port
  ConfigParameterList want = {
      {"bind", "0.0.0.0"},
      {"port", "7001"},
      {"maxclients", "1000"},
      {"timeout", "30"},
      {"tcp-keepalive", "300"},
      {"proto-max-bulk-len", std::to_string(512u << 20)},
      {"client-query-buffer-limit", std::to_string(1u << 30)},
      {"client-output-buffer-limit", "normal 1048576 4096 0"},
      {"databases", "1"},
      {"save", ""},
      {"appendonly", "no"},
      {"maxmemory", std::to_string(64u << 20)},
      {"maxmemory-policy", "allkeys-lru"},
      {"slowlog-log-slower-than", "10000"},
      {"slowlog-max-len", "7"},
      {"requirepass", ""},
      {"aclfile", ""},
      {"protected-mode", "yes"},
      {"acllog-max-len", "128"},
      // Redis 7.0's TLS parameters and defaults (no tls-key-file-pass).
      {"tls-port", "0"},
      {"tls-cert-file", ""},
      {"tls-key-file", ""},
      {"tls-ca-cert-file", ""},
      {"tls-ca-cert-dir", ""},
      {"tls-auth-clients", "yes"},
      {"tls-protocols", ""},
      {"tls-ciphers", ""},
      {"tls-ciphersuites", ""},
      {"tls-prefer-server-ciphers", "no"},
      {"tls-session-caching", "yes"},
      {"tls-session-cache-size", "20480"},
      {"tls-session-cache-timeout", "300"},
  };
  EXPECT_EQ(ConfigParameters(c), want);
}

// The TLS rows read Redis's spellings (yes/no values, a config file's
// "tls-auth-clients = optional"), and the combinations Redis refuses at
// start are usage errors naming the problem; only tls-port needs a restart.
TEST(SettingsTest, TlsRowsParseAndRefuseBadCombinations) {
  Config c;
  ASSERT_EQ(Parse({"--port", "7001", "--tls-port", "7002", "--tls-cert-file", "s.crt",
                   "--tls-key-file", "s.key", "--tls-auth-clients", "optional", "--tls-ca-cert-dir",
                   "/etc/ssl/certs", "--tls-session-caching", "no", "--tls-prefer-server-ciphers",
                   "yes", "--tls-protocols", "TLSv1.3"},
                  &c),
            0);
  EXPECT_EQ(c.tls_port, 7002);
  EXPECT_EQ(c.tls.auth_clients, "optional");
  EXPECT_FALSE(c.tls.session_caching);
  EXPECT_TRUE(c.tls.prefer_server_ciphers);
  EXPECT_EQ(c.tls.protocols, "TLSv1.3");
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"--tls-port", "7002"},                              // no cert
           {"--tls-port", "7002", "--tls-cert-file", "s.crt"},  // no key
           {"--tls-port", "7002", "--tls-cert-file", "s.crt", "--tls-key-file", "s.key"},  // no CA
           {"--tls-port", "6379", "--tls-cert-file", "s.crt", "--tls-key-file", "s.key",
            "--tls-auth-clients", "no"},  // the plaintext port
           {"--tls-auth-clients", "maybe"},
           {"--tls-port", "7002", "--tls-cert-file", "s.crt", "--tls-key-file", "s.key",
            "--tls-auth-clients", "no", "--tls-protocols", "SSLv3"},
       }) {
    Config d;
    EXPECT_EQ(Parse(args, &d), 2) << ::testing::PrintToString(args);
  }
  // tls-cert-file without tls-port is accepted, as by Redis.
  Config e;
  EXPECT_EQ(Parse({"--tls-cert-file", "s.crt"}, &e), 0);
  Config f;
  ASSERT_EQ(Parse({"--tls-port", "7002", "--tls-cert-file", "s.crt", "--tls-key-file", "s.key",
                   "--tls-auth-clients", "no"},
                  &f),
            0);
  Config g = f;
  g.tls.cert_file = "other.crt";
  EXPECT_EQ(RestartOnlyChange(f, g), "");
  EXPECT_FALSE(SameExceptLive(f, g));
  g.tls_port = 7003;
  EXPECT_EQ(RestartOnlyChange(f, g), "tls-port");
}

TEST(SettingsTest, BadValuesAreUsageErrors) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"--maxmemory", "1k"},
           {"--read-buffer", "100"},
           {"--proto-max-bulk-len", "10"},
           {"--output-buffer-soft-limit", "300mb"},
           {"--shm-name", "a/b"},
           {"--maxclients", "many"},
           {"--loglevel", "loud"},
           {"--no-such-flag"},
       }) {
    Config c;
    EXPECT_EQ(Parse(args, &c), 2) << args[0];
  }
}

TEST(SettingsTest, ARestartOnlyChangeIsNamedAndALiveOneIsNot) {
  Config a, b;
  ASSERT_EQ(Parse({"--workers", "2"}, &a), 0);
  ASSERT_EQ(Parse({"--workers", "2", "--maxclients", "50", "--loglevel", "debug", "--maxmemory",
                   "1gb", "--slowlog-log-slower-than", "-1"},
                  &b),
            0);
  EXPECT_EQ(RestartOnlyChange(a, b), "");
  EXPECT_TRUE(SameExceptLive(a, b));

  Config c;
  ASSERT_EQ(Parse({"--workers", "2", "--worker-timeout", "20"}, &c), 0);
  EXPECT_EQ(RestartOnlyChange(a, c), "");
  EXPECT_FALSE(SameExceptLive(a, c)) << "a new worker-timeout needs new workers";

  for (auto [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--port", "7002"},
           {"--bind", "0.0.0.0"},
           {"--unixsocket", "/tmp/x.sock"},
           {"--pidfile", "/tmp/x.pid"},
           {"--admin-port", "0"},
           {"--shm-name", "/other"},
       }) {
    Config d;
    ASSERT_EQ(Parse({"--workers", "2", flag, value}, &d), 0) << flag;
    EXPECT_EQ("--" + RestartOnlyChange(a, d), flag);
  }
  Config e;
  ASSERT_EQ(Parse({"--workers", "3"}, &e), 0);
  EXPECT_EQ(RestartOnlyChange(a, e), "workers");
  Config f;
  ASSERT_EQ(Parse({"--workers", "2", "--daemonize"}, &f), 0);
  EXPECT_EQ(RestartOnlyChange(a, f), "daemonize");
}

TEST(SettingsTest, ReloadClassesAreTheFormerOnes) {
  // What the hand-written SameExceptLive and RestartOnlyChange decided
  // before the table (settings that have a flag).
  // The admin endpoint's protection came later, restart-only as the admin
  // process's other settings.
  const std::set<std::string> restart = {"bind",
                                         "port",
                                         "unixsocket",
                                         "workers",
                                         "daemonize",
                                         "pidfile",
                                         "shm-name",
                                         "admin-bind",
                                         "admin-port",
                                         "admin-auth-user",
                                         "admin-auth-password-file",
                                         "admin-auth-token-file",
                                         "admin-tls-cert-file",
                                         "admin-tls-key-file",
                                         "tls-port"};
  std::set<std::string> new_workers = {"read-buffer", "tcp-backlog", "logfile", "worker-timeout",
                                       "drain-timeout"};
  for (const Setting& s : Settings()) {
    std::string name = s.name;
    if (name.rfind("tls-", 0) == 0 && name != "tls-port") new_workers.insert(name);
  }
  for (const Setting& s : Settings()) {
    Change want = restart.count(s.name)               ? Change::kRestart
                  : new_workers.count(s.name)         ? Change::kNewWorkers
                  : s.name == std::string("shm-keep") ? Change::kNextStart
                                                      : Change::kLive;
    EXPECT_EQ(NameOf(s.change), NameOf(want)) << s.name;
  }
}

}  // namespace
}  // namespace redhub::master
