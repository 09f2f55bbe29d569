// The daemon's admin process end to end: /metrics counts exactly what
// clients sent (summed over the workers), no counter goes backwards when a
// worker is killed, promtool accepts the output, /readyz follows the worker
// slots, and Debian's redis_exporter scraping redhubd agrees.
#include <gtest/gtest.h>
#include <signal.h>
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

HttpReply HttpGet(uint16_t port, const std::string& path) {
  HttpReply reply;
  Socket s = Socket::Connect(port);
  if (!s.valid() || !s.SendAll("GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")) {
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

}  // namespace
}  // namespace redhub::integration
