// One client must never stall the others for long or get a worker killed:
// a glob pattern that backtracks, a huge MSET, a command that runs for
// seconds under a short --worker-timeout, a reply that would outgrow the
// output limit inside one command. Each test checks the answer, that the
// workers that served it are the same processes after (nothing was killed
// and respawned), and that the master logged no kill.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

// The master's children titled "redhubd: worker <slot>".
std::set<pid_t> WorkerPids(pid_t master) {
  std::set<pid_t> out;
  for (pid_t pid : ChildPids(master)) {
    if (ProcessTitle(pid).starts_with("redhubd: worker ")) out.insert(pid);
  }
  return out;
}

// A process's peak resident memory (VmHWM), in bytes; 0 if unknown.
uint64_t PeakRss(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmHWM:")) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

void ExpectNoWorkerKilled(ServerProcess& server, const std::set<pid_t>& before) {
  EXPECT_EQ(WorkerPids(server.pid()), before);
  const std::string log = server.Log();
  EXPECT_EQ(log.find("killing it"), std::string::npos) << log;
  EXPECT_EQ(log.find("killed by signal"), std::string::npos) << log;
}

// CVE-2022-36021's shape: before the linear matcher, this KEYS kept its
// worker busy for longer than the watchdog allows, and a second worker
// writing to the stripe the scan held was killed with it.
TEST(StallTest, BacktrackingPatternAnswersAtOnceAndKillsNoWorker) {
  auto server = StartRedhubd({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  const std::set<pid_t> before = WorkerPids(server->pid());
  ASSERT_EQ(before.size(), 2u);
  Context c = ConnectHiredis(server->port());
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(DescribeReply(Command(c.get(), {"SET", std::string(50, 'a'), "v"}).get()), "+OK");
  for (int i = 0; i < 100; i++) {
    ASSERT_EQ(DescribeReply(Command(c.get(), {"SET", "k" + std::to_string(i), "v"}).get()), "+OK");
  }

  // Writers on every stripe meanwhile, on connections spread over both
  // workers, each bounded in count.
  std::atomic<bool> stop{false};
  std::atomic<int> write_failures{0};
  std::vector<std::thread> writers;
  // Stopped and joined however the test leaves (a failed ASSERT returns).
  struct JoinAll {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~JoinAll() {
      stop = true;
      for (auto& t : threads) {
        if (t.joinable()) t.join();
      }
    }
  } join_all{stop, writers};
  for (int t = 0; t < 4; t++) {
    writers.emplace_back([&, t] {
      Context w = ConnectHiredis(server->port());
      if (w == nullptr) {
        write_failures++;
        return;
      }
      for (int i = 0; i < 20000 && !stop; i++) {
        Reply r = Command(w.get(), {"SET", "w" + std::to_string(t) + ":" + std::to_string(i), "x"});
        if (r == nullptr || r->type != REDIS_REPLY_STATUS) write_failures++;
      }
    });
  }
  const std::string pattern = "a*a*a*a*a*a*a*a*a*a*b";
  for (int round = 0; round < 5; round++) {
    Reply keys = Command(c.get(), {"KEYS", pattern});
    ASSERT_NE(keys, nullptr) << "KEYS did not answer";
    EXPECT_EQ(DescribeReply(keys.get()), "*0 []");
    Reply scan = Command(c.get(), {"SCAN", "0", "MATCH", pattern, "COUNT", "100000"});
    ASSERT_NE(scan, nullptr) << "SCAN did not answer";
    ASSERT_EQ(scan->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(scan->elements, 2u);
    EXPECT_EQ(scan->element[1]->elements, 0u);
    // The same pattern still matches what it should.
    Reply hit = Command(c.get(), {"KEYS", "a*a*a*a*a*a*a*a*a*a*"});
    ASSERT_NE(hit, nullptr);
    EXPECT_EQ(DescribeReply(hit.get()), "*1 [$50 " + std::string(50, 'a') + "]");
  }
  stop = true;
  for (auto& w : writers) w.join();
  EXPECT_EQ(write_failures.load(), 0);
  ExpectNoWorkerKilled(*server, before);
}

// Staging each key of a multi-key write was a linear search over the keys
// staged so far: 200k pairs took tens of seconds and the watchdog killed
// the worker, leaving nothing written.
TEST(StallTest, MsetOf200kPairsCompletesAndIsReadable) {
  auto server = StartRedhubd({"--workers", "2", "--maxmemory", "128mb"});
  ASSERT_NE(server, nullptr);
  const std::set<pid_t> before = WorkerPids(server->pid());
  Context c = ConnectHiredis(server->port(), milliseconds(60000));
  ASSERT_NE(c, nullptr);
  constexpr int kPairs = 200000;
  std::vector<std::string> argv{"MSET"};
  argv.reserve(2 * kPairs + 1);
  for (int i = 0; i < kPairs; i++) {
    argv.push_back("key:" + std::to_string(i));
    argv.push_back("value:" + std::to_string(i));
  }
  EXPECT_EQ(DescribeReply(Command(c.get(), argv).get()), "+OK");
  EXPECT_EQ(DescribeReply(Command(c.get(), {"DBSIZE"}).get()), ":200000");
  EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", "key:0"}).get()), "$7 value:0");
  EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", "key:199999"}).get()), "$12 value:199999");
  // MSETNX of the same size: refused as a whole, since the keys exist.
  argv[0] = "MSETNX";
  EXPECT_EQ(DescribeReply(Command(c.get(), argv).get()), ":0");
  ExpectNoWorkerKilled(*server, before);
}

// A command that runs for seconds is slow, not hung: with
// --worker-timeout 1 its worker must live, and the command is in the log
// and SLOWLOG. (Matching "*aaa...ab" against long keys is O(pattern x key)
// here as in Redis: about a second per key.)
TEST(StallTest, ACommandLongerThanTheWorkerTimeoutCompletesAndItsWorkerLives) {
  auto server = StartRedhubd({"--workers", "1", "--worker-timeout", "1"});
  ASSERT_NE(server, nullptr);
  const std::set<pid_t> before = WorkerPids(server->pid());
  ASSERT_EQ(before.size(), 1u);
  Context c = ConnectHiredis(server->port(), milliseconds(60000));
  ASSERT_NE(c, nullptr);
  for (int i = 0; i < 3; i++) {
    std::string key(256 << 10, 'a');
    key += std::to_string(i);
    ASSERT_EQ(DescribeReply(Command(c.get(), {"SET", key, "v"}).get()), "+OK");
  }
  const std::string pattern = "*" + std::string(1000, 'a') + "b";
  EXPECT_EQ(DescribeReply(Command(c.get(), {"KEYS", pattern}).get()), "*0 []");
  EXPECT_TRUE(server->WaitForLogLine("Long command: keys ran for")) << server->Log();
  Reply slow = Command(c.get(), {"SLOWLOG", "GET", "1"});
  ASSERT_NE(slow, nullptr);
  ASSERT_EQ(slow->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(slow->elements, 1u);
  const redisReply* entry = slow->element[0];
  ASSERT_GE(entry->elements, 4u);
  EXPECT_GE(entry->element[2]->integer, 1000000) << "microseconds";
  ASSERT_GE(entry->element[3]->elements, 1u);
  EXPECT_EQ(std::string(entry->element[3]->element[0]->str), "KEYS");
  ExpectNoWorkerKilled(*server, before);
  // And a worker that really hangs is still killed.
  ASSERT_EQ(kill(*before.begin(), SIGSTOP), 0);
  EXPECT_TRUE(server->WaitForLogLine("silent for")) << server->Log();
  EXPECT_TRUE(WaitUntil([&] {
    std::set<pid_t> now = WorkerPids(server->pid());
    return now.size() == 1 && !now.count(*before.begin());
  }));
}

// MGET of one 1 MB value a thousand times: the reply stops growing at the
// hard limit and the client is closed (Redis closes it too), instead of the
// worker building a 1 GB reply, or dying of bad_alloc under a memory cap
// and dropping its other clients.
TEST(StallTest, OneCommandCannotBuildAReplyPastTheOutputHardLimit) {
  auto server = StartRedhubd({"--workers", "1", "--output-buffer-hard-limit", "32mb",
                              "--output-buffer-soft-limit", "16mb"});
  ASSERT_NE(server, nullptr);
  const std::set<pid_t> before = WorkerPids(server->pid());
  ASSERT_EQ(before.size(), 1u);
  const pid_t worker = *before.begin();
  Context other = ConnectHiredis(server->port());
  ASSERT_NE(other, nullptr);
  ASSERT_EQ(DescribeReply(Command(other.get(), {"SET", "big", std::string(1 << 20, 'v')}).get()),
            "+OK");
  const auto disconnects =
      InfoInt(other.get(), "stats", "client_output_buffer_limit_disconnections");
  ASSERT_TRUE(disconnects.has_value());

  std::vector<std::string> argv{"MGET"};
  for (int i = 0; i < 1000; i++) argv.push_back("big");
  Socket s = Socket::Connect(server->port());
  ASSERT_TRUE(s.valid());
  ASSERT_TRUE(s.SendAll(FormatCommand(argv)));
  std::string got;
  EXPECT_TRUE(s.WaitForClose(milliseconds(20000), &got));
  EXPECT_LT(got.size(), size_t{64} << 20) << "the whole 1 GB reply must not be sent";
  EXPECT_LT(PeakRss(worker), uint64_t{400} << 20) << "the worker built the whole reply";
  EXPECT_EQ(InfoInt(other.get(), "stats", "client_output_buffer_limit_disconnections"),
            *disconnects + 1);
  EXPECT_EQ(DescribeReply(Command(other.get(), {"PING"}).get()), "+PONG");
  ExpectNoWorkerKilled(*server, before);
}

}  // namespace
}  // namespace redhub::integration
