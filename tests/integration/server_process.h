// Support for the integration tests: start the real binaries (redhubd,
// memory_kv) as child processes on free ports, run external clients
// (redis-cli, redis-benchmark, python) with a deadline, and talk to servers
// over raw sockets where every wait is bounded.
//
//   auto server = StartRedhubd({"--maxclients", "2"});
//   ASSERT_NE(server, nullptr);
//   Socket s = Socket::Connect(server->port());
//   ASSERT_TRUE(s.SendAll("PING\r\n"));
//   EXPECT_EQ(s.RecvN(7), "+PONG\r\n");
//
// Nothing here sleeps in place of a condition: waits poll(2) a socket or
// re-check a condition every 10 ms until a deadline.
#pragma once

#include <hiredis/hiredis.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace redhub::integration {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// The bound on every single wait unless a test says otherwise.
inline constexpr milliseconds kTimeout{5000};

// ---- external programs ----

struct RunResult {
  bool started = false;    // the program could be executed
  bool timed_out = false;  // killed at the deadline
  int exit_code = -1;      // if it exited
  int term_signal = 0;     // if a signal ended it
  std::string out;         // everything it wrote to stdout
  std::string err;         // and to stderr

  bool ok() const { return started && !timed_out && term_signal == 0 && exit_code == 0; }
  // The status and both outputs, for assertion messages.
  std::string Describe() const;
};

// Runs argv[0] (a path, or a name looked up in PATH) with stdin from
// /dev/null, collects its output and waits for it to end; kills it at the
// timeout.
RunResult RunCommand(const std::vector<std::string>& argv, milliseconds timeout);
// Runs a Python script (given as text) with Debian's python3, which has
// redis-py; args become sys.argv[1:].
RunResult RunPython(const std::string& script, const std::vector<std::string>& args,
                    milliseconds timeout);

// ---- processes ----

// The children of a process, from /proc, in no particular order.
std::vector<pid_t> ChildPids(pid_t parent);
// A process's command line as ps(1) shows it: the arguments joined by spaces,
// trailing NULs dropped. "" if the process is gone.
std::string ProcessTitle(pid_t pid);
// Whether the process exists (a zombie counts).
bool ProcessExists(pid_t pid);

// ---- raw sockets ----

// A port on 127.0.0.1 that was free a moment ago (bind to port 0, read the
// port, close). Another process can take it before the caller does; starting
// a server retries on a bind failure. Returns 0 on failure.
uint16_t PickFreePort();

// A directory of its own under $TMPDIR (or /tmp), removed with what it
// holds. ok() is false if it could not be made.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Writes text to File(name) and returns that path.
  std::string Write(const std::string& name, const std::string& text) const;

 private:
  std::string path_;
};

// A non-blocking TCP connection to 127.0.0.1 whose every operation has a
// deadline.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() { Close(); }
  Socket(Socket&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // Connects to 127.0.0.1:port. On failure the socket is not valid() and
  // *error (if given) says why. recv_buffer > 0 sets SO_RCVBUF before the
  // handshake (a slow reader: the server's replies back up in its kernel).
  static Socket Connect(uint16_t port, milliseconds timeout = kTimeout,
                        std::string* error = nullptr, int recv_buffer = 0);

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void Close();

  // Sends all of data. Returns false on an error (errno in *err) or at the
  // timeout (*err = ETIMEDOUT).
  bool SendAll(std::string_view data, milliseconds timeout = kTimeout, int* err = nullptr);
  // Sends as much as the socket takes without waiting. Returns bytes sent,
  // 0 if the socket is full, -1 on an error (errno in *err).
  ssize_t SendSome(std::string_view data, int* err = nullptr);

  // One recv(2) that waits at most timeout. Returns the bytes read (> 0),
  // 0 at EOF, -1 on an error (errno in *err; ECONNRESET counts as an error)
  // or -2 at the timeout.
  ssize_t RecvOnce(char* buf, size_t cap, milliseconds timeout, int* err = nullptr);
  // Reads until n bytes have come, or EOF, an error or the deadline; returns
  // what came (shorter than n in the latter cases).
  std::string RecvN(size_t n, milliseconds timeout = kTimeout);
  // Reads until what came ends with suffix, or EOF, an error or the deadline.
  std::string RecvUntil(std::string_view suffix, milliseconds timeout = kTimeout);
  // Reads until the peer closes the connection (EOF, or a reset). Appends what
  // came to *data. Returns true if it closed before the deadline.
  bool WaitForClose(milliseconds timeout = kTimeout, std::string* data = nullptr);

 private:
  int fd_ = -1;
};

// ---- RESP over hiredis ----

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

struct ContextDeleter {
  void operator()(redisContext* c) const {
    if (c != nullptr) redisFree(c);
  }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

// hiredis's reply parser over bytes from anywhere (a raw Socket, mostly).
class ReplyReader {
 public:
  ReplyReader();
  ~ReplyReader();
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;

  void Feed(std::string_view data);
  // The next complete reply, or null if more bytes are needed or the bytes
  // are not RESP (then error() is true).
  Reply Next();
  bool error() const;
  // Bytes fed and not yet part of a returned reply.
  size_t buffered() const;
  // Next(), reading from s as needed; null at EOF, an error or the timeout.
  Reply Read(Socket& s, milliseconds timeout = kTimeout);

 private:
  redisReader* reader_;
};

// Sends one command on s and reads its reply.
Reply SocketCommand(Socket& s, const std::vector<std::string>& argv,
                    milliseconds timeout = kTimeout);
// Sends one command on s and returns its reply's exact bytes ("" on EOF, an
// error or the timeout), for byte-for-byte comparisons between servers.
// RESP2 replies only: Debian's hiredis (0.14) cannot parse RESP3's types.
std::string RawCommand(Socket& s, const std::vector<std::string>& argv,
                       milliseconds timeout = kTimeout);

// Sends each command of script to ours and to reference (a connection to a
// redis-server the test started) and expects the same reply bytes from
// both, command by command; every command must get a reply from the
// reference. Call under ASSERT_NO_FATAL_FAILURE.
void ExpectRepliesAsReference(Socket& ours, Socket& reference,
                              const std::vector<std::vector<std::string>>& script);

// A blocking hiredis connection with send and receive timeouts; null (and
// *error set) if it could not connect.
Context ConnectHiredis(uint16_t port, milliseconds timeout = kTimeout,
                       std::string* error = nullptr);

// Runs one command; null on an I/O error or timeout.
Reply Command(redisContext* c, const std::vector<std::string>& argv);

// The reply as text for assertion messages: "+OK", "-ERR ...", "$3 abc"...
std::string DescribeReply(const redisReply* r);

// One field of an INFO reply ("field:value" lines), if present.
std::optional<std::string> InfoField(std::string_view info, std::string_view field);
// INFO <section> over c, then the field as an integer; nullopt if the
// command failed or the field is missing or not a number.
std::optional<int64_t> InfoInt(redisContext* c, std::string_view section, std::string_view field);

// ---- RESP3 bytes and who serves a connection ----

// The length of the first complete RESP2/RESP3 reply in data from `at`, 0
// if it is not complete (hiredis 0.14 cannot parse RESP3, and HELLO 3
// sessions need their replies' exact bytes).
size_t ReplyLength(std::string_view data, size_t at = 0);
// Sends argv and returns the exact bytes of its one reply, RESP3 types
// included; "" on EOF, an error or the timeout. One command at a time, so
// nothing after the reply is pending.
std::string RawReply(Socket& s, const std::vector<std::string>& argv);

// The integer after `key` in text ("pid=" in CLIENT INFO), if any.
std::optional<int64_t> FieldAfter(std::string_view text, std::string_view key);
// The redhubd worker serving a connection: CLIENT INFO's worker= and pid=.
struct WorkerId {
  int slot = -1;
  pid_t pid = -1;
};
std::optional<WorkerId> ParseClientInfo(const redisReply* r);
std::optional<WorkerId> ServedBy(redisContext* c);
std::optional<WorkerId> ServedBy(Socket& s);

// Re-checks cond every 10 ms until it holds (true) or the timeout (false).
bool WaitUntil(const std::function<bool()>& cond, milliseconds timeout = kTimeout);

// ---- server processes ----

// A server run as a child process with stdout and stderr in a temporary log
// file. The destructor stops it (and fails the test if it had exited by
// itself or does not exit with status 0 on SIGTERM, unless the test called
// Stop() or Signal()), prints the log if the current test has failed, and
// removes the file.
class ServerProcess {
 public:
  explicit ServerProcess(std::string name) : name_(std::move(name)) {}
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Forks and execs binary with args. The port is set separately: by the
  // caller who chose it, or from the server's own announcement.
  bool Start(const std::string& binary, const std::vector<std::string>& args);
  void set_port(uint16_t port) { port_ = port; }
  // RLIMIT_NOFILE for the child, set after fork and before exec (as `ulimit
  // -n` would); 0 and 0 (the default) inherit the test's.
  void set_nofile_limit(uint64_t soft, uint64_t hard) {
    nofile_soft_ = soft;
    nofile_hard_ = hard;
  }
  // "NAME=value" entries added to the child's environment (the test's own
  // environment otherwise).
  void set_env(std::vector<std::string> env) { env_ = std::move(env); }
  // AUTH's arguments ({"password"} or {"user", "password"}) that WaitReady
  // sends before its PING, for a server that requires a password; empty
  // (the default): none.
  void set_auth(std::vector<std::string> auth) { auth_ = std::move(auth); }
  const std::vector<std::string>& auth() const { return auth_; }

  // Connects and PINGs every 10 ms until "+PONG" comes back, then QUITs and
  // waits for the server to close, so that the probe connection is gone
  // before any test counts clients. False if the process exits or the
  // timeout passes first.
  bool WaitReady(milliseconds timeout = kTimeout);
  // Waits for a log line containing needle; returns that line.
  std::optional<std::string> WaitForLogLine(std::string_view needle,
                                            milliseconds timeout = kTimeout);

  // Sends sig to the process. False if it has already been reaped.
  bool Signal(int sig);
  // Waits for the process to end; true (and the waitpid status in *status)
  // if it did within the timeout.
  bool WaitExit(milliseconds timeout, int* status);
  // SIGTERM, a bounded wait, then SIGKILL (a test failure). Returns the
  // waitpid status, or -1 if the process was never started.
  int Stop(milliseconds timeout = kTimeout);
  // Still running (not exited, or exited and not yet reaped by us)?
  bool Running();

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  const std::string& name() const { return name_; }
  std::string Log() const;

 private:
  void Reap(int status);

  std::string name_;
  std::string log_path_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_status_ = 0;
  bool stopped_ = false;    // Stop() was called
  bool signalled_ = false;  // Signal() was called
  uint16_t port_ = 0;
  uint64_t nofile_soft_ = 0;
  uint64_t nofile_hard_ = 0;
  std::vector<std::string> env_;
  std::vector<std::string> auth_;
};

// How to start a server besides its flags.
struct StartOptions {
  uint64_t nofile_soft = 0;  // RLIMIT_NOFILE, see set_nofile_limit
  uint64_t nofile_hard = 0;
  std::string binary = {};            // "" is REDHUBD_PATH; REDHUBD_CRASHTEST_PATH for crash points
  std::vector<std::string> env = {};  // added to the environment, see set_env
  std::vector<std::string> auth = {};  // AUTH's arguments for the readiness probe, see set_auth
};

// redhubd on a free port of 127.0.0.1 with extra flags, ready to serve (and
// checked to be our process: INFO's process_id is its pid). Retries on a
// bind failure, up to 3 starts. Null (after an ADD_FAILURE with the log) if
// it does not come up.
std::unique_ptr<ServerProcess> StartRedhubd(const std::vector<std::string>& extra_args = {},
                                            const StartOptions& options = {});
// The reference: redis-server (Debian's 7.0) on a free port of 127.0.0.1,
// without persistence (it writes no file), ready to serve, checked to be
// ours as StartRedhubd does. Retries on a bind failure, up to 3 starts.
// Null (after an ADD_FAILURE) if it is not installed or does not come up.
// Tests compare redhubd's replies with its replies byte for byte.
// extra_args come after the defaults (e.g. {"--requirepass", "pw"} or
// {"--aclfile", path}); auth is AUTH's arguments for the readiness probe
// when the default user needs a password (see set_auth).
std::unique_ptr<ServerProcess> StartRedisServer(const std::vector<std::string>& extra_args = {},
                                                const std::vector<std::string>& auth = {});
// memory_kv on port 0, with the port read from its "listening on" line.
std::unique_ptr<ServerProcess> StartMemoryKv(const StartOptions& options = {});

// The servers most tests run against.
enum class ServerKind { kRedhubd, kMemoryKv };
std::unique_ptr<ServerProcess> StartServer(ServerKind kind);
// "redhubd" / "memory_kv", for parameterised test names.
std::string KindName(ServerKind kind);
// For GoogleTest's messages.
inline void PrintTo(ServerKind kind, std::ostream* os) { *os << KindName(kind); }

// The RESP multibulk encoding of one command (redisFormatCommandArgv).
std::string FormatCommand(const std::vector<std::string>& argv);

}  // namespace redhub::integration
