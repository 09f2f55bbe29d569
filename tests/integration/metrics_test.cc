// The daemon's admin process end to end: /metrics counts exactly what
// clients sent (summed over the workers), no counter goes backwards when a
// worker is killed, promtool accepts the output, /readyz follows the worker
// slots, and Debian's redis_exporter scraping redhubd agrees.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

struct HttpReply {
  int status = 0;
  std::string body;
};

// extra_headers: whole lines, each ending in "\r\n".
HttpReply HttpGet(uint16_t port, const std::string& path, const std::string& extra_headers = "") {
  HttpReply reply;
  Socket s = Socket::Connect(port);
  if (!s.valid() ||
      !s.SendAll("GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n" + extra_headers + "\r\n")) {
    return reply;
  }
  std::string data;
  if (!s.WaitForClose(kTimeout, &data)) return reply;
  if (data.rfind("HTTP/1.", 0) == 0 && data.size() > 12) reply.status = atoi(data.c_str() + 9);
  size_t body = data.find("\r\n\r\n");
  if (body != std::string::npos) reply.body = data.substr(body + 4);
  return reply;
}

// Samples of the text exposition format: "name{labels}" -> value.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

// Names declared "# TYPE name counter".
std::set<std::string> CounterNames(const std::string& text) {
  std::set<std::string> names;
  size_t pos = 0;
  while ((pos = text.find("# TYPE ", pos)) != std::string::npos) {
    size_t end = text.find('\n', pos);
    std::string line = text.substr(pos + 7, end - pos - 7);
    pos = end;
    size_t space = line.find(' ');
    if (space != std::string::npos && line.substr(space + 1) == "counter") {
      names.insert(line.substr(0, space));
    }
  }
  return names;
}

double Sample(const std::map<std::string, double>& s, const std::string& key) {
  auto it = s.find(key);
  return it == s.end() ? -1 : it->second;
}

// A slowloris attacker: connections that each send a request header which
// never ends, a byte at a time, and are opened again whenever the server
// drops them (as a real attacker does, so the pressure never lets up).
class Trickler {
 public:
  Trickler(uint16_t port, int connections) : port_(port) {
    for (int i = 0; i < connections; i++) conns_.push_back(Open());
  }
  bool ok() const {
    for (const Socket& s : conns_) {
      if (!s.valid()) return false;
    }
    return true;
  }
  // Connections the server closed (its request timeout), each reopened.
  int dropped() const { return dropped_; }
  // One more byte on every connection, at most every 100 ms; a connection
  // the server closed or answered (a 408) is replaced.
  void Tick() {
    if (Clock::now() < next_tick_) return;
    next_tick_ = Clock::now() + milliseconds(100);
    for (Socket& s : conns_) {
      char buf[512];
      ssize_t got = s.valid() ? s.RecvOnce(buf, sizeof(buf), milliseconds(0)) : 0;
      if (got == -2 && s.SendSome("a") == 1) continue;
      dropped_++;
      s = Open();
    }
  }

 private:
  Socket Open() {
    Socket s = Socket::Connect(port_);
    if (s.valid()) s.SendAll("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    return s;
  }

  uint16_t port_;
  std::vector<Socket> conns_;
  int dropped_ = 0;
  Clock::time_point next_tick_ = Clock::now();
};

// GET /healthz while `slow` keeps trickling; the status, or 0 if the whole
// answer did not come within `bound`.
int ProbeWhileTrickling(uint16_t port, Trickler& slow, milliseconds bound) {
  Clock::time_point deadline = Clock::now() + bound;
  Socket s = Socket::Connect(port, bound);
  if (!s.valid() || !s.SendAll("GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", bound)) {
    return 0;
  }
  std::string data;
  while (Clock::now() < deadline) {
    char buf[512];
    ssize_t n = s.RecvOnce(buf, sizeof(buf), milliseconds(20));
    if (n > 0) data.append(buf, static_cast<size_t>(n));
    if (n == 0) {  // HTTP/1.0: the close ends the answer
      return data.rfind("HTTP/1.", 0) == 0 && data.size() > 12 ? atoi(data.c_str() + 9) : 0;
    }
    if (n == -1) return 0;
    slow.Tick();
  }
  return 0;
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    admin_port_ = PickFreePort();
    ASSERT_NE(admin_port_, 0);
    server_ = StartRedhubd({"--workers", "2", "--maxmemory", "8mb", "--admin-port",
                            std::to_string(admin_port_), "--worker-timeout", "60"});
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(WaitUntil([&] { return HttpGet(admin_port_, "/readyz").status == 200; }))
        << server_->Log();
  }
  std::map<std::string, double> Scrape() { return Samples(HttpGet(admin_port_, "/metrics").body); }

  uint16_t admin_port_ = 0;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(MetricsTest, CountsExactlyWhatClientsSentOverAllWorkers) {
  std::map<std::string, double> before = Scrape();
  std::vector<Context> conns;
  for (int i = 0; i < 12; i++) {
    conns.push_back(ConnectHiredis(server_->port()));
    ASSERT_NE(conns.back(), nullptr);
  }
  int sets = 0, gets = 0, echos = 0;
  for (size_t i = 0; i < conns.size(); i++) {
    for (size_t k = 0; k < 3 + i; k++) {
      std::string key = "k" + std::to_string(i) + ":" + std::to_string(k);
      ASSERT_EQ(DescribeReply(Command(conns[i].get(), {"SET", key, "v"}).get()), "+OK");
      sets++;
      ASSERT_NE(Command(conns[i].get(), {"GET", key}), nullptr);
      gets++;
    }
    ASSERT_NE(Command(conns[i].get(), {"ECHO", "x"}), nullptr);
    echos++;
  }
  ASSERT_NE(Command(conns[0].get(), {"EXPIRE", "k0:0", "1000"}), nullptr);
  auto delta = [&](const std::map<std::string, double>& now, const std::string& key) {
    return Sample(now, key) - std::max(0.0, Sample(before, key));
  };
  std::map<std::string, double> after;
  // Per-command counts and the connected-clients gauge (daemon-wide
  // maxclients reads it) are exact at once; the other loop figures
  // (keyspace hits...) are published by each worker ten times a second, so
  // wait for them.
  EXPECT_TRUE(WaitUntil([&] {
    after = Scrape();
    return Sample(after, "redis_connected_clients") == 12 &&
           delta(after, "redis_keyspace_hits_total") == gets;
  })) << "redis_connected_clients "
      << Sample(after, "redis_connected_clients");
  EXPECT_EQ(delta(after, "redis_commands_total{cmd=\"set\"}"), sets);
  EXPECT_EQ(delta(after, "redis_commands_total{cmd=\"get\"}"), gets);
  EXPECT_EQ(delta(after, "redis_commands_total{cmd=\"echo\"}"), echos);
  EXPECT_EQ(delta(after, "redis_keyspace_hits_total"), gets);
  EXPECT_EQ(Sample(after, "redis_db_keys{db=\"db0\"}"), sets);
  EXPECT_EQ(Sample(after, "redis_db_keys_expiring{db=\"db0\"}"), 1);
  EXPECT_EQ(Sample(after, "redis_up"), 1);
  EXPECT_EQ(Sample(after, "redhub_workers{state=\"serving\"}"), 2);
  EXPECT_EQ(Sample(after, "redis_commands_latency_seconds_count{cmd=\"set\"}"),
            Sample(after, "redis_commands_total{cmd=\"set\"}"));
  EXPECT_GT(Sample(after, "redis_memory_used_bytes"), 0);
  EXPECT_EQ(Sample(after, "redis_memory_max_bytes"), 8 << 20);

  ASSERT_EQ(access("/usr/bin/promtool", X_OK), 0) << "deploy/install-deps.sh installs promtool";
  std::string path = testing::TempDir() + "metrics-" + std::to_string(getpid()) + ".txt";
  std::ofstream(path) << HttpGet(admin_port_, "/metrics").body;
  RunResult r =
      RunCommand({"bash", "-c", "/usr/bin/promtool check metrics < " + path}, milliseconds(20000));
  EXPECT_TRUE(r.ok()) << r.Describe();
  unlink(path.c_str());
}

TEST_F(MetricsTest, NoCounterGoesBackwardsWhenAWorkerIsKilled) {
  std::vector<Context> conns;
  for (int i = 0; i < 8; i++) {
    conns.push_back(ConnectHiredis(server_->port()));
    ASSERT_NE(conns.back(), nullptr);
    for (int k = 0; k < 20; k++) {
      ASSERT_NE(Command(conns.back().get(), {"SET", "key" + std::to_string(k), "v"}), nullptr);
    }
  }
  std::string text = HttpGet(admin_port_, "/metrics").body;
  std::map<std::string, double> before = Samples(text);
  std::set<std::string> counters = CounterNames(text);
  ASSERT_FALSE(counters.empty());

  std::vector<pid_t> workers;
  for (pid_t pid : ChildPids(server_->pid())) {
    if (ProcessTitle(pid).find("worker") != std::string::npos) workers.push_back(pid);
  }
  ASSERT_EQ(workers.size(), 2u);
  ASSERT_EQ(kill(workers[0], SIGKILL), 0);
  ASSERT_TRUE(server_->WaitForLogLine("(pid " + std::to_string(workers[0]) + ") killed"));
  ASSERT_TRUE(WaitUntil([&] { return HttpGet(admin_port_, "/readyz").status == 200; }));

  std::map<std::string, double> after = Scrape();
  int checked = 0;
  for (const auto& [key, value] : before) {
    std::string name = key.substr(0, key.find('{'));
    if (!counters.count(name)) continue;
    EXPECT_GE(Sample(after, key), value) << key;
    checked++;
  }
  EXPECT_GT(checked, 5);
  double restarts = 0;
  for (const char* slot : {"0", "1"}) {
    restarts += std::max(0.0, Sample(after, std::string("redhub_worker_restarts_total{slot=\"") +
                                                slot + "\",reason=\"crash\"}"));
  }
  EXPECT_EQ(restarts, 1);
}

TEST_F(MetricsTest, ReadyzIsUnavailableWhileAWorkerSlotIsNotServing) {
  EXPECT_EQ(HttpGet(admin_port_, "/healthz").status, 200);
  std::vector<pid_t> workers;
  for (pid_t pid : ChildPids(server_->pid())) {
    if (ProcessTitle(pid).find("worker") != std::string::npos) workers.push_back(pid);
  }
  ASSERT_EQ(workers.size(), 2u);
  // A stopped worker stops heartbeating: the master counts its slot as not
  // serving (long before --worker-timeout would kill it).
  ASSERT_EQ(kill(workers[1], SIGSTOP), 0);
  HttpReply ready;
  EXPECT_TRUE(WaitUntil([&] {
    ready = HttpGet(admin_port_, "/readyz");
    return ready.status == 503;
  })) << ready.status
      << " " << ready.body;
  EXPECT_EQ(ready.body, "1 of 2 worker slots serving\n");
  EXPECT_EQ(HttpGet(admin_port_, "/healthz").status, 200);
  ASSERT_EQ(kill(workers[1], SIGCONT), 0);
  EXPECT_TRUE(WaitUntil([&] { return HttpGet(admin_port_, "/readyz").status == 200; }));
}

// Scraping 100 times a second while clients work changes no reply: every
// GET returns what its client SET, and every scrape succeeds.
// Slow clients do not starve the health checks (an orchestrator restarts
// the daemon, and the store with it, when /healthz stops answering). Eight
// slowloris connections, four times the two HTTP threads the admin process
// once had (with a 10 s request timeout: every probe then failed), stay
// connected and trickling while /healthz is asked again and again: every
// probe answers 200 within 2 s, until each slow connection has been dropped
// by the server (its header took longer than the request timeout) at least
// once.
TEST_F(MetricsTest, HealthzAnswersWhileSlowClientsTrickleHeaders) {
  constexpr int kSlow = 8;
  Trickler slow(admin_port_, kSlow);
  ASSERT_TRUE(slow.ok());
  Clock::time_point deadline = Clock::now() + milliseconds(8000);
  int probes = 0;
  while (probes < 3 || slow.dropped() < kSlow) {
    ASSERT_LT(Clock::now(), deadline) << probes << " probes answered, " << slow.dropped()
                                      << " slow connections dropped by the server";
    ASSERT_EQ(ProbeWhileTrickling(admin_port_, slow, milliseconds(2000)), 200)
        << "probe " << probes << " with " << kSlow << " slow clients connected";
    probes++;
  }
}

// More slow connections than the admin process has threads: they take every
// thread, and the request timeout is what frees them, so a probe waits about
// one timeout (1 s), not until the attackers give up.
TEST_F(MetricsTest, HealthzAnswersWhenSlowClientsOutnumberTheThreads) {
  constexpr int kSlow = 40;  // the admin process runs 32
  Trickler slow(admin_port_, kSlow);
  ASSERT_TRUE(slow.ok());
  for (int probe = 0; probe < 2; probe++) {
    EXPECT_EQ(ProbeWhileTrickling(admin_port_, slow, milliseconds(5000)), 200)
        << "probe " << probe << " with " << kSlow << " slow clients connected";
  }
}

TEST_F(MetricsTest, ScrapingDuringLoadChangesNoReply) {
  std::atomic<bool> stop{false};
  std::atomic<int> scrapes{0}, failed_scrapes{0};
  std::thread scraper([&] {
    auto next = Clock::now();
    while (!stop.load()) {
      HttpReply r = HttpGet(admin_port_, "/metrics");
      (r.status == 200 && r.body.find("redis_up 1") != std::string::npos ? scrapes
                                                                         : failed_scrapes)++;
      next += milliseconds(10);
      std::this_thread::sleep_until(next);  // the scrape rate, not a wait for state
    }
  });
  std::atomic<int> wrong{0}, ok{0};
  std::vector<std::thread> clients;
  for (int id = 0; id < 4; id++) {
    clients.emplace_back([&, id] {
      Context c = ConnectHiredis(server_->port());
      if (!c) {
        wrong++;
        return;
      }
      for (int n = 0; !stop.load(); n++) {
        std::string key = "s" + std::to_string(id) + ":" + std::to_string(n % 100);
        std::string value = std::to_string(n);
        Reply set = Command(c.get(), {"SET", key, value});
        Reply get = Command(c.get(), {"GET", key});
        if (!set || !get || get->type != REDIS_REPLY_STRING ||
            std::string(get->str, get->len) != value) {
          wrong++;
        } else {
          ok++;
        }
      }
    });
  }
  auto end = Clock::now() + std::chrono::seconds(3);
  while (Clock::now() < end && scrapes.load() < 200) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  stop = true;
  scraper.join();
  for (auto& t : clients) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(ok.load(), 100);
  EXPECT_GE(scrapes.load(), 100);
  EXPECT_EQ(failed_scrapes.load(), 0);
}

TEST_F(MetricsTest, RedisExporterScrapingRedhubdAgrees) {
  const char* exporter = "/usr/bin/prometheus-redis-exporter";
  ASSERT_EQ(access(exporter, X_OK), 0)
      << exporter << " missing (deploy/install-deps.sh installs it)";
  Context c = ConnectHiredis(server_->port());
  ASSERT_NE(c, nullptr);
  for (int k = 0; k < 7; k++) {
    ASSERT_NE(Command(c.get(), {"SET", "exported" + std::to_string(k), "v"}), nullptr);
  }
  uint16_t port = PickFreePort();
  ServerProcess exp("redis_exporter");
  ASSERT_TRUE(
      exp.Start(exporter, {"--redis.addr=redis://127.0.0.1:" + std::to_string(server_->port()),
                           "--web.listen-address=127.0.0.1:" + std::to_string(port)}));
  std::map<std::string, double> theirs;
  EXPECT_TRUE(WaitUntil([&] {
    theirs = Samples(HttpGet(port, "/metrics").body);
    return Sample(theirs, "redis_up") == 1;
  })) << exp.Log();
  std::map<std::string, double> ours = Scrape();
  EXPECT_EQ(Sample(theirs, "redis_db_keys{db=\"db0\"}"), 7);
  EXPECT_EQ(Sample(ours, "redis_db_keys{db=\"db0\"}"), 7);
  // Both read the same totals (the exporter's own INFO is counted by the
  // time we scrape, so ours may only be ahead).
  EXPECT_EQ(Sample(theirs, "redis_commands_total{cmd=\"set\"}"),
            Sample(ours, "redis_commands_total{cmd=\"set\"}"));
  exp.Signal(SIGTERM);
  int status = 0;
  EXPECT_TRUE(exp.WaitExit(kTimeout, &status));
}

// ---- protecting the admin endpoint ----

// redhubd with the given admin flags, ready on its admin port (its /healthz
// answers: plain HTTP, or HTTPS through curl when tls).
std::unique_ptr<ServerProcess> StartWithAdmin(uint16_t admin_port,
                                              const std::vector<std::string>& admin_flags) {
  std::vector<std::string> args = {
      "--workers", "1", "--maxmemory", "8mb", "--admin-port", std::to_string(admin_port)};
  args.insert(args.end(), admin_flags.begin(), admin_flags.end());
  return StartRedhubd(args);
}

// A self-signed certificate for 127.0.0.1 and its key (openssl req), in dir.
bool MakeCertificate(const TempDir& dir, const std::string& name) {
  RunResult r = RunCommand(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
       "-keyout", dir.File(name + ".key"), "-out", dir.File(name + ".crt")},
      milliseconds(20000));
  if (!r.ok()) ADD_FAILURE() << "openssl (deploy/install-deps.sh installs it): " << r.Describe();
  return r.ok();
}

// curl over HTTPS, trusting only ca; "<status>\n<body>", or "" if curl failed.
std::string Curl(uint16_t port, const std::string& path, const std::string& ca,
                 const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {"curl", "-sS", "--max-time",     "5",  "--cacert",
                                   ca,     "-w",  "%{http_code}\n", "-o", "-"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("https://127.0.0.1:" + std::to_string(port) + path);
  RunResult r = RunCommand(argv, milliseconds(10000));
  if (!r.ok()) return "";
  // -w prints after the body: move the status to the front.
  std::string out = r.out;
  size_t last = out.rfind('\n', out.size() - 2);
  std::string status = out.substr(last == std::string::npos ? 0 : last + 1);
  status.pop_back();
  return status + "\n" + out.substr(0, last == std::string::npos ? 0 : last + 1);
}

// Basic authentication and a bearer token through the daemon's flags: the
// secrets come from files and never show in the processes' command lines.
TEST(AdminAuthTest, MetricsNeedCredentialsProbesDoNot) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string password = "pw-" + std::to_string(getpid()) + "-sEcReT";
  const std::string token = "tok-" + std::to_string(getpid()) + "-sEcReT";
  uint16_t admin_port = PickFreePort();
  auto server =
      StartWithAdmin(admin_port, {"--admin-auth-user", "prom", "--admin-auth-password-file",
                                  dir.Write("password", password + "\n"), "--admin-auth-token-file",
                                  dir.Write("token", token + "\n")});
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(WaitUntil([&] { return HttpGet(admin_port, "/readyz").status == 200; }))
      << server->Log();
  EXPECT_EQ(HttpGet(admin_port, "/healthz").status, 200);
  HttpReply none = HttpGet(admin_port, "/metrics");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.body.find("redis_up"), std::string::npos);
  EXPECT_EQ(HttpGet(admin_port, "/metrics", "Authorization: Bearer wrong\r\n").status, 401);
  HttpReply ok = HttpGet(admin_port, "/metrics", "Authorization: Bearer " + token + "\r\n");
  ASSERT_EQ(ok.status, 200);
  std::map<std::string, double> m = Samples(ok.body);
  EXPECT_EQ(Sample(m, "redis_up"), 1);
  EXPECT_EQ(Sample(m, "redhub_admin_auth_failures_total{reason=\"missing\"}"), 1);
  EXPECT_EQ(Sample(m, "redhub_admin_auth_failures_total{reason=\"invalid\"}"), 1);
  // curl's -u sends basic authentication as a browser or Prometheus does.
  RunResult basic = RunCommand({"curl", "-sS", "--max-time", "5", "-u", "prom:" + password,
                                "http://127.0.0.1:" + std::to_string(admin_port) + "/metrics"},
                               milliseconds(10000));
  EXPECT_TRUE(basic.ok()) << basic.Describe();
  EXPECT_NE(basic.out.find("\nredis_up 1\n"), std::string::npos) << basic.out.substr(0, 300);

  std::vector<pid_t> pids = ChildPids(server->pid());
  pids.push_back(server->pid());
  ASSERT_GE(pids.size(), 3u);  // master, admin, worker at least
  for (pid_t pid : pids) {
    std::string title = ProcessTitle(pid);
    EXPECT_EQ(title.find(password), std::string::npos) << pid << ": " << title;
    EXPECT_EQ(title.find(token), std::string::npos) << pid << ": " << title;
  }
}

// HTTPS only on the admin port, with the certificate given: curl that
// trusts it gets the metrics (with the token) and the probes, a plain HTTP
// request gets nothing.
TEST(AdminTlsTest, ServesHttpsWithTheGivenCertificate) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(MakeCertificate(dir, "admin"));
  uint16_t admin_port = PickFreePort();
  auto server = StartWithAdmin(
      admin_port, {"--admin-tls-cert-file", dir.File("admin.crt"), "--admin-tls-key-file",
                   dir.File("admin.key"), "--admin-auth-token-file", dir.Write("token", "t0k\n")});
  ASSERT_NE(server, nullptr);
  const std::string ca = dir.File("admin.crt");
  std::string ready;
  ASSERT_TRUE(WaitUntil([&] {
    ready = Curl(admin_port, "/readyz", ca);
    return ready == "200\nok\n";
  })) << ready
      << server->Log();
  EXPECT_EQ(Curl(admin_port, "/healthz", ca), "200\nok\n");
  EXPECT_EQ(Curl(admin_port, "/metrics", ca).substr(0, 4), "401\n");
  std::string metrics = Curl(admin_port, "/metrics", ca, {"-H", "Authorization: Bearer t0k"});
  EXPECT_EQ(metrics.substr(0, 4), "200\n");
  EXPECT_NE(metrics.find("\nredis_up 1\n"), std::string::npos) << metrics.substr(0, 300);
  // TLS 1.1 is refused by the server, even to a client that allows it
  // (security level 0): below 1.2 is never negotiated.
  RunResult old =
      RunCommand({"bash", "-c",
                  "echo | openssl s_client -connect 127.0.0.1:" + std::to_string(admin_port) +
                      " -tls1_1 -cipher DEFAULT@SECLEVEL=0 2>&1"},
                 milliseconds(10000));
  EXPECT_NE(old.out.find("alert protocol version"), std::string::npos) << old.Describe();
  // Plain HTTP on the HTTPS port: no HTTP answer.
  EXPECT_EQ(HttpGet(admin_port, "/healthz").status, 0);
  // The admin process still serves after those (no crash: civetweb's
  // OpenSSL stand-ins, admin/civetweb_openssl.h).
  EXPECT_EQ(Curl(admin_port, "/healthz", ca), "200\nok\n");
  EXPECT_EQ(server->Log().find("Admin process (pid"), std::string::npos) << server->Log();
}

// A bad admin setting fails the start, naming the setting, and leaves no
// segment behind; one without its pair is a usage error.
TEST(AdminTlsTest, BadSettingsFailTheStartWithTheReason) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(MakeCertificate(dir, "one"));
  ASSERT_TRUE(MakeCertificate(dir, "two"));
  struct Case {
    std::vector<std::string> flags;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--admin-tls-cert-file", dir.File("missing.crt"), "--admin-tls-key-file",
        dir.File("one.key")},
       1,
       "Cannot start: admin-tls-cert-file: access(" + dir.File("missing.crt") + ", R_OK) failed"},
      {{"--admin-tls-cert-file", dir.File("one.crt"), "--admin-tls-key-file", dir.File("two.key")},
       1,
       "Cannot start: admin-tls-key-file " + dir.File("two.key") + ": "},
      {{"--admin-tls-cert-file", dir.File("one.key"), "--admin-tls-key-file", dir.File("one.key")},
       1,
       "Cannot start: admin-tls-cert-file " + dir.File("one.key") + ": "},
      {{"--admin-auth-user", "prom", "--admin-auth-password-file", dir.File("missing")},
       1,
       "Cannot start: admin-auth-password-file: open(" + dir.File("missing") + ") failed"},
      {{"--admin-tls-key-file", dir.File("one.key")},
       2,
       "--admin-tls-cert-file and --admin-tls-key-file go together"},
      {{"--admin-auth-user", "prom"},
       2,
       "--admin-auth-user and --admin-auth-password-file go together"},
  };
  int n = 0;
  for (const Case& c : cases) {
    const std::string shm_name =
        "/redhub-admin-bad-" + std::to_string(getpid()) + "-" + std::to_string(n++);
    std::vector<std::string> args = {"--port",       "0",
                                     "--workers",    "1",
                                     "--maxmemory",  "8mb",
                                     "--shm-name",   shm_name,
                                     "--admin-port", std::to_string(PickFreePort())};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    ServerProcess server("redhubd-bad-admin");
    ASSERT_TRUE(server.Start(REDHUBD_PATH, args));
    int status = 0;
    ASSERT_TRUE(server.WaitExit(kTimeout, &status)) << server.Log();
    server.Stop();  // it exited, as it should
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == c.exit_code)
        << c.message << ": status " << status << "\n"
        << server.Log();
    EXPECT_NE(server.Log().find(c.message), std::string::npos) << server.Log();
    EXPECT_NE(access(("/dev/shm" + shm_name).c_str(), F_OK), 0) << shm_name << " left behind";
    EXPECT_NE(access(("/dev/shm" + shm_name + "-stats").c_str(), F_OK), 0);
  }
}

}  // namespace
}  // namespace redhub::integration
