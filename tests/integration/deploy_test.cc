// The operator files in deploy/ that run programs: the systemd units must
// pass systemd-analyze verify, the scale-out recipe (twemproxy in front of
// several redhubd) must shard keys over real redhubd processes, and the
// container entrypoint must start a real redhubd that asks for the password
// it was given (and nothing on a command line shows it).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kDeploy = std::string(REDHUB_SOURCE_DIR) + "/deploy";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// systemd-analyze verify prints nothing for a good unit; an unknown key or
// a bad value is only a warning on stderr, so any output fails the test.
TEST(DeployTest, SystemdUnitsVerify) {
  RunResult version = RunCommand({"systemd-analyze", "--version"}, seconds(10));
  ASSERT_TRUE(version.ok()) << "systemd-analyze not installed (deploy/install-deps.sh installs it)";
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  // The units name the installed binary; verify checks that it exists.
  const std::map<std::string, std::string> units = {
      {"redhubd.service", "redhubd.service"},
      {"redhubd@.service", "redhubd@cache-a.service"},
  };
  for (const auto& [source, name] : units) {
    std::string text = ReadFile(kDeploy + "/" + source);
    ASSERT_NE(text.find("/usr/local/bin/redhubd"), std::string::npos) << source;
    text = std::regex_replace(text, std::regex("/usr/local/bin/redhubd"), REDHUBD_PATH);
    std::string file = dir.Write(name, text);
    RunResult r = RunCommand({"systemd-analyze", "verify", file}, seconds(30));
    EXPECT_TRUE(r.ok()) << source << ": " << r.Describe();
    EXPECT_EQ(r.err, "") << source;
  }
}

std::string Nutcracker() {
  for (const char* path : {"/usr/sbin/nutcracker", "/usr/bin/nutcracker"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return "";
}

// The recipe's settings with this test's addresses: the listen line and the
// server list are replaced, everything else is the file as shipped.
std::string LocalRecipe(const std::string& recipe, uint16_t listen,
                        const std::vector<uint16_t>& shards) {
  std::string out;
  std::istringstream lines(recipe);
  std::string line;
  bool in_servers = false;
  while (std::getline(lines, line)) {
    if (in_servers && line.find("- ") != std::string::npos) continue;
    in_servers = false;
    if (line.find("listen:") != std::string::npos) {
      line = "  listen: 127.0.0.1:" + std::to_string(listen);
    }
    out += line + "\n";
    if (line.find("servers:") != std::string::npos) {
      in_servers = true;
      char name = 'a';
      for (uint16_t port : shards) {
        out += "    - 127.0.0.1:" + std::to_string(port) + ":1 shard-" + name++ + "\n";
      }
    }
  }
  return out;
}

// Keys of redis-benchmark's shape: zero-padded numbers, on which some hash
// functions spread badly.
std::string Key(int i) {
  char buf[32];
  snprintf(buf, sizeof(buf), "key:%012d", i);
  return buf;
}

TEST(DeployTest, TwemproxyRecipeShardsKeysOverRedhubds) {
  std::string nutcracker = Nutcracker();
  ASSERT_FALSE(nutcracker.empty())
      << "nutcracker not installed (deploy/install-deps.sh installs it)";
  const std::string recipe_path = kDeploy + "/scale-out/nutcracker.yml";
  RunResult syntax = RunCommand({nutcracker, "-t", "-c", recipe_path}, seconds(10));
  EXPECT_TRUE(syntax.ok()) << syntax.Describe();

  auto a = StartRedhubd({"--workers", "1"});
  auto b = StartRedhubd({"--workers", "1"});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  uint16_t listen = PickFreePort();
  uint16_t stats = PickFreePort();
  ASSERT_NE(listen, 0);
  ASSERT_NE(stats, 0);
  std::string conf = dir.Write("nutcracker.yml",
                               LocalRecipe(ReadFile(recipe_path), listen, {a->port(), b->port()}));
  ServerProcess proxy("nutcracker");
  ASSERT_TRUE(proxy.Start(nutcracker, {"-c", conf, "-s", std::to_string(stats), "-a", "127.0.0.1",
                                       "-p", dir.path() + "/nutcracker.pid"}));
  proxy.set_port(listen);
  Context c;
  ASSERT_TRUE(WaitUntil([&] {
    c = ConnectHiredis(listen, milliseconds(500));
    if (c == nullptr) return false;
    Reply r = Command(c.get(), {"PING"});
    return r != nullptr && DescribeReply(r.get()) == "+PONG";
  })) << proxy.Log();

  // 2,000 keys through the proxy, pipelined.
  constexpr int kKeys = 2000;
  for (int i = 0; i < kKeys; i++) {
    std::string key = Key(i);
    std::string value = "v" + std::to_string(i * 7);
    redisAppendCommand(c.get(), "SET %b %b", key.data(), key.size(), value.data(), value.size());
  }
  for (int i = 0; i < kKeys; i++) {
    void* raw = nullptr;
    ASSERT_EQ(redisGetReply(c.get(), &raw), REDIS_OK) << c->errstr;
    Reply r(static_cast<redisReply*>(raw));
    ASSERT_EQ(DescribeReply(r.get()), "+OK") << "SET " << i;
  }
  // Each key on exactly one shard, both shards used about evenly.
  Context ca = ConnectHiredis(a->port());
  Context cb = ConnectHiredis(b->port());
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  Reply size_a = Command(ca.get(), {"DBSIZE"});
  Reply size_b = Command(cb.get(), {"DBSIZE"});
  ASSERT_NE(size_a, nullptr);
  ASSERT_NE(size_b, nullptr);
  EXPECT_EQ(size_a->integer + size_b->integer, kKeys);
  EXPECT_GT(size_a->integer, kKeys * 35 / 100) << size_a->integer << " / " << size_b->integer;
  EXPECT_GT(size_b->integer, kKeys * 35 / 100) << size_a->integer << " / " << size_b->integer;
  std::vector<int> on_a;
  std::vector<int> on_b;
  for (int i = 0; i < kKeys; i += 10) {
    std::string key = Key(i);
    std::string want =
        "$" + std::to_string(("v" + std::to_string(i * 7)).size()) + " v" + std::to_string(i * 7);
    std::string got_a = DescribeReply(Command(ca.get(), {"GET", key}).get());
    std::string got_b = DescribeReply(Command(cb.get(), {"GET", key}).get());
    EXPECT_TRUE((got_a == want) != (got_b == want)) << key << ": " << got_a << " / " << got_b;
    EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", key}).get()), want) << key;
    (got_a == want ? on_a : on_b).push_back(i);
  }
  // MGET across shards: the proxy splits it and puts the answers back in
  // order.
  std::vector<std::string> mget = {"MGET"};
  for (int i = 0; i < 100; i++) mget.push_back(Key(i));
  Reply many = Command(c.get(), mget);
  ASSERT_NE(many, nullptr);
  ASSERT_EQ(many->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(many->elements, 100u);
  for (int i = 0; i < 100; i++) {
    EXPECT_EQ(std::string(many->element[i]->str, many->element[i]->len),
              "v" + std::to_string(i * 7));
  }

  // A shard down: its keys get errors (auto_eject_hosts: false keeps it in
  // the ring, so no key is answered from a shard that does not hold it); the
  // other shard's keys are still served.
  ASSERT_FALSE(on_a.empty());
  ASSERT_FALSE(on_b.empty());
  EXPECT_EQ(b->Stop(), 0);
  std::string key_b = Key(on_b.front());
  Reply down = Command(c.get(), {"GET", key_b});
  ASSERT_NE(down, nullptr) << c->errstr;
  EXPECT_EQ(down->type, REDIS_REPLY_ERROR) << DescribeReply(down.get());
  std::string key_a = Key(on_a.front());
  EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", key_a}).get()),
            "$" + std::to_string(("v" + std::to_string(on_a.front() * 7)).size()) + " v" +
                std::to_string(on_a.front() * 7));
  EXPECT_TRUE(proxy.Signal(SIGTERM));
  int status = 0;
  EXPECT_TRUE(proxy.WaitExit(seconds(10), &status));
}

// /proc/<pid>/environ, NULs as newlines.
std::string Environment(pid_t pid) {
  std::string env = ReadFile("/proc/" + std::to_string(pid) + "/environ");
  for (char& c : env) {
    if (c == '\0') c = '\n';
  }
  return env;
}

// The image's entrypoint and configuration around the real binary: the
// password file's password (quotes and spaces in it) is the default user's,
// /metrics wants the token, and neither secret is in any process's command
// line or environment.
TEST(DeployTest, ContainerEntrypointStartsARedhubdThatWantsThePassword) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string password = "it's a \"pw\" " + std::to_string(getpid()) + "Zq";
  const std::string token = "metrics-" + std::to_string(getpid()) + "Tk";
  uint16_t port = PickFreePort();
  uint16_t admin_port = PickFreePort();
  ASSERT_NE(port, 0);
  ASSERT_NE(admin_port, 0);
  ServerProcess server("redhubd-entrypoint");
  server.set_env({"REDHUB_CONFIG=" + kDeploy + "/redhubd-container.conf",
                  "REDHUB_RUNTIME_DIR=" + dir.File("run"), "REDHUB_BINARY=" REDHUBD_PATH,
                  "REDHUB_PASSWORD_FILE=" + dir.Write("password", password + "\n"),
                  "REDHUB_ADMIN_TOKEN_FILE=" + dir.Write("token", token + "\n")});
  ASSERT_TRUE(server.Start(
      "/bin/sh", {kDeploy + "/docker-entrypoint.sh", "--port", std::to_string(port), "--admin-port",
                  std::to_string(admin_port), "--workers", "1", "--maxmemory", "16mb", "--shm-name",
                  "/redhub-entrypoint-" + std::to_string(getpid())}));
  server.set_port(port);
  Socket s;
  ASSERT_TRUE(WaitUntil([&] {
    s = Socket::Connect(port, milliseconds(500));
    return s.valid() && s.SendAll("PING\r\n") && s.RecvUntil("\r\n").starts_with("-NOAUTH");
  })) << server.Log();
  EXPECT_EQ(DescribeReply(SocketCommand(s, {"AUTH", "wrong"}).get()).substr(0, 10), "-WRONGPASS");
  EXPECT_EQ(DescribeReply(SocketCommand(s, {"AUTH", password}).get()), "+OK");
  EXPECT_EQ(DescribeReply(SocketCommand(s, {"PING"}).get()), "+PONG");

  auto get = [&](const std::string& headers) {
    Socket h = Socket::Connect(admin_port);
    std::string data;
    if (!h.valid() || !h.SendAll("GET /metrics HTTP/1.0\r\n" + headers + "\r\n") ||
        !h.WaitForClose(kTimeout, &data)) {
      return std::string();
    }
    return data;
  };
  std::string metrics;
  ASSERT_TRUE(WaitUntil([&] {
    metrics = get("");
    return !metrics.empty();
  })) << server.Log();
  EXPECT_EQ(metrics.substr(8, 4), " 401") << metrics;
  metrics = get("Authorization: Bearer " + token + "\r\n");
  EXPECT_EQ(metrics.substr(8, 4), " 200") << metrics.substr(0, 200);
  EXPECT_NE(metrics.find("\nredis_up 1\n"), std::string::npos);

  std::vector<pid_t> pids = ChildPids(server.pid());
  pids.push_back(server.pid());
  ASSERT_GE(pids.size(), 3u);
  for (pid_t pid : pids) {
    const std::string title = ProcessTitle(pid);
    EXPECT_EQ(title.find("Zq"), std::string::npos) << title;
    EXPECT_EQ(title.find("Tk"), std::string::npos) << title;
    EXPECT_EQ(Environment(pid).find("Zq"), std::string::npos) << pid;
  }
  EXPECT_EQ(server.Stop(), 0);
}

}  // namespace
}  // namespace redhub::integration
