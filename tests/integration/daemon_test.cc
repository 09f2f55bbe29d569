// The daemon's operating interface, through the real binary: --pidfile,
// systemd's NOTIFY_SOCKET protocol, SIGUSR1 log reopening, --daemonize,
// IPv6 listeners, data kept across reload (SIGHUP) and upgrade (SIGUSR2),
// --shm-keep across restarts, a segment in use or incompatible, and bad
// flags. Every wait is bounded; every process started is stopped by pid and
// every segment created is removed however the test ends.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "counters.h"
#include "server_process.h"
#include "store.h"

namespace redhub::integration {
namespace {

// ---- files and processes ----

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// Removes a store segment (and its counter segment) however the test ends.
struct SegmentGuard {
  std::string name;
  ~SegmentGuard() {
    shm::Store::Remove(name);
    shm::Store::Remove(name + "-stats");
  }
};

std::string UniqueShmName(const std::string& what) {
  static int n = 0;
  return "/redhub-dt-" + what + "-" + std::to_string(getpid()) + "-" + std::to_string(n++);
}

std::string ShmPath(const std::string& name) { return "/dev/shm" + name; }

// Whether pid has ended: gone, or a zombie nobody reaped yet.
bool ProcessEnded(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

// The master's children titled "redhubd: worker <slot>" (not retiring).
std::set<pid_t> ServingWorkerPids(pid_t master) {
  std::set<pid_t> out;
  for (pid_t pid : ChildPids(master)) {
    std::string title = ProcessTitle(pid);
    if (title.starts_with("redhubd: worker ") && title.find("retiring") == std::string::npos) {
      out.insert(pid);
    }
  }
  return out;
}

// Every one of `workers` slots is served by a worker not in `old`, and no
// other child runs (the old ones are gone).
bool AllWorkersReplaced(pid_t master, const std::set<pid_t>& old, size_t workers) {
  std::set<pid_t> now = ServingWorkerPids(master);
  if (now.size() != workers || ChildPids(master).size() != workers) return false;
  for (pid_t p : now) {
    if (old.count(p)) return false;
  }
  return true;
}

std::string DescribePids(const std::set<pid_t>& pids) {
  std::string out;
  for (pid_t p : pids) {
    if (!out.empty()) out += ',';
    out += std::to_string(p);
  }
  return '{' + out + '}';
}

// ---- starting the daemon ----

struct LaunchOptions {
  std::vector<std::string> args;  // besides --bind, --port and --admin-port
  std::string bind = "127.0.0.1";
  std::string logfile;           // if set, --logfile and where "Ready" is looked for
  std::vector<std::string> env;  // NAME=value, through env(1)
};

LaunchOptions WithArgs(std::vector<std::string> args) {
  LaunchOptions o;
  o.args = std::move(args);
  return o;
}

// Whether the server's log (its stderr, or the --logfile) has the line.
bool HasReadyLine(ServerProcess& server, const std::string& logfile) {
  std::string log = logfile.empty() ? server.Log() : ReadWholeFile(logfile);
  size_t at = log.find("Ready to accept connections");
  return at != std::string::npos && log.find('\n', at) != std::string::npos;
}

// redhubd on a free port, serving, with every worker up ("Ready to accept
// connections" logged). Retries on a start that fails (a port race).
std::unique_ptr<ServerProcess> Launch(const LaunchOptions& o) {
  std::string why;
  for (int attempt = 1; attempt <= 3; attempt++) {
    uint16_t port = PickFreePort();
    if (port == 0) continue;
    std::vector<std::string> args = {"--bind",       o.bind, "--port", std::to_string(port),
                                     "--admin-port", "0"};
    if (!o.logfile.empty()) args.insert(args.end(), {"--logfile", o.logfile});
    args.insert(args.end(), o.args.begin(), o.args.end());
    auto server = std::make_unique<ServerProcess>("redhubd");
    bool started;
    if (o.env.empty()) {
      started = server->Start(REDHUBD_PATH, args);
    } else {
      // env(1) execs redhubd in place: the pid stays the master's.
      std::vector<std::string> env_args = o.env;
      env_args.push_back(REDHUBD_PATH);
      env_args.insert(env_args.end(), args.begin(), args.end());
      started = server->Start("/usr/bin/env", env_args);
    }
    if (!started) {
      why = "fork failed";
      continue;
    }
    server->set_port(port);
    if (server->WaitReady() &&
        WaitUntil([&] { return HasReadyLine(*server, o.logfile) || !server->Running(); }) &&
        server->Running()) {
      return server;
    }
    bool running = server->Running();
    server->Stop();
    why = "attempt " + std::to_string(attempt) + " on port " + std::to_string(port) +
          " failed; log:\n" + server->Log() +
          (o.logfile.empty() ? "" : "\n--logfile:\n" + ReadWholeFile(o.logfile));
    if (running) break;
  }
  ADD_FAILURE() << "redhubd did not start: " << why;
  return nullptr;
}

// ---- RESP ----

void SetKeys(redisContext* c, int n, const std::string& prefix) {
  for (int i = 0; i < n; i++) {
    std::string k = prefix + std::to_string(i);
    ASSERT_EQ(DescribeReply(Command(c, {"SET", k, "value-" + k}).get()), "+OK") << k;
  }
}

void ExpectKeys(redisContext* c, int n, const std::string& prefix, const std::string& when) {
  for (int i = 0; i < n; i++) {
    std::string k = prefix + std::to_string(i);
    std::string want = "value-" + k;
    std::string expected = "$";
    expected += std::to_string(want.size());
    expected += ' ';
    expected += want;
    EXPECT_EQ(DescribeReply(Command(c, {"GET", k}).get()), expected) << k << " " << when;
  }
}

// ---- 1. --pidfile ----

TEST(DaemonTest, PidFileHoldsTheMasterPidAndIsRemovedAtStop) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string pidfile = dir.File("redhubd.pid");
  auto server = Launch(WithArgs({"--workers", "2", "--pidfile", pidfile}));
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(ReadWholeFile(pidfile), std::to_string(server->pid()) + "\n");
  int status = server->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(FileExists(pidfile)) << "the pid file outlived a clean stop";
}

// A pid file that cannot be written fails the start and leaves neither the
// store's segments (which reserve maxmemory of /dev/shm) nor the unix socket.
TEST(DaemonTest, UnwritablePidFileFailsTheStartAndLeavesNothingBehind) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string shm_name = UniqueShmName("pidfail");
  SegmentGuard segment{shm_name};
  const std::string sock = dir.File("redhubd.sock");
  ServerProcess server("redhubd-pidfail");
  ASSERT_TRUE(server.Start(REDHUBD_PATH, {"--port", "0", "--unixsocket", sock, "--admin-port", "0",
                                          "--workers", "1", "--maxmemory", "16mb", "--shm-name",
                                          shm_name, "--pidfile", dir.File("missing/redhubd.pid")}));
  int status = 0;
  ASSERT_TRUE(server.WaitExit(kTimeout, &status)) << server.Log();
  server.Stop();  // it exited, as it should: nothing to stop, nothing to report
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  EXPECT_NE(server.Log().find("Cannot start: cannot write the pid file"), std::string::npos)
      << server.Log();
  EXPECT_FALSE(FileExists(ShmPath(shm_name)));
  EXPECT_FALSE(FileExists(ShmPath(shm_name + "-stats")));
  EXPECT_FALSE(FileExists(sock));
}

// ---- 2. NOTIFY_SOCKET ----

class NotifyListener {
 public:
  explicit NotifyListener(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path.size() >= sizeof(addr.sun_path)) return;
    memcpy(addr.sun_path, path.data(), path.size());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~NotifyListener() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

  // Receives datagrams until one contains needle; returns it, or nullopt at
  // the timeout. Every datagram received is kept in received().
  std::optional<std::string> WaitFor(const std::string& needle, milliseconds timeout = kTimeout) {
    Clock::time_point deadline = Clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      int n = poll(&p, 1, static_cast<int>(left));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      char buf[4096];
      ssize_t got = recv(fd_, buf, sizeof(buf), 0);
      if (got < 0) continue;
      std::string msg(buf, static_cast<size_t>(got));
      received_.push_back(msg);
      if (msg.find(needle) != std::string::npos) return msg;
    }
  }
  // Datagrams received so far that contain needle.
  size_t Count(const std::string& needle) const {
    size_t n = 0;
    for (const std::string& m : received_) n += m.find(needle) != std::string::npos;
    return n;
  }
  std::string Received() const {
    std::string out;
    for (const std::string& m : received_) out += "[" + m + "] ";
    return out;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> received_;
};

TEST(DaemonTest, NotifySocketGetsReadyReloadingAndStopping) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("notify.sock");
  NotifyListener notify(path);
  ASSERT_TRUE(notify.ok()) << "cannot bind " << path << ": " << strerror(errno);
  LaunchOptions o = WithArgs({"--workers", "2"});
  o.env = {"NOTIFY_SOCKET=" + path};
  auto server = Launch(o);
  ASSERT_NE(server, nullptr);

  std::optional<std::string> ready = notify.WaitFor("READY=1");
  ASSERT_TRUE(ready) << notify.Received();
  EXPECT_NE(ready->find("MAINPID=" + std::to_string(server->pid())), std::string::npos) << *ready;

  ASSERT_TRUE(server->Signal(SIGHUP));
  ASSERT_TRUE(notify.WaitFor("RELOADING=1")) << notify.Received();
  // One sender, datagrams in order: everything the start sent has come.
  EXPECT_EQ(notify.Count("READY=1"), 1u) << "READY=1 once at start: " << notify.Received();
  ASSERT_TRUE(notify.WaitFor("READY=1", milliseconds(10000))) << notify.Received();
  EXPECT_TRUE(server->WaitForLogLine("Reloaded:")) << server->Log();

  ASSERT_TRUE(server->Signal(SIGTERM));
  EXPECT_TRUE(notify.WaitFor("STOPPING=1")) << notify.Received();
  int status = 0;
  ASSERT_TRUE(server->WaitExit(milliseconds(10000), &status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// ---- 3. SIGUSR1 ----

TEST(DaemonTest, SigusrOneReopensTheLogFileAfterARename) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string log = dir.File("redhubd.log");
  const std::string rotated = log + ".1";
  LaunchOptions o = WithArgs({"--workers", "1"});
  o.logfile = log;
  auto server = Launch(o);
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(rename(log.c_str(), rotated.c_str()), 0) << strerror(errno);
  ASSERT_FALSE(FileExists(log));

  ASSERT_TRUE(server->Signal(SIGUSR1));
  EXPECT_TRUE(WaitUntil([&] {
    return ReadWholeFile(log).find("Log file reopened\n") != std::string::npos;
  })) << "new file:\n"
      << ReadWholeFile(log) << "\nrotated file:\n"
      << ReadWholeFile(rotated);
  std::string old_lines = ReadWholeFile(rotated);
  EXPECT_NE(old_lines.find("Ready to accept connections"), std::string::npos) << old_lines;
  EXPECT_EQ(old_lines.find("Log file reopened"), std::string::npos) << old_lines;

  // The master goes on logging to the new file, and so do the workers
  // that were running at the SIGUSR1 (they log their retirement).
  ASSERT_TRUE(server->Signal(SIGHUP));
  EXPECT_TRUE(WaitUntil([&] { return ReadWholeFile(log).find("Reloaded:") != std::string::npos; }))
      << ReadWholeFile(log);
  EXPECT_TRUE(WaitUntil([&] { return ReadWholeFile(log).find("Retiring:") != std::string::npos; }))
      << ReadWholeFile(log);
  EXPECT_EQ(ReadWholeFile(rotated).find("Retiring:"), std::string::npos);
  EXPECT_TRUE(server->WaitReady());
  int status = server->Stop(milliseconds(10000));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// ---- 4. --daemonize ----

// Makes this process the reaper of orphaned descendants (the daemonized
// master) while it lives, so that their exit status can be read.
class SubreaperScope {
 public:
  SubreaperScope() { ok_ = prctl(PR_SET_CHILD_SUBREAPER, 1) == 0; }
  ~SubreaperScope() { prctl(PR_SET_CHILD_SUBREAPER, 0); }
  bool ok() const { return ok_; }

 private:
  bool ok_ = false;
};

// Kills a process we do not own as a child by pid at the end of a test,
// unless it is already gone.
struct KillGuard {
  pid_t pid = 0;
  ~KillGuard() {
    if (pid > 0 && !ProcessEnded(pid)) kill(pid, SIGKILL);
    if (pid > 0) {
      int status;
      WaitUntil([&] { return waitpid(pid, &status, WNOHANG) != 0 || ProcessEnded(pid); });
    }
  }
};

TEST(DaemonTest, DaemonizeDetachesWritesThePidFileAndStopsOnSigterm) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  SubreaperScope reaper;
  ASSERT_TRUE(reaper.ok()) << strerror(errno);
  const std::string log = dir.File("redhubd.log");
  const std::string pidfile = dir.File("redhubd.pid");
  const std::string shm_name = UniqueShmName("daemonize");
  SegmentGuard segment{shm_name};
  uint16_t port = PickFreePort();
  ASSERT_NE(port, 0);

  ServerProcess launcher("redhubd-launcher");
  ASSERT_TRUE(launcher.Start(
      REDHUBD_PATH,
      {"--daemonize", "--logfile", log, "--pidfile", pidfile, "--bind", "127.0.0.1", "--port",
       std::to_string(port), "--admin-port", "0", "--workers", "2", "--shm-name", shm_name}));
  int status = 0;
  ASSERT_TRUE(launcher.WaitExit(kTimeout, &status)) << "the launching process did not exit";
  launcher.Stop();  // it exited, as it should: nothing to stop, nothing to report
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << launcher.Log();

  pid_t pid = 0;
  ASSERT_TRUE(WaitUntil([&] {
    std::string text = ReadWholeFile(pidfile);
    if (text.empty() || text.back() != '\n') return false;
    pid = atoi(text.c_str());
    return pid > 0;
  })) << "no pid file; log:\n"
      << ReadWholeFile(log);
  KillGuard guard{pid};
  EXPECT_NE(pid, launcher.pid());
  EXPECT_EQ(ProcessTitle(pid), "redhubd: master");

  EXPECT_TRUE(WaitUntil([&] {
    Socket s = Socket::Connect(port, milliseconds(500));
    return s.valid() && s.SendAll("PING\r\n") && s.RecvN(7) == "+PONG\r\n";
  })) << ReadWholeFile(log);
  EXPECT_TRUE(WaitUntil(
      [&] { return ReadWholeFile(log).find("Ready to accept connections") != std::string::npos; }));

  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int daemon_status = -1;
  EXPECT_TRUE(WaitUntil(
      [&] {
        pid_t r = waitpid(pid, &daemon_status, WNOHANG);
        return r == pid || (r < 0 && ProcessEnded(pid));
      },
      milliseconds(10000)))
      << "the daemon did not exit on SIGTERM; log:\n"
      << ReadWholeFile(log);
  if (daemon_status != -1) {
    EXPECT_TRUE(WIFEXITED(daemon_status) && WEXITSTATUS(daemon_status) == 0) << daemon_status;
  }
  EXPECT_FALSE(FileExists(pidfile));
  EXPECT_FALSE(FileExists(ShmPath(shm_name)));
}

// ---- 5. IPv6 ----

bool CanBindIpv6Loopback() {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

// PING over a blocking IPv6 connection with timeouts; the reply or "".
std::string PingIpv6(uint16_t port) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  a.sin6_port = htons(port);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
    char buf[64];
    while (out.size() < 7) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

TEST(DaemonTest, ServesOnIpv4AndIpv6Loopback) {
  if (!CanBindIpv6Loopback()) GTEST_SKIP() << "::1 cannot be bound on this machine";
  LaunchOptions o = WithArgs({"--workers", "2"});
  o.bind = "127.0.0.1,::1";
  auto server = Launch(o);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->WaitForLogLine("[::1]:" + std::to_string(server->port()))) << server->Log();
  EXPECT_EQ(PingIpv6(server->port()), "+PONG\r\n");
  Socket v4 = Socket::Connect(server->port());
  ASSERT_TRUE(v4.valid());
  ASSERT_TRUE(v4.SendAll("PING\r\n"));
  EXPECT_EQ(v4.RecvN(7), "+PONG\r\n");
}

// The unix socket is served next to TCP, through a real client (hiredis),
// on the same store, and removed at a clean stop. (Every worker accepts on
// it, but one shared socket has no SO_REUSEPORT balancing: which worker
// wins a connection is the scheduler's choice, so no spread is asserted.)
TEST(DaemonTest, ServesOnAUnixSocketToo) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string sock = dir.File("redhubd.sock");
  auto server = Launch(WithArgs({"--workers", "2", "--unixsocket", sock}));
  ASSERT_NE(server, nullptr);
  std::vector<Context> conns;
  for (int i = 0; i < 20; i++) {
    Context c(redisConnectUnix(sock.c_str()));
    ASSERT_TRUE(c && c->err == 0) << (c ? c->errstr : "no context");
    Reply r(static_cast<redisReply*>(redisCommand(c.get(), "SET unix-key:%d over-unix", i)));
    ASSERT_EQ(DescribeReply(r.get()), "+OK");
    conns.push_back(std::move(c));
  }
  Context tcp = ConnectHiredis(server->port());
  ASSERT_NE(tcp, nullptr);
  EXPECT_EQ(DescribeReply(Command(tcp.get(), {"GET", "unix-key:19"}).get()), "$9 over-unix");
  conns.clear();
  int status = server->Stop(milliseconds(10000));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(FileExists(sock));
}

// A hung worker (here: stopped) stops heartbeating; after --worker-timeout
// the master kills it with SIGKILL and a new worker serves its slot.
TEST(DaemonTest, SilentWorkerIsKilledAndReplaced) {
  auto server = StartRedhubd({"--workers", "2", "--worker-timeout", "1"});
  ASSERT_NE(server, nullptr);
  std::set<pid_t> before = ServingWorkerPids(server->pid());
  ASSERT_EQ(before.size(), 2u);
  pid_t hung = *before.begin();
  ASSERT_EQ(kill(hung, SIGSTOP), 0);
  EXPECT_TRUE(server->WaitForLogLine("(pid " + std::to_string(hung) + ") silent for"))
      << server->Log();
  EXPECT_TRUE(WaitUntil([&] {
    std::set<pid_t> now = ServingWorkerPids(server->pid());
    return now.size() == 2 && !now.count(hung);
  })) << server->Log();
  EXPECT_FALSE(ProcessExists(hung) && ProcessTitle(hung).starts_with("redhubd: worker"));
  Context c = ConnectHiredis(server->port());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"PING"}).get()), "+PONG");
}

// Without --workers, one worker per CPU the daemon may use: started with an
// affinity mask of one CPU (as taskset or a container's cpuset would), it
// forks one.
TEST(DaemonTest, DefaultWorkerCountFollowsTheAffinityMask) {
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  if (CPU_COUNT(&all) < 2) GTEST_SKIP() << "one CPU only: nothing to narrow";
  int first = 0;
  while (!CPU_ISSET(first, &all)) first++;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  // The daemon inherits the mask of the thread that forks it.
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  auto narrowed = StartRedhubd();
  ASSERT_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
  ASSERT_NE(narrowed, nullptr);
  EXPECT_TRUE(WaitUntil([&] { return ServingWorkerPids(narrowed->pid()).size() == 1; }));
  EXPECT_EQ(ChildPids(narrowed->pid()).size(), 1u);
  EXPECT_EQ(narrowed->Stop(), 0);
}

// Workers never outlive a killed master (PR_SET_PDEATHSIG), nor does the
// admin process.
TEST(DaemonTest, WorkersDieWithAKilledMaster) {
  uint16_t admin = PickFreePort();
  auto server = StartRedhubd({"--workers", "2", "--admin-port", std::to_string(admin)});
  ASSERT_NE(server, nullptr);
  std::vector<pid_t> children;
  ASSERT_TRUE(WaitUntil([&] {
    children = ChildPids(server->pid());
    return children.size() == 3;  // two workers and the admin process
  })) << server->Log();
  ASSERT_TRUE(server->Signal(SIGKILL));
  int status = 0;
  ASSERT_TRUE(server->WaitExit(kTimeout, &status));
  EXPECT_TRUE(WaitUntil([&] {
    for (pid_t p : children) {
      if (ProcessExists(p) && ProcessTitle(p).starts_with("redhubd:")) return false;
    }
    return true;
  })) << "a child of the killed master is still running";
  // The segments it leaves are replaced by the next start on this port.
  shm::Store::Remove("/redhub-" + std::to_string(server->port()));
  shm::CounterArea::Remove("/redhub-" + std::to_string(server->port()) + "-stats");
}

// SIGUSR2 right behind a SIGHUP arrives while the reload's new workers are
// starting: the upgrade waits for them instead of being refused, then runs
// (same master pid, every worker new, the data still there).
TEST(DaemonTest, UpgradeDuringAReloadIsDeferredNotRefused) {
  auto server = StartRedhubd({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  {
    Context c = ConnectHiredis(server->port());
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(DescribeReply(Command(c.get(), {"SET", "k", "v"}).get()), "+OK");
  }
  std::set<pid_t> before = ServingWorkerPids(server->pid());
  ASSERT_TRUE(server->Signal(SIGHUP));
  ASSERT_TRUE(server->Signal(SIGUSR2));
  ASSERT_TRUE(server->WaitForLogLine("Upgraded in place")) << server->Log();
  EXPECT_TRUE(WaitUntil([&] { return AllWorkersReplaced(server->pid(), before, 2); }))
      << server->Log();
  EXPECT_EQ(server->Log().find("Upgrade refused"), std::string::npos) << server->Log();
  Context c = ConnectHiredis(server->port());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", "k"}).get()), "$1 v");
}

// ---- 6. data across reload and upgrade ----

TEST(DaemonTest, KeysSurviveReloadAndUpgrade) {
  constexpr size_t kWorkers = 2;
  auto server = StartRedhubd({"--workers", std::to_string(kWorkers)});
  ASSERT_NE(server, nullptr);
  const pid_t master = server->pid();
  {
    Context c = ConnectHiredis(server->port());
    ASSERT_NE(c, nullptr);
    SetKeys(c.get(), 100, "key:");
  }

  std::set<pid_t> before = ServingWorkerPids(master);
  ASSERT_EQ(before.size(), kWorkers);
  ASSERT_TRUE(server->Signal(SIGHUP));
  ASSERT_TRUE(server->WaitForLogLine("Reloaded:")) << server->Log();
  ASSERT_TRUE(
      WaitUntil([&] { return AllWorkersReplaced(master, before, kWorkers); }, milliseconds(10000)))
      << "before " << DescribePids(before) << ", now " << DescribePids(ServingWorkerPids(master));
  {
    Context c = ConnectHiredis(server->port());
    ASSERT_NE(c, nullptr);
    ExpectKeys(c.get(), 100, "key:", "after the reload");
  }

  before = ServingWorkerPids(master);
  ASSERT_TRUE(server->Signal(SIGUSR2));
  ASSERT_TRUE(server->WaitForLogLine("Upgraded in place")) << server->Log();
  ASSERT_TRUE(
      WaitUntil([&] { return AllWorkersReplaced(master, before, kWorkers); }, milliseconds(10000)))
      << "before " << DescribePids(before) << ", now " << DescribePids(ServingWorkerPids(master));
  EXPECT_TRUE(server->Running());
  EXPECT_EQ(ProcessTitle(master), "redhubd: master");
  {
    Context c = ConnectHiredis(server->port());
    ASSERT_NE(c, nullptr);
    ExpectKeys(c.get(), 100, "key:", "after the upgrade");
    EXPECT_EQ(DescribeReply(Command(c.get(), {"DBSIZE"}).get()), ":100");
  }
  EXPECT_EQ(server->Stop(milliseconds(10000)), 0);
}

// ---- 7. --shm-keep ----

TEST(DaemonTest, ShmKeepKeepsKeysAndTtlsAcrossARestart) {
  const std::string shm_name = UniqueShmName("keep");
  SegmentGuard segment{shm_name};
  const std::vector<std::string> args = {"--workers",  "2",      "--maxmemory", "16mb",
                                         "--shm-name", shm_name, "--shm-keep"};
  int64_t ttl_before = 0;
  {
    auto server = Launch(WithArgs(args));
    ASSERT_NE(server, nullptr);
    Context c = ConnectHiredis(server->port());
    ASSERT_NE(c, nullptr);
    SetKeys(c.get(), 20, "plain:");
    for (int i = 0; i < 20; i++) {
      std::string k = "ttl:" + std::to_string(i);
      ASSERT_EQ(DescribeReply(Command(c.get(), {"SET", k, "value-" + k, "EX", "1000"}).get()),
                "+OK");
    }
    Reply ttl = Command(c.get(), {"PTTL", "ttl:0"});
    ASSERT_TRUE(ttl && ttl->type == REDIS_REPLY_INTEGER) << DescribeReply(ttl.get());
    ttl_before = ttl->integer;
    c.reset();
    EXPECT_EQ(server->Stop(), 0);
  }
  EXPECT_TRUE(FileExists(ShmPath(shm_name))) << "--shm-keep did not keep the segment";

  auto server = Launch(WithArgs(args));
  ASSERT_NE(server, nullptr);
  Context c = ConnectHiredis(server->port());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"DBSIZE"}).get()), ":40");
  ExpectKeys(c.get(), 20, "plain:", "after a restart");
  ExpectKeys(c.get(), 20, "ttl:", "after a restart");
  for (int i = 0; i < 20; i++) {
    std::string k = std::to_string(i);
    EXPECT_EQ(DescribeReply(Command(c.get(), {"TTL", "plain:" + k}).get()), ":-1") << k;
    Reply ttl = Command(c.get(), {"PTTL", "ttl:" + k});
    ASSERT_TRUE(ttl && ttl->type == REDIS_REPLY_INTEGER) << DescribeReply(ttl.get());
    EXPECT_GT(ttl->integer, 900 * 1000) << k;
    // Still counting down: never more than before the restart.
    if (i == 0) {
      EXPECT_LT(ttl->integer, ttl_before);
    }
    EXPECT_LE(ttl->integer, 1000 * 1000) << k;
  }
  c.reset();
  EXPECT_EQ(server->Stop(), 0);
  EXPECT_TRUE(FileExists(ShmPath(shm_name)));
}

// Both segments are the daemon's alone (SLOWLOG keeps command arguments in
// the counter segment): owner read and write only, whatever the umask.
TEST(DaemonTest, SegmentsAreOwnerOnlyWhateverTheUmask) {
  const std::string shm_name = UniqueShmName("mode");
  SegmentGuard segment{shm_name};
  mode_t old_umask = umask(0);  // redhubd inherits it
  auto server = Launch(WithArgs({"--workers", "1", "--maxmemory", "16mb", "--shm-name", shm_name}));
  umask(old_umask);
  ASSERT_NE(server, nullptr);
  for (const std::string& path : {ShmPath(shm_name), ShmPath(shm_name) + "-stats"}) {
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0) << path << ": " << strerror(errno);
    EXPECT_EQ(st.st_mode & 07777, 0600u)
        << path << " has mode " << std::oct << (st.st_mode & 07777);
    EXPECT_EQ(st.st_uid, geteuid()) << path;
  }
  EXPECT_EQ(server->Stop(), 0);
}

// --shm-keep adopts only a segment that is ours alone: one that group or
// others may read or write, or that another uid owns, could have been read
// or changed by someone else. The start is refused (exit 1) with the path,
// owner and mode, and the segment is left as it is; put right, it is
// adopted with its data.
TEST(DaemonTest, ShmKeepRefusesASegmentOthersCouldReadOrChange) {
  const std::string shm_name = UniqueShmName("owner");
  const std::string path = ShmPath(shm_name);
  SegmentGuard segment{shm_name};
  const std::vector<std::string> args = {"--workers",  "1",      "--maxmemory", "16mb",
                                         "--shm-name", shm_name, "--shm-keep"};
  {
    auto server = Launch(WithArgs(args));
    ASSERT_NE(server, nullptr);
    Context c = ConnectHiredis(server->port());
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(DescribeReply(Command(c.get(), {"SET", "kept", "yes"}).get()), "+OK");
    c.reset();
    ASSERT_EQ(server->Stop(), 0);
  }
  ASSERT_TRUE(FileExists(path));

  struct Case {
    mode_t mode;
    uid_t uid;
  };
  std::vector<Case> cases = {{0666, geteuid()}, {0640, geteuid()}, {0604, geteuid()}};
  if (geteuid() == 0) cases.push_back({0600, 4242});  // chown needs root
  for (const Case& k : cases) {
    ASSERT_EQ(chmod(path.c_str(), k.mode), 0) << strerror(errno);
    ASSERT_EQ(chown(path.c_str(), k.uid, static_cast<gid_t>(-1)), 0) << strerror(errno);
    char mode[8];
    snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(k.mode));
    const std::string what = std::string("mode ") + mode + ", uid " + std::to_string(k.uid);
    uint16_t port = PickFreePort();
    ASSERT_NE(port, 0);
    std::vector<std::string> start = {"--bind",       "127.0.0.1", "--port", std::to_string(port),
                                      "--admin-port", "0"};
    start.insert(start.end(), args.begin(), args.end());
    ServerProcess refused("redhubd-refused");
    ASSERT_TRUE(refused.Start(REDHUBD_PATH, start));
    int status = 0;
    ASSERT_TRUE(refused.WaitExit(kTimeout, &status)) << what << "\n" << refused.Log();
    refused.Stop();  // it exited, as it should: nothing to stop, nothing to report
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << what << ": status " << status;
    std::string log = refused.Log();
    EXPECT_NE(log.find("Cannot start: store " + shm_name), std::string::npos) << what << "\n"
                                                                              << log;
    EXPECT_NE(log.find("(" + path + ") is owned by uid " + std::to_string(k.uid) + " with mode " +
                       mode + ": refusing it"),
              std::string::npos)
        << what << "\n"
        << log;
    // Refused, not removed or changed: the operator decides.
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0) << what;
    EXPECT_EQ(st.st_mode & 07777, k.mode) << what;
    EXPECT_EQ(st.st_uid, k.uid) << what;
  }

  ASSERT_EQ(chown(path.c_str(), geteuid(), static_cast<gid_t>(-1)), 0) << strerror(errno);
  ASSERT_EQ(chmod(path.c_str(), 0600), 0) << strerror(errno);
  auto server = Launch(WithArgs(args));
  ASSERT_NE(server, nullptr);
  Context c = ConnectHiredis(server->port());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", "kept"}).get()), "$3 yes");
  c.reset();
  EXPECT_EQ(server->Stop(), 0);
}

// ---- 7b. segments of a killed master ----

// The shm cleanup of the instance using shm_name ("redhubd: shm cleanup"
// with that -stats file open), or 0.
pid_t CleanupPid(const std::string& shm_name) {
  const std::string stats = ShmPath(shm_name) + "-stats";
  pid_t found = 0;
  if (DIR* proc = opendir("/proc")) {
    while (dirent* d = readdir(proc)) {
      pid_t pid = atoi(d->d_name);
      if (pid <= 0 || ProcessTitle(pid) != "redhubd: shm cleanup") continue;
      const std::string fds = "/proc/" + std::string(d->d_name) + "/fd";
      if (DIR* dir = opendir(fds.c_str())) {
        while (dirent* f = readdir(dir)) {
          char target[512];
          ssize_t n = readlink((fds + "/" + f->d_name).c_str(), target, sizeof(target) - 1);
          if (n > 0 && std::string(target, static_cast<size_t>(n)) == stats) found = pid;
        }
        closedir(dir);
      }
      if (found != 0) break;
    }
    closedir(proc);
  }
  return found;
}

// SIGKILLs the master and waits until every child it had has ended.
void KillMasterAndWaitForChildren(ServerProcess& server) {
  std::vector<pid_t> children = ChildPids(server.pid());
  ASSERT_TRUE(server.Signal(SIGKILL));
  int status = 0;
  ASSERT_TRUE(server.WaitExit(kTimeout, &status));
  ASSERT_TRUE(WaitUntil([&] {
    for (pid_t p : children) {
      if (!ProcessEnded(p)) return false;
    }
    return true;
  })) << "a child of the killed master is still running";
}

// A SIGKILLed master cannot remove the segments, and its workers die with
// it: the last process of the instance to exit (the shm cleanup, once the
// workers and the admin process are gone) removes both, so /dev/shm gets
// its memory back. A worker killed -9 before (it never ran any exit code)
// does not stop that.
TEST(DaemonTest, KilledMasterLeavesNoSegmentBehind) {
  const std::string shm_name = UniqueShmName("killed");
  SegmentGuard segment{shm_name};
  uint16_t admin = PickFreePort();
  ASSERT_NE(admin, 0);
  auto server = StartRedhubd({"--workers", "2", "--maxmemory", "16mb", "--shm-name", shm_name,
                              "--admin-port", std::to_string(admin)});
  ASSERT_NE(server, nullptr);
  std::set<pid_t> workers;
  ASSERT_TRUE(WaitUntil([&] {
    workers = ServingWorkerPids(server->pid());
    return workers.size() == 2 && ChildPids(server->pid()).size() == 3;
  })) << server->Log();
  ASSERT_TRUE(FileExists(ShmPath(shm_name)));
  ASSERT_TRUE(FileExists(ShmPath(shm_name) + "-stats"));
  EXPECT_NE(CleanupPid(shm_name), 0) << "no shm cleanup process";

  pid_t victim = *workers.begin();
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  ASSERT_TRUE(WaitUntil([&] {
    std::set<pid_t> now = ServingWorkerPids(server->pid());
    return now.size() == 2 && !now.count(victim);
  })) << "the killed worker was not replaced\n"
      << server->Log();

  KillMasterAndWaitForChildren(*server);
  EXPECT_TRUE(WaitUntil([&] {
    return !FileExists(ShmPath(shm_name)) && !FileExists(ShmPath(shm_name) + "-stats");
  })) << "segments left behind\n"
      << server->Log();
  EXPECT_TRUE(WaitUntil([&] { return CleanupPid(shm_name) == 0; }));
  EXPECT_NE(server->Log().find("did not stop cleanly: removed " + ShmPath(shm_name) + " and " +
                               ShmPath(shm_name) + "-stats"),
            std::string::npos)
      << server->Log();
}

// With --shm-keep a killed master's store stays, data and all, as at a
// clean stop; the -stats segment goes, as at a clean stop.
TEST(DaemonTest, KilledMasterWithShmKeepKeepsTheStore) {
  const std::string shm_name = UniqueShmName("killed-keep");
  SegmentGuard segment{shm_name};
  const std::vector<std::string> args = {"--workers",  "2",      "--maxmemory", "16mb",
                                         "--shm-name", shm_name, "--shm-keep"};
  {
    auto server = StartRedhubd(args);
    ASSERT_NE(server, nullptr);
    Context c = ConnectHiredis(server->port());
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(DescribeReply(Command(c.get(), {"SET", "kept", "yes"}).get()), "+OK");
    c.reset();
    KillMasterAndWaitForChildren(*server);
    EXPECT_TRUE(WaitUntil([&] { return !FileExists(ShmPath(shm_name) + "-stats"); }))
        << server->Log();
    EXPECT_TRUE(WaitUntil([&] { return CleanupPid(shm_name) == 0; }));
    EXPECT_TRUE(FileExists(ShmPath(shm_name))) << "--shm-keep: the store must stay";
  }
  auto server = StartRedhubd(args);
  ASSERT_NE(server, nullptr);
  Context c = ConnectHiredis(server->port());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", "kept"}).get()), "$3 yes");
  c.reset();
  EXPECT_EQ(server->Stop(), 0);
  EXPECT_TRUE(FileExists(ShmPath(shm_name)));
}

// The cleanup of a killed instance never removes what a later instance on
// the same name made. Here the old cleanup is stopped (SIGSTOP) until a new
// daemon has replaced both segments, then let go: it finds other files under
// the names and removes nothing. And while a process of the old instance
// still holds it (the test takes its shared lock, as every process of the
// instance does), a new start is refused instead of racing the cleanup.
TEST(DaemonTest, StaleCleanupNeverRemovesANewInstancesSegments) {
  const std::string shm_name = UniqueShmName("stale");
  const std::string stats = ShmPath(shm_name) + "-stats";
  SegmentGuard segment{shm_name};
  const std::vector<std::string> args = {"--workers", "1",          "--maxmemory",
                                         "16mb",      "--shm-name", shm_name};
  auto old = StartRedhubd(args);
  ASSERT_NE(old, nullptr);
  pid_t cleanup = CleanupPid(shm_name);
  ASSERT_NE(cleanup, 0);
  int straggler = open(stats.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(straggler, 0) << strerror(errno);
  ASSERT_EQ(flock(straggler, LOCK_SH), 0) << strerror(errno);
  ASSERT_EQ(kill(cleanup, SIGSTOP), 0);
  KillMasterAndWaitForChildren(*old);

  {
    uint16_t port = PickFreePort();
    ASSERT_NE(port, 0);
    ServerProcess refused("redhubd-refused");
    std::vector<std::string> start = {"--bind",       "127.0.0.1", "--port", std::to_string(port),
                                      "--admin-port", "0"};
    start.insert(start.end(), args.begin(), args.end());
    ASSERT_TRUE(refused.Start(REDHUBD_PATH, start));
    int status = 0;
    ASSERT_TRUE(refused.WaitExit(kTimeout, &status)) << refused.Log();
    refused.Stop();  // it exited, as it should
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
    EXPECT_NE(refused.Log().find(stats + " is still held by processes of the redhubd"),
              std::string::npos)
        << refused.Log();
  }
  close(straggler);

  struct stat before;
  ASSERT_EQ(stat(stats.c_str(), &before), 0);
  auto fresh = StartRedhubd(args);
  ASSERT_NE(fresh, nullptr);
  struct stat after;
  ASSERT_EQ(stat(stats.c_str(), &after), 0);
  EXPECT_NE(after.st_ino, before.st_ino) << "the new instance made its own -stats segment";
  ASSERT_EQ(kill(cleanup, SIGCONT), 0);
  EXPECT_TRUE(WaitUntil([&] { return ProcessEnded(cleanup); })) << "the old cleanup did not end";
  EXPECT_TRUE(FileExists(ShmPath(shm_name)));
  EXPECT_TRUE(FileExists(stats));
  Context c = ConnectHiredis(fresh->port());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"SET", "k", "v"}).get()), "+OK");
  c.reset();
  EXPECT_EQ(fresh->Stop(), 0);
  EXPECT_FALSE(FileExists(ShmPath(shm_name)));
  EXPECT_FALSE(FileExists(stats));
}

// Another local user's file of the -stats name, locked by them: it is no
// instance of ours and must not keep the daemon from starting (root replaces
// it), whoever holds a lock on it.
TEST(DaemonTest, AnotherUsersLockedStatsFileDoesNotBlockTheStart) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a file another user owns";
  const std::string shm_name = UniqueShmName("foreign");
  const std::string stats = ShmPath(shm_name) + "-stats";
  SegmentGuard segment{shm_name};
  int foreign = open(stats.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  ASSERT_GE(foreign, 0) << strerror(errno);
  ASSERT_EQ(fchown(foreign, 65534, 65534), 0) << strerror(errno);
  ASSERT_EQ(flock(foreign, LOCK_SH), 0) << strerror(errno);
  auto server = StartRedhubd({"--workers", "1", "--maxmemory", "16mb", "--shm-name", shm_name});
  close(foreign);
  ASSERT_NE(server, nullptr);
  struct stat st;
  ASSERT_EQ(stat(stats.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, geteuid()) << "the daemon made its own -stats segment";
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(server->Stop(), 0);
}

// ---- 8. a segment in use ----

TEST(DaemonTest, SecondDaemonOnASegmentInUseExitsAtOnce) {
  const std::string shm_name = UniqueShmName("inuse");
  SegmentGuard segment{shm_name};
  auto first = Launch(WithArgs({"--workers", "2", "--maxmemory", "16mb", "--shm-name", shm_name}));
  ASSERT_NE(first, nullptr);
  {
    Context c = ConnectHiredis(first->port());
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(DescribeReply(Command(c.get(), {"SET", "mine", "first"}).get()), "+OK");
  }
  std::set<pid_t> users = {first->pid()};
  for (pid_t p : ChildPids(first->pid())) users.insert(p);

  uint16_t port = PickFreePort();
  ASSERT_NE(port, 0);
  ServerProcess second("redhubd-second");
  ASSERT_TRUE(second.Start(
      REDHUBD_PATH, {"--bind", "127.0.0.1", "--port", std::to_string(port), "--admin-port", "0",
                     "--workers", "2", "--maxmemory", "16mb", "--shm-name", shm_name}));
  int status = 0;
  ASSERT_TRUE(second.WaitExit(kTimeout, &status)) << second.Log();
  second.Stop();  // it exited, as it should: nothing to stop, nothing to report
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << status;
  std::string log = second.Log();
  size_t at = log.find("in use by pid ");
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_NE(log.find(shm_name), std::string::npos) << log;
  pid_t named = atoi(log.c_str() + at + 14);
  EXPECT_TRUE(users.count(named)) << "named pid " << named << ", users " << DescribePids(users);

  // The first one is unharmed: same data, still serving.
  EXPECT_TRUE(FileExists(ShmPath(shm_name)));
  Context c = ConnectHiredis(first->port());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", "mine"}).get()), "$5 first");
  c.reset();
  EXPECT_EQ(first->Stop(), 0);
  EXPECT_FALSE(FileExists(ShmPath(shm_name)));
}

// ---- 9. an incompatible kept segment ----

TEST(DaemonTest, IncompatibleKeptSegmentIsRefusedWithShmKeepAndReplacedWithout) {
  const std::string shm_name = UniqueShmName("junk");
  SegmentGuard segment{shm_name};
  {
    int fd = open(ShmPath(shm_name).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << strerror(errno);
    std::string zeros(4096, '\0');
    ASSERT_EQ(write(fd, zeros.data(), zeros.size()), 4096);
    close(fd);
  }
  uint16_t port = PickFreePort();
  ASSERT_NE(port, 0);
  std::vector<std::string> args = {"--bind",       "127.0.0.1", "--port",     std::to_string(port),
                                   "--admin-port", "0",         "--workers",  "1",
                                   "--maxmemory",  "16mb",      "--shm-name", shm_name};
  std::vector<std::string> keep_args = args;
  keep_args.push_back("--shm-keep");
  ServerProcess kept("redhubd-keep");
  ASSERT_TRUE(kept.Start(REDHUBD_PATH, keep_args));
  int status = 0;
  ASSERT_TRUE(kept.WaitExit(kTimeout, &status)) << kept.Log();
  kept.Stop();  // it exited, as it should: nothing to stop, nothing to report
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << status;
  std::string log = kept.Log();
  EXPECT_NE(log.find("Cannot start: store " + shm_name), std::string::npos) << log;
  EXPECT_NE(log.find("shared memory segment " + shm_name), std::string::npos) << log;
  EXPECT_NE(log.find("remove /dev/shm" + shm_name + ", or start without --shm-keep"),
            std::string::npos)
      << log;
  // Refused, not destroyed: the operator decides.
  EXPECT_EQ(ReadWholeFile(ShmPath(shm_name)), std::string(4096, '\0'));

  // Without --shm-keep a start replaces it.
  auto server = Launch(WithArgs({"--workers", "1", "--maxmemory", "16mb", "--shm-name", shm_name}));
  ASSERT_NE(server, nullptr);
  Context c = ConnectHiredis(server->port());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(DescribeReply(Command(c.get(), {"SET", "k", "v"}).get()), "+OK");
  EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", "k"}).get()), "$1 v");
  c.reset();
  EXPECT_EQ(server->Stop(), 0);
}

// ---- 10. bad flags ----

// A /dev/shm smaller than the store (Docker's default is 64 MB) is refused
// at start with the sizes, before anything is taken from it. Run in a mount
// namespace of its own with a 64 MB /dev/shm, as a container would have.
TEST(DaemonTest, TooSmallDevShmIsRefusedWithTheSizes) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a mount namespace";
  RunResult probe = RunCommand({"unshare", "-m", "true"}, kTimeout);
  if (!probe.ok()) GTEST_SKIP() << "no mount namespaces here: " << probe.Describe();
  std::string script = "mount -t tmpfs -o size=64m tmpfs /dev/shm && exec " +
                       std::string(REDHUBD_PATH) + " --bind 127.0.0.1 --port " +
                       std::to_string(PickFreePort()) + " --admin-port 0 --shm-name " +
                       UniqueShmName("small") + " && exit 0";
  RunResult r = RunCommand({"unshare", "-m", "sh", "-c", script}, kTimeout);
  ASSERT_TRUE(r.started);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  // The default store: maxmemory 256 MB in a segment of about 355 MB.
  EXPECT_NE(r.err.find("not enough space in /dev/shm: the segment needs 355 MB, 64 MB are free"),
            std::string::npos)
      << r.Describe();
  EXPECT_NE(r.err.find("--shm-size"), std::string::npos) << r.Describe();
}

// This process's memory cgroup directory and the file that sets a limit
// there: (v1 dir, "memory.limit_in_bytes") or (v2 dir, "memory.max"); empty
// if neither is found.
std::pair<std::string, std::string> MemoryCgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  std::string v2;
  while (std::getline(in, line)) {
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",";
    std::string path = line.substr(b + 1);
    if (controllers.find(",memory,") != std::string::npos) {
      return {"/sys/fs/cgroup/memory" + path, "memory.limit_in_bytes"};
    }
    if (line.compare(0, a, "0") == 0 && controllers == ",,") v2 = "/sys/fs/cgroup" + path;
  }
  if (!v2.empty() && FileExists(v2 + "/memory.max")) return {v2, "memory.max"};
  return {};
}

// A memory limit below the segment (docker --memory, systemd MemoryMax=):
// shared memory is charged to the cgroup, so reserving the segment would get
// the daemon OOM-killed with nothing in its log. It is refused with the
// sizes instead. Run in a child cgroup with a 128 MB limit.
TEST(DaemonTest, MemoryLimitBelowTheSegmentIsRefusedWithTheSizes) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a cgroup";
  auto [parent, limit_file] = MemoryCgroup();
  if (parent.empty()) GTEST_SKIP() << "no memory cgroup found";
  std::string dir = parent + "/redhub-it-" + std::to_string(getpid());
  if (mkdir(dir.c_str(), 0755) != 0)
    GTEST_SKIP() << "cannot make " << dir << ": " << strerror(errno);
  struct Remove {
    std::string dir;
    ~Remove() { rmdir(dir.c_str()); }
  } remove{dir};
  {
    // Pure cgroup v2 gives a child of a cgroup with processes no memory
    // controller: no limit to set here.
    std::ofstream limit(dir + "/" + limit_file);
    limit << (128 << 20);
    limit.flush();
    if (!limit) GTEST_SKIP() << "cannot set " << dir << "/" << limit_file;
  }
  const std::string shm_name = UniqueShmName("memlimit");
  SegmentGuard segment{shm_name};  // a daemon killed half way would leave it
  std::string script = "echo $$ > " + dir + "/cgroup.procs && exec " + std::string(REDHUBD_PATH) +
                       " --bind 127.0.0.1 --port " + std::to_string(PickFreePort()) +
                       " --admin-port 0 --shm-name " + shm_name;
  RunResult r = RunCommand({"sh", "-c", script}, kTimeout);
  ASSERT_TRUE(r.started);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("not enough memory under this process's cgroup limit: the segment needs "
                       "355 MB, the limit leaves "),
            std::string::npos)
      << r.Describe();
}

TEST(DaemonTest, BadFlagsExitWithCodeTwoNamingTheFlagAndLeaveNoSegment) {
  const std::string shm_name = UniqueShmName("flags");
  SegmentGuard segment{shm_name};
  const std::vector<std::vector<std::string>> cases = {
      {"--maxmemory", "12qb"},
      {"--workers", "0"},
      {"--maxmemory-policy", "bogus"},
      {"--port", "70000"},
  };
  for (const auto& bad : cases) {
    std::vector<std::string> argv = {REDHUBD_PATH, "--bind",     "127.0.0.1", "--admin-port",
                                     "0",          "--shm-name", shm_name};
    argv.insert(argv.end(), bad.begin(), bad.end());
    RunResult r = RunCommand(argv, kTimeout);
    std::string what = bad[0] + " " + bad[1];
    ASSERT_TRUE(r.started) << what;
    EXPECT_FALSE(r.timed_out) << what;
    EXPECT_EQ(r.exit_code, 2) << what << ": " << r.Describe();
    EXPECT_NE(r.err.find(bad[0]), std::string::npos) << what << ": " << r.Describe();
    // One message, not the same one twice.
    EXPECT_EQ(r.err.find("Run with --help"), r.err.rfind("Run with --help"))
        << what << ": " << r.Describe();
    EXPECT_FALSE(FileExists(ShmPath(shm_name))) << what;
    EXPECT_FALSE(FileExists(ShmPath(shm_name + "-stats"))) << what;
  }
  // --help still succeeds.
  RunResult help = RunCommand({REDHUBD_PATH, "--help"}, kTimeout);
  EXPECT_TRUE(help.ok()) << help.Describe();
  EXPECT_NE(help.out.find("--maxmemory"), std::string::npos);
}

}  // namespace
}  // namespace redhub::integration
