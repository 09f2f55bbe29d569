// The prefork master under load: process titles, connections spread over the
// workers, crash isolation (SIGKILL of a worker), reload (SIGHUP), binary
// upgrade (SIGUSR2), graceful stop (SIGTERM) and a bad configuration on
// reload. The clients are real (hiredis loops on their own threads, raw
// pipelining sockets, redis-benchmark) and never retry a command: a closed
// connection or a wrong reply is counted, and the tests say how many of each
// may happen.
//
// Replies are checked with commands that do not depend on the store (ECHO
// with a payload unique to each command, PING, CLIENT INFO / CLIENT ID), so
// the tests hold whether or not the workers share one.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "counters.h"
#include "server_process.h"
#include "store.h"

namespace redhub::integration {
namespace {

using std::chrono::seconds;

constexpr int kWorkers = 2;

// ---- who serves what ----

std::string Describe(const WorkerId& w) {
  return "worker " + std::to_string(w.slot) + " (pid " + std::to_string(w.pid) + ")";
}

// The master's children titled "redhubd: worker <slot>" (serving, not
// retiring), by slot.
std::map<int, pid_t> ServingWorkers(pid_t master) {
  std::map<int, pid_t> out;
  for (pid_t pid : ChildPids(master)) {
    std::string title = ProcessTitle(pid);
    static constexpr std::string_view kPrefix = "redhubd: worker ";
    if (!title.starts_with(kPrefix)) continue;
    int slot = -1;
    const char* begin = title.data() + kPrefix.size();
    auto [end, ec] = std::from_chars(begin, title.data() + title.size(), slot);
    if (ec != std::errc() || end != title.data() + title.size()) continue;  // "(retiring)"
    out[slot] = pid;
  }
  return out;
}

// Every slot has a serving worker and nothing else runs: no predecessor is
// still retiring and no successor is starting.
bool Settled(pid_t master) {
  return ServingWorkers(master).size() == kWorkers && ChildPids(master).size() == kWorkers;
}

std::string DescribeChildren(pid_t master) {
  std::string out;
  for (pid_t pid : ChildPids(master)) {
    out += "\n  " + std::to_string(pid) + " " + ProcessTitle(pid);
  }
  return out.empty() ? " (none)" : out;
}

size_t CountOccurrences(const std::string& text, std::string_view needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    n++;
  }
  return n;
}

// Whether the log has a line by process pid that contains needle.
bool LogHasLineOf(const std::string& log, pid_t pid, std::string_view needle) {
  std::string prefix = std::to_string(pid) + ":";
  size_t pos = 0;
  while (pos < log.size()) {
    size_t eol = log.find('\n', pos);
    if (eol == std::string::npos) break;  // an incomplete line
    std::string_view line(log.data() + pos, eol - pos);
    if (line.starts_with(prefix) && line.find(needle) != std::string_view::npos) return true;
    pos = eol + 1;
  }
  return false;
}

// ---- load ----

// One persistent hiredis connection issuing ECHO with a unique payload, one
// command at a time, on its own thread, without retrying a command.
struct EchoClient {
  std::string tag;
  uint16_t port = 0;
  Context ctx;
  WorkerId first;                    // who served the connection at the start
  WorkerId current;                  // and after a reconnect
  int64_t connection_id = 0;         // CLIENT ID of the current connection
  uint64_t answered = 0;             // commands answered on the current connection
  std::atomic<uint64_t> replies{0};  // correct ECHO replies, all connections
  std::atomic<uint64_t> after_reconnect{0};
  std::vector<std::string> wrong;   // a reply other than the payload
  std::vector<std::string> closed;  // the connection ended (I/O error)
  std::vector<std::string> reconnect_failures;
  std::atomic<bool> finished{false};  // Run() returned; the vectors may be read
  std::thread thread;

  // Connects and learns who serves the connection. False with *error set if
  // that fails.
  bool Connect(std::string* error) {
    ctx = ConnectHiredis(port, kTimeout, error);
    if (!ctx) return false;
    Reply id = Command(ctx.get(), {"CLIENT", "ID"});
    auto who = ServedBy(ctx.get());
    if (id == nullptr || id->type != REDIS_REPLY_INTEGER || !who) {
      *error = "CLIENT ID / CLIENT INFO failed: " + DescribeReply(id.get());
      ctx.reset();
      return false;
    }
    connection_id = id->integer;
    current = *who;
    answered = 2;
    return true;
  }

  // The loop. With reconnect, a closed connection is replaced by a new one
  // (once per closed connection; a failure to reconnect ends the loop).
  void Run(const std::atomic<bool>* stop, bool reconnect) {
    Loop(stop, reconnect);
    finished = true;
  }

 private:
  void Loop(const std::atomic<bool>* stop, bool reconnect) {
    uint64_t n = 0;
    while (!stop->load(std::memory_order_relaxed)) {
      std::string payload = tag + ":" + std::to_string(n++);
      Reply r = Command(ctx.get(), {"ECHO", payload});
      if (r == nullptr) {
        closed.push_back(std::string(ctx->errstr) + " on " + Describe(current));
        if (!reconnect) return;
        std::string error;
        if (!Connect(&error)) {
          reconnect_failures.push_back(error);
          return;
        }
        continue;
      }
      answered++;
      if (r->type != REDIS_REPLY_STRING || std::string_view(r->str, r->len) != payload) {
        wrong.push_back("ECHO " + payload + " -> " + DescribeReply(r.get()));
        if (wrong.size() >= 10) return;
        continue;
      }
      replies.fetch_add(1, std::memory_order_relaxed);
      if (!closed.empty()) after_reconnect.fetch_add(1, std::memory_order_relaxed);
    }
  }
};

// Opens connections until each slot has per_slot of them (the kernel spreads
// connections over the slots' sockets by their addresses). Extra
// connections are closed.
std::vector<std::unique_ptr<EchoClient>> ConnectAcrossWorkers(uint16_t port, int per_slot,
                                                              const std::string& tag) {
  std::vector<std::unique_ptr<EchoClient>> out;
  std::map<int, int> count;
  for (int attempt = 0; attempt < 64 && static_cast<int>(out.size()) < per_slot * kWorkers;
       attempt++) {
    auto c = std::make_unique<EchoClient>();
    c->port = port;
    std::string error;
    if (!c->Connect(&error)) {
      ADD_FAILURE() << "connect: " << error;
      return {};
    }
    if (count[c->current.slot] >= per_slot) continue;
    count[c->current.slot]++;
    c->first = c->current;
    c->tag = tag + std::to_string(out.size());
    out.push_back(std::move(c));
  }
  EXPECT_EQ(out.size(), static_cast<size_t>(per_slot * kWorkers))
      << "64 connections did not reach every slot";
  return out;
}

// Opens a new connection every few milliseconds and checks that it is
// served: ECHO answers its payload.
struct NewConnections {
  std::atomic<uint64_t> served{0};
  std::vector<std::string> failures;
  std::thread thread;

  void Run(uint16_t port, const std::atomic<bool>* stop) {
    uint64_t n = 0;
    while (!stop->load(std::memory_order_relaxed)) {
      std::string error;
      Context c = ConnectHiredis(port, kTimeout, &error);
      std::string payload = "new:" + std::to_string(n++);
      if (!c) {
        failures.push_back("connect: " + error);
      } else if (Reply r = Command(c.get(), {"ECHO", payload});
                 r == nullptr || r->type != REDIS_REPLY_STRING ||
                 std::string_view(r->str, r->len) != payload) {
        failures.push_back("ECHO " + payload + " -> " +
                           (r == nullptr ? std::string(c->errstr) : DescribeReply(r.get())));
      } else {
        served.fetch_add(1, std::memory_order_relaxed);
      }
      if (failures.size() >= 10) return;
      // Pacing, so that closed connections do not use up the ephemeral ports.
      std::this_thread::sleep_for(milliseconds(5));
    }
  }
};

// The RESP encoding of count ECHO commands with payloads tag:first..., and
// the payloads.
std::string EchoBatch(const std::string& tag, uint64_t first, int count,
                      std::vector<std::string>* payloads) {
  std::string out;
  for (int i = 0; i < count; i++) {
    payloads->push_back(tag + ":" + std::to_string(first + i));
    out += FormatCommand({"ECHO", payloads->back()});
  }
  return out;
}

// Reads one reply per payload and checks each equals its payload, in order.
// Returns "" or what went wrong.
std::string ExpectEchoes(Socket& s, ReplyReader& reader, const std::vector<std::string>& payloads,
                         size_t* got = nullptr) {
  for (size_t i = 0; i < payloads.size(); i++) {
    Reply r = reader.Read(s);
    if (r == nullptr) {
      return "reply " + std::to_string(i) + " of " + std::to_string(payloads.size()) +
             " missing (closed, reset or timed out)";
    }
    if (got != nullptr) ++*got;
    if (r->type != REDIS_REPLY_STRING || std::string_view(r->str, r->len) != payloads[i]) {
      return "reply " + std::to_string(i) + ": expected " + payloads[i] + ", got " +
             DescribeReply(r.get());
    }
  }
  return "";
}

// A raw connection that pipelines batches of 1,000 ECHO commands in one write
// each and checks that all replies come back in order.
struct Pipeliner {
  Socket socket;
  WorkerId first;
  std::atomic<uint64_t> batches{0};
  std::string error;
  std::thread thread;

  void Run(const std::atomic<bool>* stop) {
    ReplyReader reader;
    uint64_t n = 0;
    while (!stop->load(std::memory_order_relaxed)) {
      std::vector<std::string> payloads;
      std::string batch = EchoBatch("pipe", n, 1000, &payloads);
      n += 1000;
      if (!socket.SendAll(batch)) {
        error = "sending a batch of 1000 commands failed";
        return;
      }
      error = ExpectEchoes(socket, reader, payloads);
      if (!error.empty()) return;
      batches.fetch_add(1, std::memory_order_relaxed);
    }
  }
};

// redis-benchmark runs, one after the other, until stopped: each pipelines
// ECHO over 8 connections of its own; a connection error makes it fail.
struct BenchmarkLoop {
  int runs = 0;
  std::vector<std::string> failures;
  std::thread thread;

  void Run(uint16_t port, const std::atomic<bool>* stop) {
    while (!stop->load(std::memory_order_relaxed)) {
      RunResult r = RunCommand({REDIS_BENCHMARK_PATH, "-h", "127.0.0.1", "-p", std::to_string(port),
                                "-q", "-c", "8", "-P", "16", "-n", "200000", "ECHO", "payload"},
                               seconds(30));
      std::string all = r.out + r.err;
      if (!r.ok() || all.find("rror") != std::string::npos ||
          all.find("ECHO payload: ") == std::string::npos) {
        failures.push_back(r.Describe());
        return;
      }
      runs++;
    }
  }
};

// ---- 1. titles and spreading ----

TEST(MasterTest, TitlesAndConnectionsSpreadOverBothWorkers) {
  auto server = StartRedhubd({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(WaitUntil([&] { return Settled(server->pid()); }))
      << "children:" << DescribeChildren(server->pid());
  EXPECT_EQ(ProcessTitle(server->pid()), "redhubd: master");
  std::map<int, pid_t> workers = ServingWorkers(server->pid());
  ASSERT_EQ(workers.size(), 2u) << "children:" << DescribeChildren(server->pid());
  EXPECT_EQ(ProcessTitle(workers[0]), "redhubd: worker 0");
  EXPECT_EQ(ProcessTitle(workers[1]), "redhubd: worker 1");

  // ~20 connections, all open at once, land on both workers; each says which.
  std::vector<Context> conns;
  std::map<int, int> per_slot;
  for (int i = 0; i < 20; i++) {
    std::string error;
    Context c = ConnectHiredis(server->port(), kTimeout, &error);
    ASSERT_NE(c, nullptr) << error;
    auto who = ServedBy(c.get());
    ASSERT_TRUE(who.has_value()) << "CLIENT INFO has no worker= and pid=";
    ASSERT_TRUE(workers.count(who->slot)) << Describe(*who);
    EXPECT_EQ(who->pid, workers[who->slot]) << Describe(*who);
    per_slot[who->slot]++;
    conns.push_back(std::move(c));
  }
  EXPECT_GT(per_slot[0], 0) << "no connection served by worker 0";
  EXPECT_GT(per_slot[1], 0) << "no connection served by worker 1";
}

// ---- 2. crash isolation ----

TEST(MasterTest, KilledWorkerLosesOnlyItsOwnConnectionsAndIsRespawned) {
  auto server = StartRedhubd({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  uint16_t port = server->port();
  auto clients = ConnectAcrossWorkers(port, 3, "crash");
  ASSERT_EQ(clients.size(), 6u);

  std::atomic<bool> stop{false};
  for (auto& c : clients) {
    c->thread = std::thread([&stop, c = c.get()] { c->Run(&stop, /*reconnect=*/true); });
  }
  NewConnections fresh;
  fresh.thread = std::thread([&] { fresh.Run(port, &stop); });
  auto finish = [&] {
    stop = true;
    for (auto& c : clients) {
      if (c->thread.joinable()) c->thread.join();
    }
    if (fresh.thread.joinable()) fresh.thread.join();
  };
  // Steady load: every client has been answered a few times.
  bool steady = WaitUntil([&] {
    for (auto& c : clients) {
      if (c->replies < 20) return false;
    }
    return fresh.served > 0;
  });
  if (!steady) finish();
  ASSERT_TRUE(steady) << "the clients did not get going";

  pid_t victim = -1;
  for (auto& c : clients) {
    if (c->first.slot == 0) victim = c->first.pid;
  }
  ASSERT_GT(victim, 0);
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  Clock::time_point killed_at = Clock::now();

  // The slot serves again within 1 s: a new connection that lands on slot 0
  // is answered by a new worker.
  std::optional<WorkerId> successor;
  while (!successor && Clock::now() < killed_at + seconds(1)) {
    auto left = std::chrono::duration_cast<milliseconds>(killed_at + seconds(1) - Clock::now());
    Context c = ConnectHiredis(port, std::max(left, milliseconds(1)));
    if (!c) continue;
    auto who = ServedBy(c.get());
    if (who && who->slot == 0 && who->pid != victim) successor = who;
  }
  // Every client of the killed worker has reconnected and is served again.
  bool recovered = WaitUntil([&] {
    for (auto& c : clients) {
      if (c->first.slot == 0 && c->after_reconnect < 10 && !c->finished) {
        return false;
      }
    }
    return true;
  });
  // And the others were never disturbed, well after the kill.
  uint64_t fresh_before = fresh.served;
  bool more_fresh = WaitUntil([&] { return fresh.served > fresh_before + 10; });
  finish();

  EXPECT_TRUE(successor.has_value()) << "slot 0 did not serve again within 1 s of the kill";
  EXPECT_TRUE(recovered) << "the killed worker's clients did not recover";
  EXPECT_TRUE(more_fresh) << "new connections stopped being served";
  for (auto& c : clients) {
    SCOPED_TRACE(c->tag + " first on " + Describe(c->first));
    EXPECT_TRUE(c->wrong.empty()) << c->wrong.front();
    EXPECT_TRUE(c->reconnect_failures.empty()) << c->reconnect_failures.front();
    if (c->first.slot == 0) {
      // Only a closed connection: EOF, or a reset if a command was unread.
      ASSERT_EQ(c->closed.size(), 1u);
      EXPECT_TRUE(c->closed[0].starts_with("Server closed the connection") ||
                  c->closed[0].starts_with("Connection reset by peer"))
          << c->closed[0];
      EXPECT_GT(c->after_reconnect, 0u);
    } else {
      EXPECT_TRUE(c->closed.empty()) << c->closed.front();
    }
  }
  EXPECT_TRUE(fresh.failures.empty()) << fresh.failures.front();
  EXPECT_TRUE(server->WaitForLogLine("(pid " + std::to_string(victim) + ") killed by signal 9"))
      << "the master did not log the worker's death";
}

// ---- 3 and 4. reload and upgrade under load ----

// Runs persistent hiredis clients on both workers (plus an idle one), a
// 1,000-command pipeliner, redis-benchmark runs and a stream of new
// connections while send_signal() replaces the workers `rounds` times, one
// round every `interval`. Then checks that nothing failed, nothing was
// closed, and every persistent connection is served by a new worker.
void ReplaceWorkersUnderLoad(ServerProcess& server, const std::function<void(int)>& round,
                             int rounds, milliseconds interval) {
  uint16_t port = server.port();
  pid_t master = server.pid();
  ASSERT_TRUE(WaitUntil([&] { return Settled(master); })) << DescribeChildren(master);
  std::map<int, pid_t> before = ServingWorkers(master);
  std::set<pid_t> old_pids;
  for (auto& [slot, pid] : before) old_pids.insert(pid);

  auto clients = ConnectAcrossWorkers(port, 2, "load");
  ASSERT_EQ(clients.size(), 4u);
  EchoClient idle;
  idle.port = port;
  std::string error;
  ASSERT_TRUE(idle.Connect(&error)) << error;
  idle.first = idle.current;
  Pipeliner pipeliner;
  pipeliner.socket = Socket::Connect(port);
  ASSERT_TRUE(pipeliner.socket.valid());
  auto pipe_first = ServedBy(pipeliner.socket);
  ASSERT_TRUE(pipe_first.has_value());
  pipeliner.first = *pipe_first;

  std::atomic<bool> stop{false};
  for (auto& c : clients) {
    c->thread = std::thread([&stop, c = c.get()] { c->Run(&stop, /*reconnect=*/false); });
  }
  pipeliner.thread = std::thread([&] { pipeliner.Run(&stop); });
  NewConnections fresh;
  fresh.thread = std::thread([&] { fresh.Run(port, &stop); });
  BenchmarkLoop bench;
  bool with_benchmark = !std::string(REDIS_BENCHMARK_PATH).empty();
  if (with_benchmark) bench.thread = std::thread([&] { bench.Run(port, &stop); });
  auto finish = [&] {
    stop = true;
    for (auto& c : clients) {
      if (c->thread.joinable()) c->thread.join();
    }
    for (std::thread* t : {&pipeliner.thread, &fresh.thread, &bench.thread}) {
      if (t->joinable()) t->join();
    }
  };
  bool steady = WaitUntil([&] {
    for (auto& c : clients) {
      if (c->replies < 20) return false;
    }
    return pipeliner.batches > 0 && fresh.served > 0;
  });
  if (!steady) finish();
  ASSERT_TRUE(steady) << "the clients did not get going";

  Clock::time_point next = Clock::now();
  for (int i = 0; i < rounds && !::testing::Test::HasFatalFailure(); i++) {
    round(i);
    next += interval;
    std::this_thread::sleep_until(next);  // the cadence, not a wait for a condition
  }
  // The last replacement finishes: only new, serving workers are left.
  bool settled = WaitUntil([&] {
    if (!Settled(master)) return false;
    for (auto& [slot, pid] : ServingWorkers(master)) {
      if (old_pids.count(pid)) return false;
    }
    return true;
  });
  finish();
  ASSERT_TRUE(settled) << "workers did not settle:" << DescribeChildren(master);
  EXPECT_TRUE(server.Running()) << "the master exited";
  EXPECT_EQ(ProcessTitle(master), "redhubd: master");
  std::map<int, pid_t> after = ServingWorkers(master);
  uint64_t echoes = 0;
  for (auto& c : clients) echoes += c->replies;
  std::string log = server.Log();
  std::cerr << "load: " << echoes << " ECHO replies on 4 connections, " << pipeliner.batches
            << " batches of 1000, " << bench.runs << " redis-benchmark runs, " << fresh.served
            << " new connections; " << CountOccurrences(log, "Retiring: handing")
            << " retirements\n";

  for (auto& c : clients) {
    SCOPED_TRACE(c->tag + " first on " + Describe(c->first));
    EXPECT_TRUE(c->closed.empty()) << c->closed.front();
    EXPECT_TRUE(c->wrong.empty()) << c->wrong.front();
    EXPECT_GT(c->replies, 20u);
  }
  EXPECT_TRUE(pipeliner.error.empty()) << pipeliner.error;
  EXPECT_GT(pipeliner.batches, 0u);
  EXPECT_TRUE(fresh.failures.empty()) << fresh.failures.front();
  EXPECT_GT(fresh.served, 0u);
  if (with_benchmark) {
    EXPECT_TRUE(bench.failures.empty()) << bench.failures.front();
    EXPECT_GT(bench.runs, 0);
  }

  // Every persistent connection, the idle one too, is still open and now
  // served by a new worker of its slot.
  std::vector<std::pair<std::string, std::optional<WorkerId>>> now;
  for (auto& c : clients) now.emplace_back(c->tag, ServedBy(c->ctx.get()));
  now.emplace_back("idle", ServedBy(idle.ctx.get()));
  now.emplace_back("pipeliner", ServedBy(pipeliner.socket));
  std::vector<WorkerId> firsts;
  for (auto& c : clients) firsts.push_back(c->first);
  firsts.push_back(idle.first);
  firsts.push_back(pipeliner.first);
  for (size_t i = 0; i < now.size(); i++) {
    SCOPED_TRACE(now[i].first + " first on " + Describe(firsts[i]));
    ASSERT_TRUE(now[i].second.has_value()) << "the connection does not answer CLIENT INFO";
    const WorkerId& w = *now[i].second;
    EXPECT_NE(w.pid, firsts[i].pid) << "still served by its first worker";
    EXPECT_EQ(w.slot, firsts[i].slot) << "moved to another slot";
    EXPECT_EQ(w.pid, after[w.slot]) << "not served by the slot's current worker";
  }
}

TEST(MasterTest, ReloadEvery500MsUnderLoadLosesNothing) {
  auto server = StartRedhubd({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  constexpr int kRounds = 20;  // 10 s
  ReplaceWorkersUnderLoad(
      *server, [&](int) { ASSERT_TRUE(server->Signal(SIGHUP)); }, kRounds, milliseconds(500));
  std::string log = server->Log();
  // Every SIGHUP was a reload (500 ms apart, none coalesced), and, nginx's
  // rule, every reload replaced the workers, changed settings or not.
  EXPECT_EQ(CountOccurrences(log, "Reloading configuration"), static_cast<size_t>(kRounds)) << log;
  EXPECT_EQ(CountOccurrences(log, "Reloaded: replacing workers"), static_cast<size_t>(kRounds));
  // A reload during the previous one's roll starts the roll over, so there
  // are between one and two replacements per reload; each replaced worker
  // handed its connections over and exited cleanly (ReplaceWorkersUnderLoad
  // saw only the last two left), none died.
  size_t replaced = CountOccurrences(log, "ready, replacing the previous one");
  EXPECT_GE(replaced, static_cast<size_t>(kRounds));
  EXPECT_LE(replaced, 2u * kRounds);
  EXPECT_EQ(CountOccurrences(log, "Retiring: handing connections"), replaced);
  EXPECT_EQ(CountOccurrences(log, " while retiring"), 0u) << log;
  // Signal() told the destructor not to check the exit; check it here.
  int status = server->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST(MasterTest, UpgradeEverySecondUnderLoadLosesNothing) {
  auto server = StartRedhubd({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  pid_t master = server->pid();
  constexpr int kRounds = 10;  // 10 s
  ReplaceWorkersUnderLoad(
      *server,
      [&](int i) {
        // Each upgrade re-executes the master and replaces both workers; the
        // next one waits for that (an upgrade is refused while a worker is
        // starting).
        std::map<int, pid_t> before = ServingWorkers(master);
        ASSERT_TRUE(server->Signal(SIGUSR2));
        bool done = WaitUntil([&] {
          if (!Settled(master) ||
              CountOccurrences(server->Log(), "Upgraded in place") < static_cast<size_t>(i + 1)) {
            return false;
          }
          for (auto& [slot, pid] : ServingWorkers(master)) {
            if (before[slot] == pid) return false;
          }
          return true;
        });
        ASSERT_TRUE(done) << "upgrade " << i + 1
                          << " did not complete:" << DescribeChildren(master);
      },
      kRounds, milliseconds(1000));
  EXPECT_EQ(server->pid(), master);
  std::string log = server->Log();
  EXPECT_EQ(CountOccurrences(log, "Upgraded in place"), static_cast<size_t>(kRounds));
  EXPECT_EQ(log.find("Upgrade refused"), std::string::npos) << log;
  EXPECT_EQ(log.find("Upgrade failed"), std::string::npos) << log;
  int status = server->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

// A connection inside MULTI has its queue in its worker's memory: at a
// reload it stays with that worker until the transaction ends (EXEC runs
// all of it there), then moves to the successor at its next request.
TEST(MasterTest, AConnectionInMultiFinishesItsTransactionBeforeItMoves) {
  auto server = StartRedhubd({"--workers", "1"});
  ASSERT_NE(server, nullptr);
  Socket s = Socket::Connect(server->port());
  ASSERT_TRUE(s.valid());
  auto first = ServedBy(s);
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(DescribeReply(SocketCommand(s, {"MULTI"}).get()), "+OK");
  ASSERT_EQ(DescribeReply(SocketCommand(s, {"SET", "k", "v"}).get()), "+QUEUED");
  ASSERT_TRUE(server->Signal(SIGHUP));
  // The successor serves new connections; the old worker stays for ours.
  EXPECT_TRUE(WaitUntil([&] {
    Context c = ConnectHiredis(server->port());
    auto who = c ? ServedBy(c.get()) : std::nullopt;
    return who && who->pid != first->pid;
  })) << "no new worker serves";
  EXPECT_TRUE(ProcessExists(first->pid)) << "the old worker left with a transaction open";
  ASSERT_EQ(DescribeReply(SocketCommand(s, {"INCR", "n"}).get()), "+QUEUED");
  EXPECT_EQ(DescribeReply(SocketCommand(s, {"EXEC"}).get()), "*2 [+OK, :1]");
  // Its next request boundary moves it; the old worker then leaves.
  EXPECT_TRUE(WaitUntil([&] { return !ProcessExists(first->pid); }))
      << "the old worker did not leave";
  auto now = ServedBy(s);
  ASSERT_TRUE(now.has_value());
  EXPECT_NE(now->pid, first->pid) << "the connection was not handed over";
  EXPECT_EQ(DescribeReply(SocketCommand(s, {"GET", "k"}).get()), "$1 v");
  int status = server->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

// A client pipelining 1,000 commands while its worker retires: the commands
// trickle in before, during and after the handoff, and all 1,000 replies come
// back in order.
TEST(MasterTest, PipelineOf1000CommandsSurvivesItsWorkerRetiring) {
  auto server = StartRedhubd({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  Socket s = Socket::Connect(server->port());
  ASSERT_TRUE(s.valid());
  auto first = ServedBy(s);
  ASSERT_TRUE(first.has_value());

  std::vector<std::string> payloads;
  std::string all = EchoBatch("trickle", 0, 1000, &payloads);
  // Byte offsets of the command boundaries, to send whole commands.
  std::vector<size_t> ends;
  for (size_t i = 0, at = 0; i < payloads.size(); i++) {
    at += FormatCommand({"ECHO", payloads[i]}).size();
    ends.push_back(at);
  }
  ASSERT_TRUE(s.SendAll(std::string_view(all).substr(0, ends[299])));
  ASSERT_TRUE(server->Signal(SIGHUP));
  // 10 commands a millisecond until the worker says it is retiring, then the
  // rest: some commands are served before the handoff, some by the successor.
  size_t sent = 300;
  Clock::time_point deadline = Clock::now() + kTimeout;
  bool retiring = false;
  while (!retiring && Clock::now() < deadline) {
    retiring = LogHasLineOf(server->Log(), first->pid, "Retiring");
    if (sent < 990) {
      size_t upto = sent + 10;
      ASSERT_TRUE(
          s.SendAll(std::string_view(all).substr(ends[sent - 1], ends[upto - 1] - ends[sent - 1])));
      sent = upto;
    }
    std::this_thread::sleep_for(milliseconds(1));
  }
  ASSERT_TRUE(retiring) << "worker " << first->pid << " never retired";
  ASSERT_TRUE(s.SendAll(std::string_view(all).substr(ends[sent - 1])));
  ReplyReader reader;
  size_t got = 0;
  std::string error = ExpectEchoes(s, reader, payloads, &got);
  EXPECT_EQ(error, "") << "after " << got << " replies";
  auto now = ServedBy(s);
  ASSERT_TRUE(now.has_value());
  EXPECT_NE(now->pid, first->pid) << "the connection was not handed over";
  EXPECT_EQ(now->slot, first->slot);
  int status = server->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

// A client that has not read its reply keeps its worker retiring (a
// connection moves only once its replies are out) while a second reload or
// upgrade retires the successor too. The connection must still reach the
// newest worker: the middle one adopts it and passes it on, together with
// the half command the client sent meanwhile.
class UnreadReplyTest : public ::testing::TestWithParam<int> {};

TEST_P(UnreadReplyTest, ConnectionFollowsTwoReplacementsInARow) {
  const int sig = GetParam();
  auto server = StartRedhubd({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  pid_t master = server->pid();
  ASSERT_TRUE(WaitUntil([&] { return Settled(master); })) << DescribeChildren(master);
  // 16 MB: more than the output soft limit (8 MB) on top of what the
  // kernel's buffers take, so the worker keeps some and pauses the client.
  const std::string big(16 << 20, 'v');
  Context setter = ConnectHiredis(server->port());
  ASSERT_NE(setter, nullptr);
  Reply ok = Command(setter.get(), {"SET", "big", big});
  ASSERT_EQ(DescribeReply(ok.get()), "+OK");
  Socket s = Socket::Connect(server->port(), kTimeout, nullptr, /*recv_buffer=*/4096);
  ASSERT_TRUE(s.valid());
  auto first = ServedBy(s);
  ASSERT_TRUE(first.has_value());
  const int slot = first->slot;
  ASSERT_TRUE(s.SendAll(FormatCommand({"GET", "big"})));
  ASSERT_TRUE(WaitUntil([&] {
    return InfoInt(setter.get(), "clients", "clients_paused_by_backpressure") == 1;
  })) << "the reply did not back up";
  std::string command = FormatCommand({"ECHO", "half and half"});
  ASSERT_TRUE(s.SendAll(command.substr(0, command.size() / 2)));
  // Replaced: new workers in every slot, each reported ready to the master
  // (a worker has its title before it is ready, and the master refuses an
  // upgrade while a worker is still starting).
  auto replaced = [&](const std::set<pid_t>& gone) {
    return WaitUntil([&] {
      std::map<int, pid_t> now = ServingWorkers(master);
      if (now.size() != kWorkers) return false;
      std::string log = server->Log();
      for (auto& [slot, pid] : now) {
        if (gone.count(pid)) return false;
        if (log.find("(pid " + std::to_string(pid) + ") ready") == std::string::npos) return false;
      }
      return true;
    });
  };
  std::map<int, pid_t> before = ServingWorkers(master);
  ASSERT_TRUE(server->Signal(sig));
  ASSERT_TRUE(replaced({before[0], before[1]})) << DescribeChildren(master);
  ASSERT_TRUE(WaitUntil([&] { return LogHasLineOf(server->Log(), first->pid, "Retiring"); }));
  ASSERT_TRUE(ProcessExists(first->pid)) << "the worker did not wait for its reply to be read";
  pid_t middle = ServingWorkers(master)[slot];
  std::map<int, pid_t> second = ServingWorkers(master);
  ASSERT_TRUE(server->Signal(sig));
  ASSERT_TRUE(replaced({before[0], before[1], second[0], second[1]})) << DescribeChildren(master);
  ASSERT_TRUE(WaitUntil([&] { return LogHasLineOf(server->Log(), middle, "Retiring"); }));

  // The client reads its reply: the first worker hands the connection, with
  // the half command, to the middle worker, which passes it on to the
  // newest. The rest of the command is answered there.
  std::string header = "$" + std::to_string(big.size()) + "\r\n";
  std::string reply = s.RecvN(header.size() + big.size() + 2, seconds(20));
  ASSERT_EQ(reply.size(), header.size() + big.size() + 2) << "the reply was cut short";
  EXPECT_TRUE(reply == header + big + "\r\n") << "the reply came back wrong";
  ASSERT_TRUE(s.SendAll(command.substr(command.size() / 2)));
  ReplyReader reader;
  Reply r = reader.Read(s);
  EXPECT_EQ(DescribeReply(r.get()), "$13 half and half");
  ASSERT_TRUE(WaitUntil([&] { return Settled(master); }))
      << "retiring workers did not finish:" << DescribeChildren(master);
  auto now = ServedBy(s);
  ASSERT_TRUE(now.has_value()) << "the connection was closed";
  EXPECT_EQ(now->slot, slot);
  EXPECT_EQ(now->pid, ServingWorkers(master)[slot]) << "not served by the slot's newest worker";
  EXPECT_EQ(server->Log().find("refused client"), std::string::npos) << server->Log();
  int status = server->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

INSTANTIATE_TEST_SUITE_P(Signals, UnreadReplyTest, ::testing::Values(SIGHUP, SIGUSR2),
                         [](const auto& info) {
                           return std::string(info.param == SIGHUP ? "Reload" : "Upgrade");
                         });

// ---- 5. SIGTERM under load ----

// "Closed client id=<id> ... after <n> commands" lines of the workers' log:
// commands each connection ran before the server closed it.
std::map<int64_t, int64_t> CommandsPerClosedClient(const std::string& log) {
  std::map<int64_t, int64_t> out;
  static constexpr std::string_view kLine = "Closed client id=";
  for (size_t at = log.find(kLine); at != std::string::npos; at = log.find(kLine, at + 1)) {
    size_t eol = log.find('\n', at);
    std::string_view line(log.data() + at, (eol == std::string::npos ? log.size() : eol) - at);
    auto id = FieldAfter(line, "id=");
    auto commands = FieldAfter(line, " after ");
    if (id && commands) out[*id] = *commands;
  }
  return out;
}

// A client that keeps sending while it reads (an async client with many
// commands in flight): INCRs of one key, pipelined without pause by one
// thread, their replies read by another, each checked to be the count so far.
// Its receive buffer is 4 KB, so the server's replies back up in the
// server's kernel.
class StreamingIncrClient {
 public:
  // Connects and learns its connection id; false if that failed.
  bool Start(uint16_t port, const std::string& key) {
    socket_ = Socket::Connect(port, kTimeout, nullptr, /*recv_buffer=*/4096);
    if (!socket_.valid()) return false;
    Reply id = SocketCommand(socket_, {"CLIENT", "ID"});
    if (id == nullptr || id->type != REDIS_REPLY_INTEGER) return false;
    id_ = id->integer;
    std::string request =
        "*2\r\n$4\r\nINCR\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n";
    for (int i = 0; i < 64; i++) batch_ += request;
    writer_ = std::thread([this] { Write(); });
    reader_ = std::thread([this] { Read(); });
    return true;
  }
  // Waits for the reader to end (the server closed) or stops it at once.
  void Finish(bool wait_for_close) {
    if (!wait_for_close) reading_ = false;
    if (reader_.joinable()) reader_.join();
    reading_ = false;
    if (writer_.joinable()) writer_.join();
    socket_.Close();
  }
  ~StreamingIncrClient() { Finish(false); }

  int64_t id() const { return id_; }
  uint64_t answered() const { return answered_; }
  bool reading() const { return reading_; }
  // After Finish(): how the connection ended, and the first wrong reply.
  bool eof() const { return eof_; }
  int read_error() const { return read_error_; }
  const std::string& wrong() const { return wrong_; }

 private:
  void Write() {
    std::string_view rest = batch_;
    while (reading_) {
      if (rest.empty()) rest = batch_;
      pollfd p{socket_.fd(), POLLOUT, 0};
      if (poll(&p, 1, 50) < 0 && errno != EINTR) return;
      ssize_t n = socket_.SendSome(rest);
      if (n < 0) return;  // closed by the server
      rest.remove_prefix(static_cast<size_t>(n));
    }
  }
  void Read() {
    ReplyReader replies;
    char buf[4096];
    while (reading_) {
      ssize_t n = socket_.RecvOnce(buf, sizeof(buf), milliseconds(100), &read_error_);
      if (n == -2) continue;  // a pause: check whether to stop
      if (n == 0) eof_ = true;
      if (n <= 0) break;
      replies.Feed(std::string_view(buf, static_cast<size_t>(n)));
      while (Reply r = replies.Next()) {
        uint64_t expected = answered_ + 1;
        if (r->type != REDIS_REPLY_INTEGER || r->integer != static_cast<long long>(expected)) {
          wrong_ = "reply " + std::to_string(expected) + " is " + DescribeReply(r.get());
          reading_ = false;
          return;
        }
        answered_++;
      }
    }
    reading_ = false;
  }

  Socket socket_;
  int64_t id_ = 0;
  std::string batch_;
  std::thread writer_;
  std::thread reader_;
  std::atomic<bool> reading_{true};
  std::atomic<uint64_t> answered_{0};
  bool eof_ = false;
  int read_error_ = 0;
  std::string wrong_;
};

// Removes a segment kept with --shm-keep however the test ends.
struct SegmentGuard {
  std::string name;
  ~SegmentGuard() { shm::Store::Remove(name); }
};

// The upgrade state a previous binary wrote after a roll still listed the
// workers it had reaped, with their closed control channels. Such an entry
// names a worker that is gone: it is not adopted, and the new image serves
// on the inherited sockets with a worker of its own. Before, the new image
// refused the whole state and exited, and with it the daemon (SIGUSR2 back
// to this binary after a rollback took the service down).
TEST(MasterTest, AnInheritedStateListingAReapedWorkerIsServed) {
  const std::string shm_name =
      "/redhub-it-stale-" + std::to_string(getpid()) + "-" + std::to_string(PickFreePort());
  SegmentGuard guard{shm_name};
  {  // A kept segment with a key, as an upgrade finds the store.
    auto first = StartRedhubd({"--workers", "1", "--shm-name", shm_name, "--shm-keep"});
    ASSERT_NE(first, nullptr);
    Context c = ConnectHiredis(first->port());
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(DescribeReply(Command(c.get(), {"SET", "k", "kept"}).get()), "+OK");
    EXPECT_EQ(first->Stop(), 0);
  }
  // The previous image's listener, inherited across execve (no CLOEXEC),
  // non-blocking as redhubd makes its listeners.
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(listener, 128), 0);
  socklen_t len = sizeof(a);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const uint16_t port = ntohs(a.sin_port);
  // A descriptor number nothing has open (the daemon opens a handful
  // before it reads the state), for the reaped worker's channel.
  const int closed_fd = 900;
  ASSERT_EQ(fcntl(closed_fd, F_GETFD), -1);
  const std::string state = "1;7;" + std::to_string(port) + ";;0:" + std::to_string(listener) +
                            ",|;0:" + std::to_string(0x3ffffff0) + ":" + std::to_string(closed_fd) +
                            ":6|";
  ServerProcess server("stale-state");
  server.set_env({"REDHUB_INHERIT=" + state});
  server.set_port(port);
  ASSERT_TRUE(
      server.Start(REDHUBD_PATH, {"--workers", "1", "--port", std::to_string(port), "--shm-name",
                                  shm_name, "--shm-keep", "--admin-port", "0"}));
  close(listener);  // the daemon has its copy
  ASSERT_TRUE(server.WaitReady()) << server.Log();
  EXPECT_TRUE(server.WaitForLogLine("is gone").has_value()) << server.Log();
  Context c = ConnectHiredis(port);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", "k"}).get()), "$4 kept");
  EXPECT_EQ(server.Stop(), 0);
  shm::CounterArea::Remove(shm_name + "-stats");
}

// Each client INCRs a key of its own, one command at a time, pipelined
// 100 at a time or streaming (StreamingIncrClient), while SIGTERM stops the daemon. What ran is
// read back from the store (kept with --shm-keep, served by a second daemon), not from the server's
// own account: each key must equal the replies its client got.
TEST(MasterTest, SigtermUnderLoadAnswersEveryReceivedCommandAndExitsZero) {
  const std::string shm_name =
      "/redhub-it-term-" + std::to_string(getpid()) + "-" + std::to_string(PickFreePort());
  SegmentGuard guard{shm_name};
  auto server = StartRedhubd(
      {"--workers", "2", "--drain-timeout", "5", "--shm-name", shm_name, "--shm-keep"});
  ASSERT_NE(server, nullptr);
  pid_t master = server->pid();
  uint16_t port = server->port();
  ASSERT_TRUE(WaitUntil([&] { return Settled(master); })) << DescribeChildren(master);
  std::vector<pid_t> workers = ChildPids(master);

  struct IncrClient {
    Context ctx;
    std::string key;
    WorkerId first;
    std::atomic<uint64_t> answered{0};
    std::atomic<bool> finished{false};
    std::string wrong;
    std::thread thread;
  };
  std::vector<std::unique_ptr<IncrClient>> clients;
  std::map<int, int> per_slot;
  for (int i = 0; i < 200 && clients.size() < 6; i++) {
    auto c = std::make_unique<IncrClient>();
    c->ctx = ConnectHiredis(port);
    ASSERT_NE(c->ctx, nullptr);
    std::optional<WorkerId> w = ServedBy(c->ctx.get());
    ASSERT_TRUE(w.has_value());
    if (per_slot[w->slot] == 3) continue;
    per_slot[w->slot]++;
    c->first = *w;
    c->key = "term:" + std::to_string(clients.size());
    clients.push_back(std::move(c));
  }
  ASSERT_EQ(clients.size(), 6u) << "could not get three connections on each worker";

  // Two streaming clients (requests always in flight, so the drain finds
  // them inside a request) and a pipelining one: batches of 100.
  StreamingIncrClient streams[2];
  for (int i = 0; i < 2; i++) {
    ASSERT_TRUE(streams[i].Start(port, "term:stream" + std::to_string(i)));
  }
  Socket pipe = Socket::Connect(port);
  ASSERT_TRUE(pipe.valid());
  std::atomic<uint64_t> pipe_answered{0};
  std::string pipe_error;
  std::string batch;
  for (int i = 0; i < 100; i++) batch += FormatCommand({"INCR", "term:pipe"});

  std::atomic<bool> stop{false};
  for (auto& c : clients) {
    c->thread = std::thread([&stop, c = c.get()] {
      while (!stop) {
        Reply r = Command(c->ctx.get(), {"INCR", c->key});
        if (!r) break;  // closed by the server
        if (r->type != REDIS_REPLY_INTEGER ||
            r->integer != static_cast<long long>(c->answered + 1)) {
          c->wrong = "reply " + std::to_string(c->answered + 1) + " is " + DescribeReply(r.get());
          break;
        }
        c->answered++;
      }
      c->finished = true;
    });
  }
  std::thread pipe_thread([&] {
    ReplyReader reader;
    while (!stop) {
      if (!pipe.SendAll(batch)) return;  // closed by the server
      for (int i = 0; i < 100; i++) {
        Reply r = reader.Read(pipe);
        if (!r) return;  // closed: the rest did not run, as the store will tell
        if (r->type != REDIS_REPLY_INTEGER ||
            r->integer != static_cast<long long>(pipe_answered + 1)) {
          pipe_error =
              "reply " + std::to_string(pipe_answered + 1) + " is " + DescribeReply(r.get());
          return;
        }
        pipe_answered++;
      }
    }
  });
  auto finish = [&] {
    stop = true;
    for (auto& c : clients) {
      if (c->thread.joinable()) c->thread.join();
    }
    if (pipe_thread.joinable()) pipe_thread.join();
  };
  bool steady = WaitUntil([&] {
    for (auto& c : clients) {
      if (c->answered < 20) return false;
    }
    return pipe_answered > 300 && streams[0].answered() > 300 && streams[1].answered() > 300;
  });
  if (!steady) finish();
  ASSERT_TRUE(steady) << "the clients did not get going";

  ASSERT_TRUE(server->Signal(SIGTERM));
  int status = 0;
  bool exited = server->WaitExit(seconds(5), &status);  // the drain timeout
  // Every client's connection ends: the server closes them at request
  // boundaries.
  bool all_closed = WaitUntil([&] {
    for (auto& c : clients) {
      if (!c->finished) return false;
    }
    return true;
  });
  finish();
  for (auto& st : streams) st.Finish(/*wait_for_close=*/true);
  ASSERT_TRUE(exited) << "still running 5 s after SIGTERM";
  EXPECT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(all_closed);
  // No process left behind.
  EXPECT_TRUE(ChildPids(master).empty());
  for (pid_t w : workers) EXPECT_FALSE(ProcessExists(w)) << "worker " << w << " still exists";
  EXPECT_FALSE(Socket::Connect(port, milliseconds(1000)).valid()) << "something still listens";

  // Every INCR the server ran was answered to its client: the kept store,
  // read by a second daemon, holds exactly the replies each client got.
  auto reader = StartRedhubd({"--workers", "1", "--shm-name", shm_name, "--shm-keep"});
  ASSERT_NE(reader, nullptr);
  Context c = ConnectHiredis(reader->port());
  ASSERT_NE(c, nullptr);
  auto count = [&](const std::string& key) {
    Reply r = Command(c.get(), {"GET", key});
    if (!r) return std::string("(no reply)");
    return r->type == REDIS_REPLY_NIL ? std::string("0") : DescribeReply(r.get()).substr(3);
  };
  for (auto& cl : clients) {
    SCOPED_TRACE(cl->key + " first on " + Describe(cl->first));
    EXPECT_TRUE(cl->wrong.empty()) << cl->wrong;
    EXPECT_EQ(count(cl->key), std::to_string(cl->answered))
        << "the server ran INCRs whose replies never arrived (or lost some)";
  }
  for (int i = 0; i < 2; i++) {
    EXPECT_EQ(streams[i].wrong(), "");
    EXPECT_EQ(count("term:stream" + std::to_string(i)), std::to_string(streams[i].answered()))
        << "the server ran streamed INCRs whose replies never arrived";
  }
  EXPECT_EQ(pipe_error, "");
  EXPECT_EQ(count("term:pipe"), std::to_string(pipe_answered))
      << "the server ran pipelined INCRs whose replies never arrived";
}

// Such a client has requests in the server's kernel at any request boundary.
// Closing a socket with unread input makes the kernel send a reset and throw
// away the replies still in its send queue: commands that ran would lose
// their answers. The server must send its last reply, then the close, and
// discard what comes after.
TEST(MasterTest, SigtermLetsAStreamingClientReadEveryReplyOfWhatRan) {
  auto server = StartRedhubd({"--workers", "1", "--drain-timeout", "5", "--loglevel", "verbose"});
  ASSERT_NE(server, nullptr);
  StreamingIncrClient client;
  ASSERT_TRUE(client.Start(server->port(), "stream"));
  bool steady = WaitUntil([&] { return client.answered() >= 5000 || !client.reading(); });
  if (steady && client.reading()) {
    EXPECT_TRUE(server->Signal(SIGTERM));
    client.Finish(/*wait_for_close=*/true);  // the server lingers until the client closes
  } else {
    client.Finish(/*wait_for_close=*/false);
  }
  int status = 0;
  bool exited = server->WaitExit(seconds(10), &status);
  ASSERT_TRUE(steady) << "the client did not get going";
  EXPECT_EQ(client.wrong(), "");
  EXPECT_TRUE(client.eof()) << "the connection ended with " << strerror(client.read_error())
                            << " instead of a close after the last reply";
  ASSERT_TRUE(exited);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  std::map<int64_t, int64_t> ran = CommandsPerClosedClient(server->Log());
  ASSERT_TRUE(ran.count(client.id())) << "no close logged for the client";
  EXPECT_EQ(static_cast<uint64_t>(ran[client.id()]), client.answered() + 1)  // + CLIENT ID
      << "the server ran commands whose replies never arrived";
}

// On reload such a client is never at a request boundary when the worker
// looks: it must move to the new worker with its partial request, not wait
// for the drain timeout and be closed.
TEST(MasterTest, ReloadMovesAStreamingClientWithoutAGap) {
  auto server = StartRedhubd({"--workers", "2", "--drain-timeout", "30"});
  ASSERT_NE(server, nullptr);
  pid_t master = server->pid();
  ASSERT_TRUE(WaitUntil([&] { return Settled(master); })) << DescribeChildren(master);
  std::vector<pid_t> old_workers = ChildPids(master);
  StreamingIncrClient client;
  ASSERT_TRUE(client.Start(server->port(), "reload-stream"));
  ASSERT_TRUE(WaitUntil([&] { return client.answered() >= 5000 || !client.reading(); }));
  ASSERT_TRUE(server->Signal(SIGHUP));
  // Well within the 30 s drain timeout: the old workers leave as soon as
  // their connections have moved.
  bool retired = WaitUntil([&] {
    for (pid_t w : old_workers) {
      if (ProcessExists(w)) return false;
    }
    return Settled(master);
  });
  uint64_t after_reload = client.answered();
  bool serving =
      WaitUntil([&] { return client.answered() >= after_reload + 5000 || !client.reading(); });
  bool still_open = client.reading();
  client.Finish(/*wait_for_close=*/false);
  EXPECT_TRUE(retired) << "old workers still there:" << DescribeChildren(master);
  EXPECT_EQ(client.wrong(), "");
  EXPECT_TRUE(still_open) << "the connection ended ("
                          << (client.eof() ? "closed" : strerror(client.read_error())) << ")";
  EXPECT_TRUE(serving) << "no replies after the reload";
  EXPECT_EQ(server->Stop(), 0);
}

// QUIT after a large reply the client has not read yet, and more bytes sent
// after the QUIT: the server closes once the reply is in its kernel, with
// those bytes unread. A plain close() would reset the connection and throw
// away the part of the reply still queued; the client must get all of it,
// then +OK, then the close.
TEST(MasterTest, QuitAfterALargeReplyLetsTheClientReadAllOfIt) {
  auto server = StartRedhubd({"--workers", "1"});
  ASSERT_NE(server, nullptr);
  const std::string big(1 << 20, 'q');
  Context setter = ConnectHiredis(server->port());
  ASSERT_NE(setter, nullptr);
  ASSERT_EQ(DescribeReply(Command(setter.get(), {"SET", "big", big}).get()), "+OK");
  Socket s = Socket::Connect(server->port(), kTimeout, nullptr, /*recv_buffer=*/4096);
  ASSERT_TRUE(s.valid());
  ASSERT_TRUE(s.SendAll(FormatCommand({"GET", "big"}) + FormatCommand({"QUIT"})));
  // The first bytes of the reply: both commands have been read and run.
  std::string got = s.RecvN(1000);
  ASSERT_EQ(got.size(), 1000u);
  ASSERT_TRUE(s.SendAll(FormatCommand({"PING"})));  // never answered: after QUIT
  std::string rest;
  EXPECT_TRUE(s.WaitForClose(kTimeout, &rest));
  got += rest;
  std::string expected = "$" + std::to_string(big.size()) + "\r\n" + big + "\r\n+OK\r\n";
  EXPECT_EQ(got.size(), expected.size()) << "the reply was cut short";
  EXPECT_TRUE(got == expected) << "the reply came back wrong";
  int err = 0;
  char byte;
  EXPECT_EQ(s.RecvOnce(&byte, 1, kTimeout, &err), 0) << "not a clean close: " << strerror(err);
}

// A reload while one client is in the middle of sending a large request:
// its partial request is too big to travel with it, so it stays until the
// request has arrived and run, but the other connections of its worker
// move at once.
TEST(MasterTest, ReloadMovesOtherClientsWhileOneIsUploadingALargeValue) {
  auto server = StartRedhubd({"--workers", "1", "--drain-timeout", "60"});
  ASSERT_NE(server, nullptr);
  Socket idle = Socket::Connect(server->port());
  ASSERT_TRUE(idle.valid());
  auto first = ServedBy(idle);
  ASSERT_TRUE(first.has_value());
  const std::string value(1 << 20, 'u');
  std::string set = FormatCommand({"SET", "upload", value});
  Socket uploader = Socket::Connect(server->port());
  ASSERT_TRUE(uploader.valid());
  const size_t half = set.size() / 2;
  ASSERT_TRUE(uploader.SendAll(std::string_view(set).substr(0, half)));
  // The worker holds the first half (CLIENT LIST's qbuf).
  Context watcher = ConnectHiredis(server->port());
  ASSERT_NE(watcher, nullptr);
  ASSERT_TRUE(WaitUntil([&] {
    Reply list = Command(watcher.get(), {"CLIENT", "LIST"});
    if (list == nullptr || list->type != REDIS_REPLY_STRING) return false;
    std::string text(list->str, list->len);
    for (size_t at = text.find("qbuf="); at != std::string::npos; at = text.find("qbuf=", at + 1)) {
      if (std::strtoull(text.c_str() + at + 5, nullptr, 10) >= half) return true;
    }
    return false;
  })) << "the first half did not arrive";
  ASSERT_TRUE(server->Signal(SIGHUP));
  // Well within the 60 s drain timeout.
  bool moved = WaitUntil([&] {
    auto now = ServedBy(idle);
    return now.has_value() && now->pid != first->pid;
  });
  EXPECT_TRUE(moved) << "the idle client stayed on the retiring worker";
  ASSERT_TRUE(uploader.SendAll(std::string_view(set).substr(half)));
  ReplyReader reader;
  EXPECT_EQ(DescribeReply(reader.Read(uploader).get()), "+OK");
  auto after = ServedBy(uploader);
  ASSERT_TRUE(after.has_value()) << "the uploader was closed";
  EXPECT_TRUE(WaitUntil([&] { return !ProcessExists(first->pid); }))
      << "the old worker did not leave after the upload ran";
  Context check = ConnectHiredis(server->port());
  ASSERT_NE(check, nullptr);
  Reply r = Command(check.get(), {"STRLEN", "upload"});
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->integer, static_cast<long long>(value.size()));
  EXPECT_EQ(server->Stop(), 0);
}

// A reload with thousands of idle connections (a client pool): every one
// moves to the new worker at once, none is dropped. The handoff channel
// holds a few hundred messages: offers beyond that must wait for room, and
// the successor's answers must never be lost to a full channel.
TEST(MasterTest, ReloadMovesThousandsOfIdleConnectionsPromptly) {
  rlimit files{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &files), 0);
  constexpr size_t kConnections = 3000;
  rlim_t want = std::min<rlim_t>(files.rlim_max, 8192);
  if (want < kConnections + 200) GTEST_SKIP() << "open files limited to " << files.rlim_max;
  rlimit raised = files;
  raised.rlim_cur = want;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &raised), 0);
  struct Restore {
    rlimit files;
    ~Restore() { setrlimit(RLIMIT_NOFILE, &files); }
  } restore{files};

  auto server = StartRedhubd({"--workers", "1", "--drain-timeout", "60"});
  ASSERT_NE(server, nullptr);
  pid_t master = server->pid();
  ASSERT_TRUE(WaitUntil([&] { return ServingWorkers(master).size() == 1; }));
  pid_t old_worker = ServingWorkers(master).begin()->second;
  std::vector<Socket> pool;
  for (size_t i = 0; i < kConnections; i++) {
    pool.push_back(Socket::Connect(server->port()));
    ASSERT_TRUE(pool.back().valid()) << "connection " << i;
  }
  Context info = ConnectHiredis(server->port());
  ASSERT_NE(info, nullptr);
  ASSERT_TRUE(WaitUntil([&] {
    auto n = InfoInt(info.get(), "clients", "connected_clients");
    return n && *n == static_cast<int64_t>(kConnections) + 1;
  })) << "not all connections were accepted";
  info.reset();

  ASSERT_TRUE(server->Signal(SIGHUP));
  // Well within the 60 s drain timeout.
  EXPECT_TRUE(WaitUntil([&] { return !ProcessExists(old_worker); }))
      << "the retiring worker still holds connections";
  // Every connection is open and served.
  const std::string ping = FormatCommand({"PING"});
  size_t answered = 0;
  for (Socket& s : pool) {
    if (s.SendAll(ping) && s.RecvN(7) == "+PONG\r\n") answered++;
  }
  EXPECT_EQ(answered, kConnections);
  EXPECT_EQ(server->Stop(), 0);
}

// ---- 6. a bad configuration on reload ----

TEST(MasterTest, BadConfigOnReloadKeepsServingAndIsLogged) {
  const char* tmp = getenv("TMPDIR");
  std::string path =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/redhub-it-conf-XXXXXX.conf";
  int fd = mkstemps(path.data(), 5);
  ASSERT_GE(fd, 0);
  close(fd);
  struct Remove {
    std::string path;
    ~Remove() { unlink(path.c_str()); }
  } remove{path};
  auto write_config = [&](const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
    return out.good();
  };
  ASSERT_TRUE(write_config("maxclients = 1000\n"));

  auto server = StartRedhubd({"--workers", "2", "--config", path});
  ASSERT_NE(server, nullptr);
  pid_t master = server->pid();
  ASSERT_TRUE(WaitUntil([&] { return Settled(master); })) << DescribeChildren(master);
  std::map<int, pid_t> before = ServingWorkers(master);
  Context c = ConnectHiredis(server->port());
  ASSERT_NE(c, nullptr);

  ASSERT_TRUE(write_config("maxclients = many\n"));
  ASSERT_TRUE(server->Signal(SIGHUP));
  auto refused = server->WaitForLogLine("Reload refused");
  ASSERT_TRUE(refused.has_value()) << server->Log();
  EXPECT_NE(refused->find("invalid"), std::string::npos) << *refused;
  EXPECT_NE(server->Log().find("maxclients"), std::string::npos)
      << "the error does not name the bad setting";

  // Still serving, on the old connection and on new ones, with the same
  // workers.
  Reply r = Command(c.get(), {"ECHO", "still here"});
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(DescribeReply(r.get()), "$10 still here");
  for (int i = 0; i < 4; i++) {
    Context fresh = ConnectHiredis(server->port());
    ASSERT_NE(fresh, nullptr);
    Reply pong = Command(fresh.get(), {"PING"});
    EXPECT_EQ(DescribeReply(pong.get()), "+PONG");
  }
  EXPECT_TRUE(server->Running());
  EXPECT_EQ(ServingWorkers(master), before);
  // CONFIG GET maxclients from a fresh connection on each worker slot.
  auto maxclients = [&] {
    std::set<std::string> seen;
    std::set<int> slots;
    for (int i = 0; i < 200 && slots.size() < 2; i++) {
      Context fresh = ConnectHiredis(server->port());
      if (!fresh) return std::set<std::string>{"(no connection)"};
      std::optional<WorkerId> w = ServedBy(fresh.get());
      Reply r = Command(fresh.get(), {"CONFIG", "GET", "maxclients"});
      if (!w || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        return std::set<std::string>{"(error) " + DescribeReply(r.get())};
      }
      slots.insert(w->slot);
      seen.insert(std::string(r->element[1]->str, r->element[1]->len));
    }
    return seen;
  };
  EXPECT_EQ(maxclients(), (std::set<std::string>{"1000"})) << "the refused reload changed it";

  // A good configuration afterwards is taken again: by the master, and by
  // the workers of both slots.
  ASSERT_TRUE(write_config("maxclients = 500\n"));
  ASSERT_TRUE(server->Signal(SIGHUP));
  EXPECT_TRUE(server->WaitForLogLine("Reloaded:").has_value()) << server->Log();
  std::set<std::string> now;
  EXPECT_TRUE(WaitUntil([&] {
    now = maxclients();
    return now == std::set<std::string>{"500"};
  })) << "maxclients after the good reload: "
      << *now.begin() << (now.size() > 1 ? " and " + *now.rbegin() : "");

  int status = server->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

}  // namespace
}  // namespace redhub::integration
