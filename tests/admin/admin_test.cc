// The admin process against a real store and a real counter area: fake
// workers (forked children) and a fake master (this process) write known
// figures, RunAdmin runs in a forked child on a free port, and the test reads
// /metrics, /healthz and /readyz over plain HTTP/1.0.
#include "admin.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <thread>

#include "admin_test_util.h"
#include "counters.h"
#include "health_checks.h"
#include "metrics_collector.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::admin {
namespace {

namespace slots = shm::slots;
using testing::HttpGet;
using testing::HttpReply;
using testing::ParseSamples;

constexpr uint32_t kGet = 0, kSet = 1, kPing = 2;  // command indexes in the fake table

// Waits up to `timeout` for `pid` to exit; its wait status, or -1.
int WaitExit(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> serial{0};
    const std::string base =
        "/redhub-admin-test-" + std::to_string(getpid()) + "-" + std::to_string(serial++);
    store_name_ = base;
    counters_name_ = base + "-stats";
    std::string error;
    shm::StoreOptions options;
    options.name = store_name_;
    options.maxmemory = 8 << 20;
    options.stripes = 16;
    options.if_exists = shm::IfExists::kReplace;
    store_ = shm::Store::Create(options, &error);
    ASSERT_TRUE(store_) << error;
    area_ = shm::CounterArea::Create(
        counters_name_, {.blocks = 64, .counters = slots::kSlots, .gauges = slots::kGauges},
        &error);
    ASSERT_TRUE(area_) << error;
    // As the master does at start (worker::CommandService::LabelCounters).
    area_->SetLabel(slots::CommandSlot(kGet, slots::kCalls), "get");
    area_->SetLabel(slots::CommandSlot(kSet, slots::kCalls), "set");
    area_->SetLabel(slots::CommandSlot(kPing, slots::kCalls), "ping");
  }

  void TearDown() override {
    if (admin_pid_ > 0) {
      kill(admin_pid_, SIGKILL);
      waitpid(admin_pid_, nullptr, 0);
    }
    for (pid_t pid : workers_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    area_.reset();
    store_.reset();
    shm::CounterArea::Remove(counters_name_);
    shm::Store::Remove(store_name_);
  }

  // A fake worker: a child that claims a block, lets `fill` write it, says so
  // through a pipe, and waits to be killed.
  pid_t StartWorker(const std::function<void(shm::CounterBlock*)>& fill) {
    int ready[2];
    EXPECT_EQ(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(ready[0]);
      shm::CounterBlock* block = area_->Claim(getpid());
      if (block == nullptr) _exit(1);
      fill(block);
      char c = 'r';
      if (write(ready[1], &c, 1) != 1) _exit(1);
      for (;;) pause();
    }
    close(ready[1]);
    char c = 0;
    EXPECT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);
    workers_.push_back(pid);
    return pid;
  }

  void KillWorker(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    std::erase(workers_, pid);
  }

  // The master's own block: the gauges and counters only it writes.
  shm::CounterBlock* MasterBlock() {
    if (master_block_ == nullptr) master_block_ = area_->Claim(getpid());
    return master_block_;
  }

  AdminSpec Spec() const {
    AdminSpec spec;
    spec.store_name = store_name_;
    spec.counters_name = counters_name_;
    spec.master_pid = getpid();
    spec.version = "9.9.9-test";
    spec.started_at_unix = static_cast<double>(time(nullptr)) - 100;
    spec.max_clients = 1234;
    return spec;
  }

  // Forks RunAdmin on a free port and waits until /healthz answers; tries
  // another port if the one picked was taken in the meantime.
  void StartAdmin(AdminSpec spec) {
    for (int attempt = 0; attempt < 5; attempt++) {
      spec.port = testing::FreePort();
      ASSERT_NE(spec.port, 0);
      pid_t pid = fork();
      if (pid == 0) _exit(RunAdmin(spec));
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (std::chrono::steady_clock::now() < deadline) {
        if (HttpGet(spec.port, "/healthz").status != 0) {
          admin_pid_ = pid;
          port_ = spec.port;
          return;
        }
        if (waitpid(pid, nullptr, WNOHANG) == pid) break;  // could not bind: next port
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    FAIL() << "the admin process did not start";
  }

  // Two workers and a master with known figures; worker A is returned.
  pid_t WriteKnownFigures() {
    for (const char* key : {"a", "b", "c"}) {
      EXPECT_EQ(store_->Lock(key).Put(key, "value"), shm::Status::kOk);
    }
    EXPECT_EQ(store_->Lock("c").Put("c", "value", shm::Store::NowMs() + 3'600'000),
              shm::Status::kOk);
    shm::CounterBlock* m = MasterBlock();
    m->Set(slots::kConfiguredSlots, 2);
    m->Set(slots::kServingSlots, 1);
    m->Add(slots::kReloadsOk, 2);
    m->Add(slots::kReloadsFailed, 1);
    m->Add(slots::kUpgradesOk, 1);
    m->Add(slots::RestartSlot(1, 0), 3);  // slot 1, crash
    m->Add(slots::RestartSlot(0, 2), 1);  // slot 0, timeout
    pid_t a = StartWorker([](shm::CounterBlock* b) {
      b->Set(slots::kConnectedClients, 5);
      b->Add(slots::kConnectionsReceived, 10);
      b->Add(slots::kRejectedConnections, 1);
      b->Add(slots::kCommandsProcessed, 100);
      b->Add(slots::kNetInputBytes, 1000);
      b->Add(slots::kNetOutputBytes, 2000);
      b->Add(slots::kKeyspaceHits, 30);
      b->Add(slots::kKeyspaceMisses, 30);
      b->Add(slots::kErrorBase + 0, 2);  // ERR
      b->Add(slots::kErrorOther, 1);
      b->Add(slots::CommandSlot(kGet, slots::kCalls), 60);
      b->Add(slots::CommandSlot(kGet, slots::kMicros), 600);
      b->Add(slots::HistogramSlot(kGet, 0), 50);  // <= 10 us
      b->Add(slots::HistogramSlot(kGet, 1), 10);  // <= 25 us
      b->Add(slots::CommandSlot(kSet, slots::kCalls), 40);
      b->Add(slots::CommandSlot(kSet, slots::kMicros), 4000);
      b->Add(slots::CommandSlot(kSet, slots::kFailed), 2);
      b->Add(slots::HistogramSlot(kSet, 3), 40);  // <= 100 us
    });
    StartWorker([](shm::CounterBlock* b) {
      b->Set(slots::kConnectedClients, 7);
      b->Add(slots::kConnectionsReceived, 5);
      b->Add(slots::kCommandsProcessed, 20);
      b->Add(slots::kNetInputBytes, 500);
      b->Add(slots::kNetOutputBytes, 700);
      b->Add(slots::kKeyspaceHits, 5);
      b->Add(slots::kErrorBase + 4, 3);  // WRONGTYPE
      b->Add(slots::CommandSlot(kGet, slots::kCalls), 20);
      b->Add(slots::CommandSlot(kGet, slots::kMicros), 2'000'000);
      b->Add(slots::HistogramSlot(kGet, 0), 19);  // and one call over 1 s: +Inf only
    });
    return a;
  }

  std::string store_name_, counters_name_;
  std::unique_ptr<shm::Store> store_;
  std::unique_ptr<shm::CounterArea> area_;
  shm::CounterBlock* master_block_ = nullptr;
  std::vector<pid_t> workers_;
  pid_t admin_pid_ = -1;
  uint16_t port_ = 0;
};

bool HasLine(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST_F(AdminTest, MetricsReportExactFiguresAndKeepDeadWorkersCounters) {
  pid_t worker_a = WriteKnownFigures();
  StartAdmin(Spec());
  ASSERT_GT(admin_pid_, 0);

  auto before = std::chrono::steady_clock::now();
  HttpReply reply = HttpGet(port_, "/metrics");
  auto scrape = std::chrono::steady_clock::now() - before;
  std::cout << "one /metrics fetch: "
            << std::chrono::duration_cast<std::chrono::microseconds>(scrape).count() << " us, "
            << reply.body.size() << " bytes\n";
  ASSERT_EQ(reply.status, 200);
  auto m = ParseSamples(reply.body);
  EXPECT_EQ(m["redis_connected_clients"], 12);  // both workers alive

  // Worker A dies: its counters stay, its gauges go.
  KillWorker(worker_a);
  reply = HttpGet(port_, "/metrics");
  ASSERT_EQ(reply.status, 200);
  const std::string& text = reply.body;
  m = ParseSamples(text);
  const shm::Stats st = store_->stats();

  EXPECT_EQ(m["redis_up"], 1);
  EXPECT_GE(m["redis_uptime_in_seconds"], 100);
  EXPECT_LT(m["redis_uptime_in_seconds"], 160);
  EXPECT_EQ(m["redis_connected_clients"], 7);
  EXPECT_EQ(m["redis_max_clients"], 1234);
  EXPECT_EQ(m["redis_connections_received_total"], 15);
  EXPECT_EQ(m["redis_rejected_connections_total"], 1);
  EXPECT_EQ(m["redis_commands_processed_total"], 120);
  EXPECT_EQ(m["redis_keyspace_hits_total"], 35);
  EXPECT_EQ(m["redis_keyspace_misses_total"], 30);
  EXPECT_EQ(m["redis_expired_keys_total"], 0);
  EXPECT_EQ(m["redis_evicted_keys_total"], 0);
  EXPECT_EQ(m["redis_net_input_bytes_total"], 1500);
  EXPECT_EQ(m["redis_net_output_bytes_total"], 2700);
  EXPECT_EQ(m["redis_memory_used_bytes"], static_cast<double>(st.used_bytes));
  EXPECT_GT(st.used_bytes, 0u);
  EXPECT_EQ(m["redis_memory_max_bytes"], 8 << 20);
  EXPECT_EQ(m["redis_db_keys{db=db0}"], 3);
  EXPECT_EQ(m["redis_db_keys_expiring{db=db0}"], 1);

  EXPECT_EQ(m["redis_commands_total{cmd=get}"], 80);
  EXPECT_EQ(m["redis_commands_total{cmd=set}"], 40);
  EXPECT_EQ(m.count("redis_commands_total{cmd=ping}"), 0u);  // never called
  EXPECT_DOUBLE_EQ(m["redis_commands_duration_seconds_total{cmd=get}"], 2.0006);
  EXPECT_DOUBLE_EQ(m["redis_commands_duration_seconds_total{cmd=set}"], 0.004);
  EXPECT_EQ(m["redis_commands_failed_calls_total{cmd=get}"], 0);
  EXPECT_EQ(m["redis_commands_failed_calls_total{cmd=set}"], 2);

  // Cumulative buckets from the per-bucket slots; +Inf and _count = calls.
  EXPECT_EQ(m["redis_commands_latency_seconds_bucket{cmd=get,le=1e-05}"], 69);
  EXPECT_EQ(m["redis_commands_latency_seconds_bucket{cmd=get,le=2.5e-05}"], 79);
  EXPECT_EQ(m["redis_commands_latency_seconds_bucket{cmd=get,le=1}"], 79);
  EXPECT_EQ(m["redis_commands_latency_seconds_bucket{cmd=get,le=+Inf}"], 80);
  EXPECT_EQ(m["redis_commands_latency_seconds_count{cmd=get}"], 80);
  EXPECT_DOUBLE_EQ(m["redis_commands_latency_seconds_sum{cmd=get}"], 2.0006);
  EXPECT_EQ(m["redis_commands_latency_seconds_bucket{cmd=set,le=5e-05}"], 0);
  EXPECT_EQ(m["redis_commands_latency_seconds_bucket{cmd=set,le=0.0001}"], 40);
  EXPECT_EQ(m["redis_commands_latency_seconds_bucket{cmd=set,le=+Inf}"], 40);
  EXPECT_DOUBLE_EQ(m["redis_commands_latency_seconds_sum{cmd=set}"], 0.004);
  int buckets = 0;
  for (const auto& [key, value] : m) {
    buckets += key.starts_with("redis_commands_latency_seconds_bucket{cmd=get,");
  }
  EXPECT_EQ(buckets, static_cast<int>(slots::kBuckets) + 1);

  EXPECT_EQ(m["redis_errors_total{err=ERR}"], 2);
  EXPECT_EQ(m["redis_errors_total{err=WRONGTYPE}"], 3);
  EXPECT_EQ(m["redis_errors_total{err=OTHER}"], 1);
  EXPECT_EQ(m.count("redis_errors_total{err=OOM}"), 0u);

  EXPECT_EQ(m["redhub_workers{state=configured}"], 2);
  EXPECT_EQ(m["redhub_workers{state=serving}"], 1);
  EXPECT_EQ(m["redhub_worker_restarts_total{reason=crash,slot=1}"], 3);
  EXPECT_EQ(m["redhub_worker_restarts_total{reason=timeout,slot=0}"], 1);
  int restarts = 0;
  for (const auto& [key, value] : m) restarts += key.starts_with("redhub_worker_restarts_total");
  EXPECT_EQ(restarts, 2);  // only nonzero ones
  EXPECT_EQ(m["redhub_reloads_total{result=ok}"], 2);
  EXPECT_EQ(m["redhub_reloads_total{result=failed}"], 1);
  EXPECT_EQ(m["redhub_upgrades_total{result=ok}"], 1);
  EXPECT_EQ(m["redhub_upgrades_total{result=failed}"], 0);
  EXPECT_EQ(m["redhub_store_stripe_repairs_total"], 0);
  EXPECT_EQ(m["redhub_build_info{version=9.9.9-test}"], 1);

  EXPECT_TRUE(HasLine(text, "# TYPE redis_commands_total counter")) << text;
  EXPECT_TRUE(HasLine(text, "# TYPE redis_connected_clients gauge"));
  EXPECT_TRUE(HasLine(text, "# TYPE redis_commands_latency_seconds histogram"));
  EXPECT_TRUE(HasLine(text, "# TYPE redhub_worker_restarts_total counter"));
  EXPECT_TRUE(HasLine(text, "# TYPE redis_db_keys gauge"));

  // The master's counters too survive its block being folded (an upgrade).
  area_->Release(MasterBlock());
  master_block_ = nullptr;
  m = ParseSamples(HttpGet(port_, "/metrics").body);
  EXPECT_EQ(m["redhub_reloads_total{result=ok}"], 2);
  EXPECT_EQ(m["redis_connections_received_total"], 15);
  EXPECT_EQ(m["redhub_workers{state=configured}"], 0);  // a gauge: gone with its block
}

TEST_F(AdminTest, HealthAndReadiness) {
  WriteKnownFigures();
  StartAdmin(Spec());
  ASSERT_GT(admin_pid_, 0);
  HttpReply health = HttpGet(port_, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  HttpReply ready = HttpGet(port_, "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body, "1 of 2 worker slots serving\n");
  MasterBlock()->Set(slots::kServingSlots, 2);
  ready = HttpGet(port_, "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ok\n");
  EXPECT_EQ(HttpGet(port_, "/nothing-here").status, 404);
}

// With credentials configured, /metrics (and any other path) answers 401
// with a challenge per scheme until a request carries the right ones, and
// each refusal is counted by reason; the probes never ask.
TEST_F(AdminTest, MetricsNeedCredentialsAndProbesDoNot) {
  char dir[] = "/tmp/admin_auth_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string password_file = std::string(dir) + "/password";
  const std::string token_file = std::string(dir) + "/token";
  std::ofstream(password_file) << "s3cret pass\n";
  std::ofstream(token_file) << "t0ken\n";
  AdminSpec spec = Spec();
  spec.auth_user = "prom";
  spec.auth_password_file = password_file;
  spec.auth_token_file = token_file;
  MasterBlock()->Set(slots::kConfiguredSlots, 1);
  MasterBlock()->Set(slots::kServingSlots, 1);
  StartAdmin(spec);
  // Read once at start: the files may go (as a tmpfs secret can).
  unlink(password_file.c_str());
  unlink(token_file.c_str());
  rmdir(dir);
  ASSERT_GT(admin_pid_, 0);

  const std::string right_basic = "Authorization: Basic cHJvbTpzM2NyZXQgcGFzcw==\r\n";
  const std::string wrong_basic = "Authorization: Basic cHJvbTpzM2NyZXQ=\r\n";  // prom:s3cret
  HttpReply none = HttpGet(port_, "/metrics");
  EXPECT_EQ(none.status, 401);
  EXPECT_NE(none.headers.find("WWW-Authenticate: Basic realm=\"redhubd\", charset=\"UTF-8\"\r\n"),
            std::string::npos)
      << none.headers;
  EXPECT_NE(none.headers.find("WWW-Authenticate: Bearer realm=\"redhubd\"\r\n"), std::string::npos)
      << none.headers;
  EXPECT_EQ(none.body, "unauthorized\n");
  EXPECT_EQ(HttpGet(port_, "/metrics", wrong_basic).status, 401);
  EXPECT_EQ(HttpGet(port_, "/metrics", "Authorization: Bearer t0ke\r\n").status, 401);
  EXPECT_EQ(HttpGet(port_, "/nothing-here").status, 401);  // no path list for strangers

  EXPECT_EQ(HttpGet(port_, "/healthz").status, 200);
  EXPECT_EQ(HttpGet(port_, "/readyz").status, 200);
  EXPECT_EQ(HttpGet(port_, "/nothing-here", right_basic).status, 404);
  EXPECT_EQ(HttpGet(port_, "/metrics", "Authorization: Bearer t0ken\r\n").status, 200);
  HttpReply ok = HttpGet(port_, "/metrics", right_basic);
  ASSERT_EQ(ok.status, 200);
  auto m = ParseSamples(ok.body);
  EXPECT_EQ(m["redis_up"], 1);
  EXPECT_EQ(m["redhub_admin_auth_failures_total{reason=missing}"], 2);
  EXPECT_EQ(m["redhub_admin_auth_failures_total{reason=invalid}"], 2);
}

// Without settings the family is there, at 0, so that an alert on it has a
// series to watch.
TEST_F(AdminTest, AuthFailuresAreZeroWithoutAuthentication) {
  StartAdmin(Spec());
  ASSERT_GT(admin_pid_, 0);
  HttpReply reply = HttpGet(port_, "/metrics");
  ASSERT_EQ(reply.status, 200);
  auto m = ParseSamples(reply.body);
  ASSERT_EQ(m.count("redhub_admin_auth_failures_total{reason=missing}"), 1u) << reply.body;
  EXPECT_EQ(m["redhub_admin_auth_failures_total{reason=missing}"], 0);
  EXPECT_EQ(m["redhub_admin_auth_failures_total{reason=invalid}"], 0);
}

// A bad file ends the process with 1 before it listens (the master checks
// the same at start, CheckAdminSpec).
TEST_F(AdminTest, FailsOnABadSecretOrCertificateFile) {
  AdminSpec spec = Spec();
  spec.auth_user = "prom";
  spec.auth_password_file = "/nonexistent/password";
  EXPECT_EQ(CheckAdminSpec(spec).rfind("admin-auth-password-file: open(/nonexistent/password)", 0),
            0u)
      << CheckAdminSpec(spec);
  spec.port = testing::FreePort();
  pid_t pid = fork();
  if (pid == 0) {
    freopen("/dev/null", "w", stderr);
    _exit(RunAdmin(spec));
  }
  int status = WaitExit(pid, std::chrono::seconds(10));
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);

  AdminSpec tls = Spec();
  tls.tls_cert_file = "/nonexistent/cert.pem";
  EXPECT_EQ(CheckAdminSpec(tls), "admin-tls-cert-file needs admin-tls-key-file");
  tls.tls_key_file = "/nonexistent/key.pem";
  EXPECT_EQ(
      CheckAdminSpec(tls).rfind("admin-tls-cert-file: access(/nonexistent/cert.pem, R_OK)", 0), 0u)
      << CheckAdminSpec(tls);
  EXPECT_EQ(CheckAdminSpec(Spec()), "");
  AdminSpec v6 = Spec();
  v6.bind = "::1";
  EXPECT_NE(CheckAdminSpec(v6).find("no IPv6 support"), std::string::npos) << CheckAdminSpec(v6);
}

TEST_F(AdminTest, PromtoolAcceptsMetrics) {
  if (std::string(PROMTOOL_PATH).empty())
    FAIL() << "promtool not installed (deploy/install-deps.sh installs it)";
  WriteKnownFigures();
  StartAdmin(Spec());
  ASSERT_GT(admin_pid_, 0);
  HttpReply reply = HttpGet(port_, "/metrics");
  ASSERT_EQ(reply.status, 200);
  if (getenv("ADMIN_TEST_DUMP") != nullptr) std::cout << reply.body;
  auto result = testing::RunCommand({PROMTOOL_PATH, "check", "metrics"}, "", reply.body);
  EXPECT_EQ(result.exit_code, 0) << result.output << "\n--- /metrics:\n" << reply.body;
}

TEST_F(AdminTest, ExitsZeroOnSigterm) {
  StartAdmin(Spec());
  ASSERT_GT(admin_pid_, 0);
  ASSERT_EQ(kill(admin_pid_, SIGTERM), 0);
  int status = WaitExit(admin_pid_, std::chrono::seconds(10));
  ASSERT_NE(status, -1) << "still running 10 s after SIGTERM";
  admin_pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(AdminTest, ExitsWhenTheMasterDies) {
  pid_t master = fork();
  if (master == 0) {
    for (;;) pause();
  }
  AdminSpec spec = Spec();
  spec.master_pid = master;
  StartAdmin(spec);
  ASSERT_GT(admin_pid_, 0);
  EXPECT_EQ(HttpGet(port_, "/healthz").status, 200);
  kill(master, SIGKILL);
  waitpid(master, nullptr, 0);
  int status = WaitExit(admin_pid_, std::chrono::seconds(10));
  ASSERT_NE(status, -1) << "still running 10 s after the master died";
  admin_pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(AdminTest, FailsWithoutItsSegments) {
  AdminSpec spec = Spec();
  spec.counters_name = "/redhub-admin-test-missing-" + std::to_string(getpid());
  spec.port = testing::FreePort();
  pid_t pid = fork();
  if (pid == 0) {
    // Keep the expected error message out of the test's output.
    freopen("/dev/null", "w", stderr);
    _exit(RunAdmin(spec));
  }
  int status = WaitExit(pid, std::chrono::seconds(10));
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

// BuildFamilies and the verdicts without processes.
TEST(AdminFamiliesTest, EmptySnapshotHasNoCommandOrErrorSamples) {
  Snapshot s;
  s.totals.assign(slots::kSlots, 0);
  auto families = BuildFamilies(s, StaticInfo{"v", 0, 10});
  for (const auto& f : families) {
    EXPECT_NE(f.name, "redis_commands_total");
    EXPECT_NE(f.name, "redis_commands_latency_seconds");
    EXPECT_NE(f.name, "redis_errors_total");
    EXPECT_NE(f.name, "redhub_worker_restarts_total");
    EXPECT_FALSE(f.metric.empty()) << f.name;
    EXPECT_FALSE(f.help.empty()) << f.name;
  }
}

TEST(AdminFamiliesTest, InfBucketNeverBelowTheLastFiniteOne) {
  // A scrape between a worker's bucket store and its calls store.
  Snapshot s;
  s.totals.assign(slots::kSlots, 0);
  s.command_names.assign(slots::kMaxCommands, "");
  s.command_names[5] = "GET";
  s.totals[slots::CommandSlot(5, slots::kCalls)] = 3;
  s.totals[slots::HistogramSlot(5, 0)] = 4;
  for (const auto& f : BuildFamilies(s, StaticInfo{})) {
    if (f.name != "redis_commands_latency_seconds") continue;
    ASSERT_EQ(f.metric.size(), 1u);
    EXPECT_EQ(f.metric[0].label[0].value, "get");  // lower-case, as redis_exporter
    EXPECT_EQ(f.metric[0].histogram.sample_count, 4u);
    EXPECT_EQ(f.metric[0].histogram.bucket.back().cumulative_count, 4u);
  }
}

TEST(AdminHealthTest, ReadinessVerdicts) {
  std::vector<uint64_t> t(slots::kGauges, 0);
  EXPECT_EQ(Readiness(t).status, 503);
  EXPECT_EQ(Readiness(t).body, "no worker slots configured\n");
  t[slots::kConfiguredSlots] = 4;
  t[slots::kServingSlots] = 3;
  EXPECT_EQ(Readiness(t).body, "3 of 4 worker slots serving\n");
  t[slots::kServingSlots] = 4;
  EXPECT_EQ(Readiness(t).status, 200);
  EXPECT_EQ(Liveness(0).status, 200);
  EXPECT_EQ(Liveness(getpid()).status, 200);
}

}  // namespace
}  // namespace redhub::admin
