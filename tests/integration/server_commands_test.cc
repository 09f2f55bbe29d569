// Connection and server commands of redhubd: HELLO and RESP3, CLIENT,
// COMMAND, CONFIG GET, and INFO summed over every worker (also across a
// worker's death, when no counter may go backwards).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

// "worker=N" and "pid=N" of CLIENT INFO.
std::pair<int, int> WorkerOf(redisContext* c) {
  Reply r = Command(c, {"CLIENT", "INFO"});
  if (!r || r->type != REDIS_REPLY_STRING) return {-1, -1};
  std::string info(r->str, r->len);
  size_t w = info.find(" worker="), p = info.find(" pid=");
  if (w == std::string::npos || p == std::string::npos) return {-1, -1};
  return {atoi(info.c_str() + w + 8), atoi(info.c_str() + p + 5)};
}

// cmdstat_<cmd>'s calls= from INFO commandstats, or -1.
int64_t CommandCalls(redisContext* c, const std::string& cmd) {
  Reply r = Command(c, {"INFO", "commandstats"});
  if (!r || r->type != REDIS_REPLY_STRING) return -1;
  std::optional<std::string> v = InfoField(std::string_view(r->str, r->len), "cmdstat_" + cmd);
  if (!v || v->rfind("calls=", 0) != 0) return -1;
  return atoll(v->c_str() + 6);
}

// One figure of cmdstat_<cmd> ("calls", "failed_calls", ...): 0 when the
// command has not run (INFO leaves it out), -1 if INFO failed.
int64_t CommandStat(redisContext* c, const std::string& cmd, const std::string& field) {
  Reply r = Command(c, {"INFO", "commandstats"});
  if (!r || r->type != REDIS_REPLY_STRING) return -1;
  std::optional<std::string> v = InfoField(std::string_view(r->str, r->len), "cmdstat_" + cmd);
  if (!v) return 0;
  size_t at = ("," + *v).find("," + field + "=");
  return at == std::string::npos ? -1 : atoll(v->c_str() + at + field.size() + 1);
}

// errorstat_<kind>'s count= from INFO errorstats: 0 when absent, -1 if INFO
// failed.
int64_t ErrorCount(redisContext* c, const std::string& kind) {
  Reply r = Command(c, {"INFO", "errorstats"});
  if (!r || r->type != REDIS_REPLY_STRING) return -1;
  std::optional<std::string> v = InfoField(std::string_view(r->str, r->len), "errorstat_" + kind);
  if (!v) return 0;
  return v->rfind("count=", 0) == 0 ? atoll(v->c_str() + 6) : -1;
}

class ServerCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartRedhubd({"--workers", "2", "--maxmemory", "8mb"});
    ASSERT_NE(server_, nullptr);
  }
  // Connections until both worker slots serve at least one of them.
  std::vector<Context> ConnectToBothWorkers(int at_least) {
    std::vector<Context> conns;
    std::set<int> slots;
    for (int i = 0; i < 200 && (static_cast<int>(conns.size()) < at_least || slots.size() < 2);
         i++) {
      Context c = ConnectHiredis(server_->port());
      if (!c) break;
      slots.insert(WorkerOf(c.get()).first);
      conns.push_back(std::move(c));
    }
    EXPECT_EQ(slots, (std::set<int>{0, 1}));
    return conns;
  }
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(ServerCommandsTest, InfoCountsCommandsAndClientsOfEveryWorker) {
  std::vector<Context> conns = ConnectToBothWorkers(10);
  ASSERT_GE(conns.size(), 10u);
  int64_t sent = 0;
  for (size_t i = 0; i < conns.size(); i++) {
    for (size_t k = 0; k <= i; k++) {
      std::string payload = std::to_string(i) + ":" + std::to_string(k);
      Reply r = Command(conns[i].get(), {"ECHO", payload});
      ASSERT_NE(r, nullptr);
      ASSERT_EQ(std::string(r->str, r->len), payload);
      sent++;
    }
  }
  // Per-command figures are written as commands run: exact at once, from
  // any connection, whichever worker serves it.
  EXPECT_EQ(CommandCalls(conns.front().get(), "echo"), sent);
  EXPECT_EQ(CommandCalls(conns.back().get(), "echo"), sent);
  // Connection figures are published by each worker ten times a second.
  const auto expected_clients = static_cast<int64_t>(conns.size());
  std::optional<int64_t> clients;
  EXPECT_TRUE(WaitUntil([&] {
    clients = InfoInt(conns[3].get(), "clients", "connected_clients");
    return clients == expected_clients;
  })) << "connected_clients="
      << clients.value_or(-1) << ", expected " << expected_clients;
  std::optional<int64_t> received = InfoInt(conns[0].get(), "stats", "total_connections_received");
  ASSERT_TRUE(received.has_value());
  EXPECT_GE(*received, expected_clients);

  // A wrong arity is Redis's error.
  Reply arity = Command(conns[0].get(), {"ECHO"});
  ASSERT_NE(arity, nullptr);
  EXPECT_EQ(DescribeReply(arity.get()), "-ERR wrong number of arguments for 'echo' command");

  // A command that fails inside its handler is counted as failed, as an
  // ERR and as an error reply, once, seen from either worker.
  redisContext* other = nullptr;
  for (auto& c : conns) {
    if (WorkerOf(c.get()).first != WorkerOf(conns[0].get()).first) other = c.get();
  }
  ASSERT_NE(other, nullptr);
  ASSERT_EQ(DescribeReply(Command(conns[0].get(), {"SET", "text", "not a number"}).get()), "+OK");
  auto figures = [&](redisContext* c) {
    return std::vector<int64_t>{CommandStat(c, "incr", "failed_calls"), ErrorCount(c, "ERR"),
                                InfoInt(c, "stats", "total_error_replies").value_or(-1)};
  };
  std::vector<int64_t> before = figures(other);
  Reply bad = Command(conns[0].get(), {"INCR", "text"});
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(DescribeReply(bad.get()), "-ERR value is not an integer or out of range");
  std::vector<int64_t> after = figures(other);
  EXPECT_EQ(after, (std::vector<int64_t>{before[0] + 1, before[1] + 1, before[2] + 1}))
      << "failed_calls of incr, errorstat_ERR, total_error_replies";
  EXPECT_EQ(figures(conns[0].get()), after);
}

TEST_F(ServerCommandsTest, NoCounterGoesBackwardsWhenAWorkerIsKilled) {
  std::vector<Context> conns = ConnectToBothWorkers(6);
  ASSERT_EQ(DescribeReply(Command(conns[0].get(), {"SET", "hit", "v"}).get()), "+OK");
  int64_t baseline = CommandCalls(conns[0].get(), "ping");  // start-up probes
  ASSERT_GE(baseline, 0);
  for (auto& c : conns) {
    for (int k = 0; k < 25; k++) ASSERT_NE(Command(c.get(), {"PING"}), nullptr);
    for (int k = 0; k < 10; k++) ASSERT_NE(Command(c.get(), {"GET", "hit"}), nullptr);
  }
  int64_t before = CommandCalls(conns[0].get(), "ping");
  ASSERT_EQ(before - baseline, static_cast<int64_t>(conns.size()) * 25);
  // Loop figures (hits, commands processed) are published by each worker
  // ten times a second, and by the one INFO asks at once.
  const std::optional<int64_t> hits_before = static_cast<int64_t>(conns.size()) * 10;
  EXPECT_TRUE(
      WaitUntil([&] { return InfoInt(conns[0].get(), "stats", "keyspace_hits") == hits_before; }));
  std::optional<int64_t> total_before =
      InfoInt(conns[0].get(), "stats", "total_commands_processed");
  ASSERT_TRUE(total_before.has_value());

  // Kill the worker of some connection; once the master has reaped it
  // (which folds its counters into the retired totals) and a new worker
  // serves its slot, look from a connection to that new worker.
  auto [slot, pid] = WorkerOf(conns[0].get());
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(server_->WaitForLogLine("(pid " + std::to_string(pid) + ") killed"));
  Context fresh;
  ASSERT_TRUE(WaitUntil([&] {
    fresh = ConnectHiredis(server_->port());
    if (!fresh) return false;
    auto [s, p] = WorkerOf(fresh.get());
    return s == slot && p > 0 && p != pid;
  })) << "no new worker serves slot "
      << slot;
  EXPECT_EQ(CommandCalls(fresh.get(), "ping"), before)
      << "the killed worker's ping count was lost or doubled";
  EXPECT_EQ(InfoInt(fresh.get(), "stats", "keyspace_hits"), hits_before);
  std::optional<int64_t> total_after = InfoInt(fresh.get(), "stats", "total_commands_processed");
  ASSERT_TRUE(total_after.has_value());
  // Since: INFO commandstats, INFO stats (twice), CLIENT INFO and PINGs of
  // the new connections; never fewer than before.
  EXPECT_GE(*total_after, *total_before + 3);
}

// The "# Name" lines of an INFO reply, in order; {"(error)"} if it failed.
std::vector<std::string> InfoHeaders(Socket& s, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"INFO"};
  argv.insert(argv.end(), args.begin(), args.end());
  Reply r = SocketCommand(s, argv);
  if (!r || r->type != REDIS_REPLY_STRING) return {"(error) " + DescribeReply(r.get())};
  std::vector<std::string> headers;
  std::string_view text(r->str, r->len);
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find("\r\n", at);
    std::string_view line = text.substr(at, end == std::string_view::npos ? end : end - at);
    if (line.starts_with("#")) headers.emplace_back(line);
    if (end == std::string_view::npos) break;
    at = end + 2;
  }
  return headers;
}

// INFO's sections, their order, the default set, "all", "everything",
// several names in one call, names in any case and unknown names: the same
// section headers as redis-server 7.0 gives (values differ, headers not).
TEST_F(ServerCommandsTest, InfoSectionsAreRedisOnes) {
  auto redis = StartRedisServer();
  ASSERT_NE(redis, nullptr);
  Socket ours = Socket::Connect(server_->port());
  Socket ref = Socket::Connect(redis->port());
  ASSERT_TRUE(ours.valid());
  ASSERT_TRUE(ref.valid());
  // Something in commandstats and errorstats on both.
  for (Socket* s : {&ours, &ref}) {
    ASSERT_EQ(RawCommand(*s, {"SET", "k", "v"}), "+OK\r\n");
    ASSERT_EQ(RawCommand(*s, {"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  }
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {},
           {"default"},
           {"all"},
           {"everything"},
           {"EveryThing"},
           {"cpu"},
           {"CPU"},
           {"server", "clients"},
           {"clients", "server"},
           {"server", "nosuchsection"},
           {"commandstats"},
           {"CommandStats"},
           {"errorstats"},
           {"default", "commandstats"},
           {"all", "nosuchsection"},
           {"persistence", "replication", "modules", "latencystats", "cluster"},
           {"keyspace", "memory", "stats"},
       }) {
    std::vector<std::string> expected = InfoHeaders(ref, args);
    EXPECT_EQ(InfoHeaders(ours, args), expected) << "INFO " << ::testing::PrintToString(args);
  }
  // Only unknown sections: an empty reply, byte for byte.
  for (const std::vector<std::string>& argv :
       std::vector<std::vector<std::string>>{{"INFO", "nosuchsection"}, {"INFO", "foo", "bar"}}) {
    std::string expected = RawCommand(ref, argv);
    ASSERT_EQ(expected, "$0\r\n\r\n");
    EXPECT_EQ(RawCommand(ours, argv), expected) << ::testing::PrintToString(argv);
  }
  // The CPU section's fields, as Redis formats them.
  for (Socket* s : {&ours, &ref}) {
    Reply cpu = SocketCommand(*s, {"INFO", "cpu"});
    ASSERT_NE(cpu, nullptr);
    std::string_view text(cpu->str, cpu->len);
    for (const char* field :
         {"used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"}) {
      std::optional<std::string> v = InfoField(text, field);
      ASSERT_TRUE(v.has_value()) << field << " in " << text;
      size_t dot = v->find('.');
      EXPECT_TRUE(dot != std::string::npos && dot > 0 && v->size() - dot == 7 &&
                  v->find_first_not_of("0123456789.") == std::string::npos)
          << field << ":" << *v;
    }
  }
}

// utime+stime (and, with reaped, cutime+cstime) of a process, in clock
// ticks, from /proc/<pid>/stat; -1 if it is gone.
int64_t CpuTicks(pid_t pid, bool reaped_children = false) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t at = text.rfind(')');
  if (at == std::string::npos) return -1;
  std::istringstream fields(text.substr(at + 2));
  std::vector<std::string> f;
  for (std::string w; fields >> w && f.size() < 15;) f.push_back(w);
  if (f.size() < 15) return -1;
  int64_t ticks = std::stoll(f[11]) + std::stoll(f[12]);  // fields 14, 15
  if (reaped_children) ticks += std::stoll(f[13]) + std::stoll(f[14]);
  return ticks;
}

// used_cpu_user + used_cpu_sys of INFO cpu, in clock ticks; -1 on failure.
int64_t InfoCpuTicks(redisContext* c) {
  Reply r = Command(c, {"INFO", "cpu"});
  if (!r || r->type != REDIS_REPLY_STRING) return -1;
  std::string_view text(r->str, r->len);
  auto user = InfoField(text, "used_cpu_user"), sys = InfoField(text, "used_cpu_sys");
  if (!user || !sys) return -1;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  return std::llround((std::stod(*user) + std::stod(*sys)) * hz);
}

// The daemon's CPU time from /proc, as INFO should sum it: the master
// (with the children it reaped) and its live children.
int64_t DaemonTicks(pid_t master) {
  int64_t ticks = CpuTicks(master, true);
  for (pid_t child : ChildPids(master)) ticks += std::max<int64_t>(CpuTicks(child, true), 0);
  return ticks;
}

// INFO cpu, from any worker, counts every process of the daemon: a busy
// worker's CPU shows in the other worker's answer, and stays there after
// the busy worker is killed (the master's reaped-children time).
TEST_F(ServerCommandsTest, InfoCpuSumsEveryProcessAndKeepsDeadWorkers) {
  std::vector<Context> conns = ConnectToBothWorkers(2);
  redisContext* busy = nullptr;
  redisContext* asker = nullptr;
  for (auto& c : conns) (WorkerOf(c.get()).first == 0 ? busy : asker) = c.get();
  ASSERT_NE(busy, nullptr);
  ASSERT_NE(asker, nullptr);
  const pid_t busy_pid = WorkerOf(busy).second;
  // Work for worker 0 until it has used a few ticks of CPU.
  std::string pings;
  for (int i = 0; i < 20000; i++) pings += "PING\r\n";
  Socket s = Socket::Connect(server_->port());
  ASSERT_TRUE(s.valid());
  bool on_busy = false;
  for (int i = 0; i < 50 && !on_busy; i++) {
    // A connection served by worker 0 (CLIENT INFO's worker=).
    s = Socket::Connect(server_->port());
    Reply info = SocketCommand(s, {"CLIENT", "INFO"});
    on_busy = info && std::string(info->str, info->len).find(" worker=0 ") != std::string::npos;
  }
  ASSERT_TRUE(on_busy);
  ASSERT_TRUE(WaitUntil(
      [&] {
        if (!s.SendAll(pings)) return false;
        if (s.RecvN(pings.size() / 6 * 7).size() != pings.size() / 6 * 7) return false;
        return CpuTicks(busy_pid) >= 5;
      },
      milliseconds(20000)));

  // Between two readings of /proc, INFO from worker 1 sees all of it.
  int64_t before = DaemonTicks(server_->pid());
  int64_t reported = InfoCpuTicks(asker);
  int64_t after = DaemonTicks(server_->pid());
  EXPECT_LE(before, reported);
  EXPECT_LE(reported, after);
  EXPECT_GE(reported, CpuTicks(busy_pid) + CpuTicks(WorkerOf(asker).second));

  // Worker 0 killed: its CPU is still counted.
  s.Close();
  const int64_t busy_final = CpuTicks(busy_pid);
  int64_t live_before = CpuTicks(server_->pid());  // the master alone
  for (pid_t child : ChildPids(server_->pid())) {
    if (child != busy_pid) live_before += std::max<int64_t>(CpuTicks(child), 0);
  }
  ASSERT_EQ(kill(busy_pid, SIGKILL), 0);
  ASSERT_TRUE(WaitUntil([&] { return !ProcessExists(busy_pid); })) << "worker 0 not reaped";
  int64_t later = InfoCpuTicks(asker);
  EXPECT_GE(later, reported) << "INFO cpu went backwards";
  EXPECT_GE(later, live_before + busy_final) << "the killed worker's CPU was lost";
  Reply cpu = Command(asker, {"INFO", "cpu"});
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(InfoField(std::string_view(cpu->str, cpu->len), "used_cpu_sys_children"), "0.000000");
}

TEST_F(ServerCommandsTest, HelloSwitchesToResp3OnlyForThatConnection) {
  Socket s = Socket::Connect(server_->port());
  ASSERT_TRUE(s.valid());
  ASSERT_TRUE(s.SendAll(FormatCommand({"HELLO", "3"})));
  std::string hello = s.RecvUntil("*0\r\n");  // the map ends with modules: an empty array
  EXPECT_EQ(hello.rfind("%7\r\n$6\r\nserver\r\n$6\r\nredhub\r\n", 0), 0u) << hello;
  EXPECT_NE(hello.find("$5\r\nproto\r\n:3\r\n"), std::string::npos) << hello;
  // RESP3 null, map and verbatim types on this connection.
  ASSERT_TRUE(s.SendAll(FormatCommand({"GET", "missing"})));
  EXPECT_EQ(s.RecvN(3), "_\r\n");
  ASSERT_TRUE(s.SendAll(FormatCommand({"CONFIG", "GET", "maxmemory"})));
  EXPECT_EQ(s.RecvUntil("8388608\r\n"), "%1\r\n$9\r\nmaxmemory\r\n$7\r\n8388608\r\n");
  // Back to RESP2.
  ASSERT_TRUE(s.SendAll(FormatCommand({"HELLO", "2"})));
  std::string hello2 = s.RecvUntil("*0\r\n");
  EXPECT_EQ(hello2.rfind("*14\r\n", 0), 0u) << hello2;
  ASSERT_TRUE(s.SendAll(FormatCommand({"GET", "missing"})));
  EXPECT_EQ(s.RecvN(5), "$-1\r\n");
  // Errors exactly as Redis 7.0.
  ASSERT_TRUE(s.SendAll(FormatCommand({"HELLO", "4"})));
  EXPECT_EQ(s.RecvUntil("\r\n"), "-NOPROTO unsupported protocol version\r\n");
  ASSERT_TRUE(s.SendAll(FormatCommand({"HELLO", "x"})));
  EXPECT_EQ(s.RecvUntil("\r\n"), "-ERR Protocol version is not an integer or out of range\r\n");
  // Another connection is unaffected.
  Context other = ConnectHiredis(server_->port());
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(DescribeReply(Command(other.get(), {"GET", "missing"}).get()), "(nil)");
}

// HELLO SETNAME validates the name as CLIENT SETNAME does: a newline in it
// would forge a line of CLIENT LIST. As Redis 7.0, an invalid name fails
// AUTH while the default user has no password (Redis 7.0's default): the
// one-argument form is an error that says so, the default user takes any
// password, any other user is unknown; byte for byte as redis-server.
TEST_F(ServerCommandsTest, AuthWithoutAPasswordAnswersAsRedis) {
  auto redis = StartRedisServer();
  ASSERT_NE(redis, nullptr);
  const std::vector<std::vector<std::string>> script = {
      {"AUTH", "secret"},
      {"AUTH", "default", "secret"},
      {"AUTH", "DEFAULT", "secret"},
      {"AUTH", "bob", "secret"},
      {"AUTH"},
      {"AUTH", "a", "b", "c"},
      {"auth", "default", ""},
      {"PING"},
  };
  Socket ours = Socket::Connect(server_->port());
  Socket ref = Socket::Connect(redis->port());
  ASSERT_NO_FATAL_FAILURE(ExpectRepliesAsReference(ours, ref, script));
}

// HELLO as a whole (no protocol switch, no name), options are checked in
// order, and every error matches redis-server's byte for byte.
TEST_F(ServerCommandsTest, HelloSetnameValidatesTheNameAsRedis) {
  auto redis = StartRedisServer();
  ASSERT_NE(redis, nullptr);
  const std::string forged = "x\nid=999 addr=6.6.6.6:6 name=forged";
  const std::vector<std::vector<std::string>> script = {
      {"HELLO", "3", "SETNAME", forged},
      {"HELLO", "2", "SETNAME", "a b"},
      {"HELLO", "3", "SETNAME", std::string("a\0b", 3)},
      {"HELLO", "3", "SETNAME", "a\x7f"},
      {"HELLO", "3", "SETNAME", "caf\xc3\xa9"},
      {"HELLO", "3", "SETNAME", "a b", "NOSUCHOPTION"},  // the name fails first
      {"HELLO", "3", "NOSUCHOPTION", "SETNAME", "a b"},  // the option fails first
      {"HELLO", "3", "AUTH", "nosuchuser", "pw", "SETNAME", "a b"},
      {"HELLO", "2", "AUTH", "default", "any", "SETNAME", "a b"},
      {"HELLO", "2", "AUTH", "default", "any", "bogus"},
      {"HELLO", "3", "SETNAME"},
      // Nothing of the failed HELLOs took effect: RESP2, no name.
      {"GET", "missing"},
      {"CLIENT", "GETNAME"},
      {"CLIENT", "SETNAME", forged},
      {"CLIENT", "SETNAME", "a b"},
  };
  Socket ours = Socket::Connect(server_->port());
  Socket ref = Socket::Connect(redis->port());
  ASSERT_NO_FATAL_FAILURE(ExpectRepliesAsReference(ours, ref, script));
  Reply list = SocketCommand(ours, {"CLIENT", "LIST"});
  ASSERT_NE(list, nullptr);
  std::string text(list->str, list->len);
  EXPECT_EQ(text.find("id=999"), std::string::npos) << text;
  EXPECT_EQ(text.find("forged"), std::string::npos) << text;
  EXPECT_NE(text.find(" name= "), std::string::npos) << text;

  // A valid name is set, with the protocol, by the same HELLO.
  ASSERT_TRUE(ours.SendAll(FormatCommand({"HELLO", "3", "SETNAME", "app-1"})));
  std::string hello = ours.RecvUntil("*0\r\n");
  EXPECT_NE(hello.find("$5\r\nproto\r\n:3\r\n"), std::string::npos) << hello;
  EXPECT_EQ(RawCommand(ours, {"CLIENT", "GETNAME"}), "$5\r\napp-1\r\n");
  ASSERT_TRUE(ours.SendAll(FormatCommand({"GET", "missing"})));
  EXPECT_EQ(ours.RecvN(3), "_\r\n");
}

// A transaction as a client library sends it, all in one write: queued
// replies, then EXEC's array, applied for another connection to see; a
// refusal while queueing discards it (EXECABORT), and QUIT still works
// inside MULTI (as in Redis). tests/integration/transaction_test.cc has the
// byte-for-byte comparison with redis-server and the cross-worker cases.
TEST_F(ServerCommandsTest, MultiQueuesUntilExecOrDiscard) {
  Context other = ConnectHiredis(server_->port());
  ASSERT_NE(other, nullptr);
  ASSERT_EQ(DescribeReply(Command(other.get(), {"SET", "k", "orig"}).get()), "+OK");
  Socket s = Socket::Connect(server_->port());
  ASSERT_TRUE(s.valid());
  ASSERT_TRUE(s.SendAll(FormatCommand({"MULTI"}) + FormatCommand({"SET", "k", "v"}) +
                        FormatCommand({"INCR", "x"}) + FormatCommand({"EXEC"})));
  const std::string expected = "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:1\r\n";
  EXPECT_EQ(s.RecvN(expected.size()), expected);
  EXPECT_EQ(DescribeReply(Command(other.get(), {"GET", "k"}).get()), "$1 v");

  EXPECT_EQ(RawCommand(s, {"MULTI"}), "+OK\r\n");
  EXPECT_EQ(RawCommand(s, {"INCR", "x"}), "+QUEUED\r\n");
  EXPECT_EQ(RawCommand(s, {"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(RawCommand(s, {"EXEC"}),
            "-EXECABORT Transaction discarded because of previous errors.\r\n");
  EXPECT_EQ(DescribeReply(Command(other.get(), {"GET", "x"}).get()), "$1 1");
  EXPECT_EQ(RawCommand(s, {"MULTI"}), "+OK\r\n");
  EXPECT_EQ(RawCommand(s, {"INCR", "x"}), "+QUEUED\r\n");
  EXPECT_EQ(RawCommand(s, {"DISCARD"}), "+OK\r\n");
  EXPECT_EQ(DescribeReply(Command(other.get(), {"GET", "x"}).get()), "$1 1");

  EXPECT_EQ(RawCommand(s, {"MULTI"}), "+OK\r\n");
  ASSERT_TRUE(s.SendAll(FormatCommand({"INCR", "x"}) + FormatCommand({"QUIT"})));
  std::string rest;
  EXPECT_TRUE(s.WaitForClose(kTimeout, &rest));
  EXPECT_EQ(rest, "+QUEUED\r\n+OK\r\n");
  EXPECT_EQ(DescribeReply(Command(other.get(), {"GET", "x"}).get()), "$1 1");
}

// redis-py's transactional pipeline (its default) runs as one transaction.
TEST_F(ServerCommandsTest, RedisPyTransactionIsApplied) {
  if (std::string(PYTHON3_PATH).empty()) FAIL() << "/usr/bin/python3 not found";
  static const char kScript[] = R"(
import sys, redis
port = int(sys.argv[1])
r = redis.Redis(host='127.0.0.1', port=port, single_connection_client=True)
other = redis.Redis(host='127.0.0.1', port=port)
r.set('k', 'orig')
p = r.pipeline(transaction=True)
p.set('k', 'v')
p.incr('x')
try:
    print('executed', p.execute())
except redis.exceptions.ResponseError as e:
    print('raised', type(e).__name__, e)
print('k', other.get('k'), 'x', other.exists('x'))
# The same connection runs commands normally afterwards.
print('after', r.set('k2', 'w'), r.get('k2'), r.incr('x'))
with r.pipeline(transaction=False) as p:
    p.set('k3', 'z')
    p.get('k3')
    print('plain pipeline', p.execute())
)";
  RunResult r = RunPython(kScript, {std::to_string(server_->port())}, milliseconds(20000));
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.out,
            "executed [True, 1]\n"
            "k b'v' x 1\n"
            "after True b'w' 2\n"
            "plain pipeline [True, b'z']\n");
}

TEST_F(ServerCommandsTest, RedisCliResp3) {
  if (std::string(REDIS_CLI_PATH).empty())
    FAIL() << "redis-cli not found (deploy/install-deps.sh installs it)";
  auto cli = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {REDIS_CLI_PATH, "-3", "-h",
                                     "127.0.0.1",    "-p", std::to_string(server_->port())};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = RunCommand(argv, milliseconds(20000));
    EXPECT_TRUE(r.ok()) << r.Describe();
    return r.out;
  };
  // Not on a terminal, redis-cli prints raw replies: a RESP3 map as
  // "key value" lines, a null as an empty line.
  std::string hello = cli({"HELLO", "3"});
  EXPECT_EQ(hello.rfind("server redhub\nversion ", 0), 0u) << hello;
  EXPECT_NE(hello.find("\nproto 3\n"), std::string::npos) << hello;
  EXPECT_EQ(cli({"SET", "k", "v"}), "OK\n");
  EXPECT_EQ(cli({"GET", "k"}), "v\n");
  EXPECT_EQ(cli({"GET", "nokey"}), "\n");
  EXPECT_EQ(cli({"CONFIG", "GET", "maxmemory-policy"}), "maxmemory-policy noeviction\n");
  std::string info = cli({"INFO", "keyspace"});
  EXPECT_NE(info.find("db0:keys=1,expires=0"), std::string::npos) << info;
}

TEST_F(ServerCommandsTest, ClientAndCommandAndSelect) {
  Context c = ConnectHiredis(server_->port());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"CLIENT", "GETNAME"}).get()), "(nil)");
  EXPECT_EQ(DescribeReply(Command(c.get(), {"CLIENT", "SETNAME", "app-1"}).get()), "+OK");
  EXPECT_EQ(DescribeReply(Command(c.get(), {"CLIENT", "GETNAME"}).get()), "$5 app-1");
  EXPECT_EQ(DescribeReply(Command(c.get(), {"CLIENT", "SETNAME", "a b"}).get()),
            "-ERR Client names cannot contain spaces, newlines or special characters.");
  Reply id = Command(c.get(), {"CLIENT", "ID"});
  ASSERT_NE(id, nullptr);
  ASSERT_EQ(id->type, REDIS_REPLY_INTEGER);
  Reply list = Command(c.get(), {"CLIENT", "LIST"});
  ASSERT_NE(list, nullptr);
  std::string text(list->str, list->len);
  EXPECT_NE(text.find("id=" + std::to_string(id->integer) + " "), std::string::npos) << text;
  EXPECT_NE(text.find(" name=app-1 "), std::string::npos) << text;
  EXPECT_EQ(DescribeReply(Command(c.get(), {"CLIENT", "NOPE"}).get()),
            "-ERR unknown subcommand 'NOPE'. Try CLIENT HELP.");

  Reply count = Command(c.get(), {"COMMAND", "COUNT"});
  ASSERT_NE(count, nullptr);
  EXPECT_GT(count->integer, 10);
  Reply info = Command(c.get(), {"COMMAND", "INFO", "get", "nosuch"});
  ASSERT_NE(info, nullptr);
  ASSERT_EQ(info->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(info->elements, 2u);
  EXPECT_EQ(DescribeReply(info->element[0]->element[0]), "$3 get");
  EXPECT_EQ(DescribeReply(info->element[0]->element[1]), ":2");
  EXPECT_EQ(info->element[1]->type, REDIS_REPLY_NIL);

  EXPECT_EQ(DescribeReply(Command(c.get(), {"SELECT", "0"}).get()), "+OK");
  EXPECT_EQ(DescribeReply(Command(c.get(), {"SELECT", "1"}).get()),
            "-ERR DB index is out of range");
  EXPECT_EQ(DescribeReply(Command(c.get(), {"NOSUCH", "a"}).get()),
            "-ERR unknown command 'NOSUCH', with args beginning with: 'a' ");
  // Command names match whatever their case, and only whole: a NUL byte or
  // a name longer than any command's is unknown, not a prefix match.
  EXPECT_EQ(DescribeReply(Command(c.get(), {"gEt", "nosuchkey"}).get()), "(nil)");
  EXPECT_EQ(DescribeReply(Command(c.get(), {std::string("get\0", 4), "k"}).get())
                .rfind("-ERR unknown command", 0),
            0u);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"getgetgetgetgetgetgetgetget", "k"}).get())
                .rfind("-ERR unknown command", 0),
            0u);
  Reply t = Command(c.get(), {"TIME"});
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->elements, 2u);
}

// COMMAND INFO with the ACL categories, byte for byte as redis-server, for
// the commands whose entry Redis 7.0 gives no tips, key specs or
// subcommands (the daemon reports none of those yet); in any case, several
// at once, and an unknown one among them.
TEST_F(ServerCommandsTest, CommandInfoAsRedis) {
  auto redis = StartRedisServer();
  ASSERT_NE(redis, nullptr);
  const std::vector<std::vector<std::string>> script = {
      {"COMMAND", "INFO", "echo"},
      {"COMMAND", "INFO", "AUTH"},
      {"COMMAND", "INFO", "hello", "select", "quit"},
      {"COMMAND", "INFO", "multi", "nosuch", "Exec", "discard", "unwatch"},
  };
  Socket ours = Socket::Connect(server_->port());
  Socket ref = Socket::Connect(redis->port());
  ASSERT_NO_FATAL_FAILURE(ExpectRepliesAsReference(ours, ref, script));
}

// SLOWLOG is shared by the workers: with a threshold of 0 every command is
// logged, whichever worker ran it, newest first.
TEST(SlowlogTest, EveryWorkersSlowCommandsInOneLog) {
  auto server =
      StartRedhubd({"--workers", "2", "--maxmemory", "8mb", "--slowlog-log-slower-than", "0"});
  ASSERT_NE(server, nullptr);
  std::vector<Context> conns;
  std::map<int, redisContext*> by_slot;
  for (int i = 0; i < 40 && by_slot.size() < 2; i++) {
    conns.push_back(ConnectHiredis(server->port()));
    ASSERT_NE(conns.back(), nullptr);
    by_slot.emplace(WorkerOf(conns.back().get()).first, conns.back().get());
  }
  ASSERT_EQ(by_slot.size(), 2u);
  ASSERT_EQ(DescribeReply(Command(by_slot[0], {"SLOWLOG", "RESET"}).get()), "+OK");
  ASSERT_EQ(DescribeReply(Command(by_slot[0], {"CLIENT", "SETNAME", "zero"}).get()), "+OK");
  ASSERT_EQ(DescribeReply(Command(by_slot[0], {"SET", "slow-key", "v"}).get()), "+OK");
  ASSERT_NE(Command(by_slot[1], {"ECHO", std::string(200, 'e')}), nullptr);

  Reply got = Command(by_slot[1], {"SLOWLOG", "GET", "3"});
  ASSERT_NE(got, nullptr);
  ASSERT_EQ(got->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(got->elements, 3u);
  // Newest first: ECHO (worker 1), SET (worker 0, named), CLIENT SETNAME.
  const redisReply* echo = got->element[0];
  ASSERT_EQ(echo->elements, 6u);
  ASSERT_EQ(echo->element[3]->elements, 2u);
  EXPECT_EQ(DescribeReply(echo->element[3]->element[0]), "$4 ECHO");
  EXPECT_EQ(std::string(echo->element[3]->element[1]->str),
            std::string(128, 'e') + "... (72 more bytes)");
  const redisReply* set = got->element[1];
  EXPECT_EQ(DescribeReply(set->element[3]->element[1]), "$8 slow-key");
  EXPECT_EQ(DescribeReply(set->element[5]), "$4 zero");
  EXPECT_EQ(set->element[0]->integer + 1, echo->element[0]->integer);
  EXPECT_GE(set->element[2]->integer, 0);

  ASSERT_EQ(DescribeReply(Command(by_slot[1], {"SLOWLOG", "RESET"}).get()), "+OK");
  // The RESET itself is logged once it has run, as in Redis.
  EXPECT_EQ(DescribeReply(Command(by_slot[0], {"SLOWLOG", "LEN"}).get()), ":1");
  EXPECT_EQ(DescribeReply(Command(by_slot[0], {"SLOWLOG", "GET", "-2"}).get()),
            "-ERR count should be greater than or equal to -1");
  Reply cfg = Command(by_slot[0], {"CONFIG", "GET", "slowlog-*"});
  ASSERT_NE(cfg, nullptr);
  ASSERT_EQ(cfg->elements, 4u);
  EXPECT_EQ(DescribeReply(cfg->element[1]), "$1 0");
  EXPECT_EQ(DescribeReply(cfg->element[3]), "$3 128");
}

}  // namespace
}  // namespace redhub::integration
