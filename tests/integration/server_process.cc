#include "server_process.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <thread>

namespace redhub::integration {
namespace {

// A test that writes to a connection the server has closed must see EPIPE,
// not die. Children get the default disposition back before exec.
const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

// Polls fd for events until the deadline. Returns poll's revents, 0 at the
// deadline, -1 on an error.
int PollFor(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, RemainingMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    return n == 0 ? 0 : p.revents;
  }
}

// argv as the char* array exec wants; built before fork.
std::vector<char*> ExecArgv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  out.reserve(argv.size() + 1);
  for (const std::string& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

// In a forked child: the state exec should start from. Async-signal-safe
// calls only.
void PrepareChild(pid_t parent) {
  // Servers must not outlive a test binary that crashes or is killed.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  signal(SIGPIPE, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

void ExecOrDie(const std::vector<char*>& argv, char* const* envp = nullptr) {
  if (envp != nullptr && strchr(argv[0], '/') != nullptr) {
    execve(argv[0], argv.data(), envp);
  } else if (strchr(argv[0], '/') != nullptr) {
    execv(argv[0], argv.data());
  } else {
    execvp(argv[0], argv.data());
  }
  static const char kMsg[] = "exec failed\n";
  ssize_t ignored = write(2, kMsg, sizeof(kMsg) - 1);
  (void)ignored;
  _exit(127);
}

// waitpid with a deadline: re-checks every few milliseconds.
bool WaitPid(pid_t pid, Clock::time_point deadline, int* status) {
  while (true) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return false;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
}

// The whole file, or what was read before an error. With read(2), not a
// stream: reading /proc/<pid>/... of a process that exits meanwhile fails
// with ESRCH, which libstdc++'s filebuf throws as an exception (seen once:
// "basic_filebuf::underflow error reading the file: No such process").
std::string ReadFile(const std::string& path) {
  std::string out;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

// The parent of a process, from /proc; -1 if unknown.
pid_t ParentPid(pid_t pid) {
  if (pid <= 0) return -1;
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  char state = 0;
  int ppid = -1;
  if (sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) != 2) return -1;
  return ppid;
}

}  // namespace

// ---- external programs ----

std::string RunResult::Describe() const {
  std::ostringstream s;
  if (!started) {
    s << "could not start";
  } else if (timed_out) {
    s << "timed out";
  } else if (term_signal != 0) {
    s << "killed by signal " << term_signal;
  } else {
    s << "exit code " << exit_code;
  }
  s << "\n--- stdout ---\n" << out << "\n--- stderr ---\n" << err;
  return s.str();
}

RunResult RunCommand(const std::vector<std::string>& argv, milliseconds timeout) {
  RunResult result;
  if (argv.empty()) return result;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return result;
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return result;
  }
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::vector<char*> args = ExecArgv(argv);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    PrepareChild(parent);
    dup2(devnull, 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    ExecOrDie(args);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (devnull >= 0) close(devnull);
  if (pid < 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return result;
  }
  result.started = true;

  Clock::time_point deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_pipes = 2;
  while (open_pipes > 0) {
    int n = poll(fds, 2, RemainingMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      result.timed_out = n == 0;
      break;
    }
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[65536];
      ssize_t r = read(fds[i].fd, buf, sizeof(buf));
      if (r > 0) {
        sinks[i]->append(buf, r);
      } else if (r == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_pipes--;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  int status = 0;
  if (result.timed_out || !WaitPid(pid, deadline, &status)) {
    result.timed_out = true;
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return result;
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
  return result;
}

// ---- processes ----

std::vector<pid_t> ChildPids(pid_t parent) {
  std::vector<pid_t> out;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return out;
  while (dirent* e = readdir(dir)) {
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(e->d_name, e->d_name + strlen(e->d_name), pid);
    if (ec != std::errc() || *end != '\0' || pid <= 0) continue;
    if (ParentPid(pid) == parent) out.push_back(pid);
  }
  closedir(dir);
  return out;
}

std::string ProcessTitle(pid_t pid) {
  std::string cmdline = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  while (!cmdline.empty() && cmdline.back() == '\0') cmdline.pop_back();
  for (char& ch : cmdline) {
    if (ch == '\0') ch = ' ';
  }
  return cmdline;
}

bool ProcessExists(pid_t pid) { return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM); }

// ---- raw sockets ----

TempDir::TempDir() {
  const char* tmp = getenv("TMPDIR");
  std::string templ =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/redhub-it-XXXXXX";
  if (mkdtemp(templ.data()) != nullptr) path_ = templ;
}

TempDir::~TempDir() {
  if (!path_.empty()) RunCommand({"rm", "-rf", path_}, kTimeout);
}

std::string TempDir::Write(const std::string& name, const std::string& text) const {
  std::string file = File(name);
  std::ofstream(file) << text;
  return file;
}

uint16_t PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  uint16_t port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void Socket::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

Socket Socket::Connect(uint16_t port, milliseconds timeout, std::string* error, int recv_buffer) {
  auto fail = [&](const std::string& what, int err) {
    if (error != nullptr) *error = what + ": " + strerror(err);
    return Socket();
  };
  Socket s(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return fail("socket", errno);
  if (recv_buffer > 0 &&
      setsockopt(s.fd(), SOL_SOCKET, SO_RCVBUF, &recv_buffer, sizeof(recv_buffer)) != 0) {
    return fail("setsockopt(SO_RCVBUF)", errno);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (connect(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) return fail("connect", errno);
    int ev = PollFor(s.fd(), POLLOUT, Clock::now() + timeout);
    if (ev <= 0) return fail("connect", ev == 0 ? ETIMEDOUT : errno);
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (so_error != 0) return fail("connect", so_error);
  }
  return s;
}

ssize_t Socket::SendSome(std::string_view data, int* err) {
  while (true) {
    ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (err != nullptr) *err = errno;
    return -1;
  }
}

bool Socket::SendAll(std::string_view data, milliseconds timeout, int* err) {
  Clock::time_point deadline = Clock::now() + timeout;
  while (!data.empty()) {
    ssize_t n = SendSome(data, err);
    if (n < 0) return false;
    data.remove_prefix(n);
    if (data.empty()) break;
    if (n == 0) {
      int ev = PollFor(fd_, POLLOUT, deadline);
      if (ev == 0) {
        if (err != nullptr) *err = ETIMEDOUT;
        return false;
      }
      if (ev < 0) {
        if (err != nullptr) *err = errno;
        return false;
      }
    }
  }
  return true;
}

ssize_t Socket::RecvOnce(char* buf, size_t cap, milliseconds timeout, int* err) {
  Clock::time_point deadline = Clock::now() + timeout;
  while (true) {
    ssize_t n = recv(fd_, buf, cap, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      if (err != nullptr) *err = errno;
      return -1;
    }
    int ev = PollFor(fd_, POLLIN, deadline);
    if (ev == 0) return -2;
    if (ev < 0) {
      if (err != nullptr) *err = errno;
      return -1;
    }
  }
}

std::string Socket::RecvN(size_t n, milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  std::string data;
  char buf[65536];
  while (data.size() < n) {
    ssize_t r =
        RecvOnce(buf, std::min(sizeof(buf), n - data.size()), milliseconds(RemainingMs(deadline)));
    if (r <= 0) break;
    data.append(buf, r);
  }
  return data;
}

std::string Socket::RecvUntil(std::string_view suffix, milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  std::string data;
  char buf[65536];
  while (!data.ends_with(suffix)) {
    ssize_t r = RecvOnce(buf, sizeof(buf), milliseconds(RemainingMs(deadline)));
    if (r <= 0) break;
    data.append(buf, r);
  }
  return data;
}

bool Socket::WaitForClose(milliseconds timeout, std::string* data) {
  Clock::time_point deadline = Clock::now() + timeout;
  char buf[65536];
  while (true) {
    int err = 0;
    ssize_t r = RecvOnce(buf, sizeof(buf), milliseconds(RemainingMs(deadline)), &err);
    if (r > 0) {
      if (data != nullptr) data->append(buf, r);
      continue;
    }
    if (r == 0) return true;
    if (r == -1) return err == ECONNRESET || err == EPIPE;
    return false;  // timeout
  }
}

// ---- RESP over hiredis ----

ReplyReader::ReplyReader() : reader_(redisReaderCreate()) {}

ReplyReader::~ReplyReader() { redisReaderFree(reader_); }

void ReplyReader::Feed(std::string_view data) {
  redisReaderFeed(reader_, data.data(), data.size());
}

Reply ReplyReader::Next() {
  void* reply = nullptr;
  if (reader_->err != 0 || redisReaderGetReply(reader_, &reply) != REDIS_OK) return nullptr;
  return Reply(static_cast<redisReply*>(reply));
}

bool ReplyReader::error() const { return reader_->err != 0; }

size_t ReplyReader::buffered() const { return reader_->len - reader_->pos; }

Reply ReplyReader::Read(Socket& s, milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  char buf[65536];
  while (true) {
    if (Reply r = Next(); r != nullptr || error()) return r;
    ssize_t n = s.RecvOnce(buf, sizeof(buf), milliseconds(RemainingMs(deadline)));
    if (n <= 0) return nullptr;
    Feed(std::string_view(buf, n));
  }
}

Reply SocketCommand(Socket& s, const std::vector<std::string>& argv, milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  if (!s.SendAll(FormatCommand(argv), timeout)) return nullptr;
  ReplyReader reader;
  return reader.Read(s, milliseconds(RemainingMs(deadline)));
}

std::string RawCommand(Socket& s, const std::vector<std::string>& argv, milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  if (!s.SendAll(FormatCommand(argv), timeout)) return "";
  ReplyReader reader;
  std::string raw;
  char buf[16384];
  while (true) {
    ssize_t n = s.RecvOnce(buf, sizeof(buf), milliseconds(RemainingMs(deadline)));
    if (n <= 0) return "";
    raw.append(buf, static_cast<size_t>(n));
    reader.Feed(std::string_view(buf, static_cast<size_t>(n)));
    if (reader.Next() != nullptr) return raw.substr(0, raw.size() - reader.buffered());
    if (reader.error()) return "";
  }
}

Context ConnectHiredis(uint16_t port, milliseconds timeout, std::string* error) {
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  Context c(redisConnectWithTimeout("127.0.0.1", port, tv));
  if (c == nullptr || c->err != 0) {
    if (error != nullptr) *error = c == nullptr ? "out of memory" : c->errstr;
    return nullptr;
  }
  if (redisSetTimeout(c.get(), tv) != REDIS_OK) {
    if (error != nullptr) *error = "redisSetTimeout failed";
    return nullptr;
  }
  return c;
}

Reply Command(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  return Reply(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data())));
}

RunResult RunPython(const std::string& script, const std::vector<std::string>& args,
                    milliseconds timeout) {
  std::vector<std::string> argv = {PYTHON3_PATH, "-c", script};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, timeout);
}

std::string DescribeReply(const redisReply* r) {
  if (r == nullptr) return "(no reply)";
  switch (r->type) {
    case REDIS_REPLY_STATUS:
      return "+" + std::string(r->str, r->len);
    case REDIS_REPLY_ERROR:
      return "-" + std::string(r->str, r->len);
    case REDIS_REPLY_INTEGER:
      return ":" + std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_STRING:
      return "$" + std::to_string(r->len) + " " + std::string(r->str, std::min<size_t>(r->len, 64));
    case REDIS_REPLY_ARRAY: {
      std::string s = "*" + std::to_string(r->elements) + " [";
      for (size_t i = 0; i < r->elements && i < 8; i++) {
        if (i > 0) s += ", ";
        s += DescribeReply(r->element[i]);
      }
      return s + "]";
    }
    default:
      return "(type " + std::to_string(r->type) + ")";
  }
}

std::optional<std::string> InfoField(std::string_view info, std::string_view field) {
  size_t pos = 0;
  while (pos < info.size()) {
    size_t eol = info.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = info.size();
    std::string_view line = info.substr(pos, eol - pos);
    if (line.size() > field.size() && line.starts_with(field) && line[field.size()] == ':') {
      return std::string(line.substr(field.size() + 1));
    }
    pos = eol + 2;
  }
  return std::nullopt;
}

std::optional<int64_t> InfoInt(redisContext* c, std::string_view section, std::string_view field) {
  Reply r = Command(c, {"INFO", std::string(section)});
  if (r == nullptr || r->type != REDIS_REPLY_STRING) return std::nullopt;
  auto text = InfoField(std::string_view(r->str, r->len), field);
  if (!text) return std::nullopt;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc() || end != text->data() + text->size()) return std::nullopt;
  return v;
}

size_t ReplyLength(std::string_view data, size_t at) {
  if (at >= data.size()) return 0;
  size_t eol = data.find("\r\n", at);
  if (eol == std::string_view::npos) return 0;
  const char type = data[at];
  const std::string line(data.substr(at + 1, eol - at - 1));
  const size_t after = eol + 2;
  switch (type) {
    case '+':
    case '-':
    case ':':
    case '_':
    case ',':
    case '#':
    case '(':
      return after - at;
    case '$':
    case '!':
    case '=': {
      long n = atol(line.c_str());
      if (n < 0) return after - at;
      size_t end = after + static_cast<size_t>(n) + 2;
      return end <= data.size() ? end - at : 0;
    }
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
      long n = atol(line.c_str());
      if (n < 0) return after - at;
      if (type == '%' || type == '|') n *= 2;
      size_t pos = after;
      for (long i = 0; i < n; i++) {
        size_t len = ReplyLength(data, pos);
        if (len == 0) return 0;
        pos += len;
      }
      return pos - at;
    }
    default:
      return 0;
  }
}

std::string RawReply(Socket& s, const std::vector<std::string>& argv) {
  if (!s.SendAll(FormatCommand(argv))) return "";
  std::string raw;
  char buf[16384];
  Clock::time_point deadline = Clock::now() + kTimeout;
  while (Clock::now() < deadline) {
    size_t len = ReplyLength(raw);
    if (len != 0) return raw.substr(0, len);
    ssize_t n = s.RecvOnce(buf, sizeof(buf), milliseconds(100));
    if (n == 0 || n == -1) return "";
    if (n > 0) raw.append(buf, static_cast<size_t>(n));
  }
  return "";
}

std::optional<int64_t> FieldAfter(std::string_view text, std::string_view key) {
  size_t at = text.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  const char* begin = text.data() + at + key.size();
  int64_t v = 0;
  auto [end, ec] = std::from_chars(begin, text.data() + text.size(), v);
  if (ec != std::errc() || end == begin) return std::nullopt;
  return v;
}

std::optional<WorkerId> ParseClientInfo(const redisReply* r) {
  if (r == nullptr || r->type != REDIS_REPLY_STRING) return std::nullopt;
  std::string_view text(r->str, r->len);
  auto slot = FieldAfter(text, " worker=");
  auto pid = FieldAfter(text, " pid=");
  if (!slot || !pid) return std::nullopt;
  return WorkerId{static_cast<int>(*slot), static_cast<pid_t>(*pid)};
}

std::optional<WorkerId> ServedBy(redisContext* c) {
  Reply r = Command(c, {"CLIENT", "INFO"});
  return ParseClientInfo(r.get());
}

std::optional<WorkerId> ServedBy(Socket& s) {
  Reply r = SocketCommand(s, {"CLIENT", "INFO"});
  return ParseClientInfo(r.get());
}

bool WaitUntil(const std::function<bool()>& cond, milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

std::string FormatCommand(const std::vector<std::string>& argv) {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  char* buf = nullptr;
  int n = redisFormatCommandArgv(&buf, static_cast<int>(argv.size()), ptrs.data(), lens.data());
  std::string out = n > 0 ? std::string(buf, n) : std::string();
  free(buf);
  return out;
}

// ---- server processes ----

namespace {

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !stopped_) {
    // Unless a test stopped or signalled it, the server must still be
    // running, and stop cleanly on SIGTERM: a crash at any point fails the
    // test that caused it.
    bool exited_on_its_own = !signalled_ && !Running();
    int status = Stop();
    if (exited_on_its_own) {
      ADD_FAILURE() << name_ << " exited during the test: " << DescribeStatus(status);
    } else if (!signalled_ && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      ADD_FAILURE() << name_ << " did not exit cleanly on SIGTERM: " << DescribeStatus(status);
    }
  }
  if (::testing::Test::HasFailure()) {
    std::cerr << "---- log of " << name_ << " (pid " << pid_ << ", port " << port_ << ") ----\n"
              << Log() << "---- end of log of " << name_ << " ----\n";
  }
  if (!log_path_.empty()) unlink(log_path_.c_str());
}

bool ServerProcess::Start(const std::string& binary, const std::vector<std::string>& args) {
  if (log_path_.empty()) {
    const char* tmp = getenv("TMPDIR");
    std::string templ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/redhub-it-" +
                        name_ + "-XXXXXX.log";
    int fd = mkstemps(templ.data(), 4);
    if (fd < 0) return false;
    close(fd);
    log_path_ = templ;
  }
  int log_fd = open(log_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || devnull < 0) {
    if (log_fd >= 0) close(log_fd);
    if (devnull >= 0) close(devnull);
    return false;
  }
  std::vector<std::string> argv = {binary};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string banner = "$";
  for (const std::string& a : argv) banner += " " + a;
  banner += "\n";
  ssize_t ignored = write(log_fd, banner.data(), banner.size());
  (void)ignored;
  std::vector<char*> exec_args = ExecArgv(argv);
  // The environment is built before fork: the child may only exec.
  std::vector<char*> envp;
  if (!env_.empty()) {
    for (char** e = environ; *e != nullptr; e++) envp.push_back(*e);
    for (const std::string& e : env_) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    PrepareChild(parent);
    dup2(devnull, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    if (nofile_soft_ != 0 || nofile_hard_ != 0) {
      rlimit limit = {nofile_soft_, nofile_hard_};
      if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        static const char kMsg[] = "setrlimit(RLIMIT_NOFILE) failed\n";
        ssize_t ignored = write(2, kMsg, sizeof(kMsg) - 1);
        (void)ignored;
        _exit(127);
      }
    }
    ExecOrDie(exec_args, envp.empty() ? nullptr : envp.data());
  }
  close(log_fd);
  close(devnull);
  if (pid < 0) return false;
  pid_ = pid;
  exited_ = false;
  exit_status_ = 0;
  return true;
}

void ServerProcess::Reap(int status) {
  exited_ = true;
  exit_status_ = status;
}

bool ServerProcess::Running() {
  if (pid_ < 0 || exited_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    Reap(status);
    return false;
  }
  return true;
}

bool ServerProcess::Signal(int sig) {
  if (pid_ < 0 || exited_) return false;
  signalled_ = true;
  return kill(pid_, sig) == 0;
}

bool ServerProcess::WaitExit(milliseconds timeout, int* status) {
  if (pid_ < 0) return false;
  if (!exited_) {
    int st = 0;
    if (!WaitPid(pid_, Clock::now() + timeout, &st)) return false;
    Reap(st);
  }
  if (status != nullptr) *status = exit_status_;
  return true;
}

int ServerProcess::Stop(milliseconds timeout) {
  if (pid_ < 0) return -1;
  stopped_ = true;
  if (!exited_) {
    kill(pid_, SIGTERM);
    int status = 0;
    if (WaitPid(pid_, Clock::now() + timeout, &status)) {
      Reap(status);
    } else {
      ADD_FAILURE() << name_ << " (pid " << pid_ << ") did not exit within " << timeout.count()
                    << " ms of SIGTERM; killing it";
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      Reap(status);
    }
  }
  return exit_status_;
}

std::string ServerProcess::Log() const { return log_path_.empty() ? "" : ReadFile(log_path_); }

std::optional<std::string> ServerProcess::WaitForLogLine(std::string_view needle,
                                                         milliseconds timeout) {
  std::optional<std::string> found;
  WaitUntil(
      [&] {
        std::string log = Log();
        size_t at = log.find(needle);
        if (at != std::string::npos) {
          size_t begin = log.rfind('\n', at);
          begin = begin == std::string::npos ? 0 : begin + 1;
          size_t end = log.find('\n', at);
          if (end == std::string::npos) return false;  // the line is not complete yet
          found = log.substr(begin, end - begin);
          return true;
        }
        return !Running();
      },
      timeout);
  return found;
}

bool ServerProcess::WaitReady(milliseconds timeout) {
  static const std::string kPing = "*1\r\n$4\r\nPING\r\n";
  static const std::string kQuit = "*1\r\n$4\r\nQUIT\r\n";
  Clock::time_point deadline = Clock::now() + timeout;
  // With a password the probe authenticates first; "+OK" then "+PONG".
  std::vector<std::string> auth = {"AUTH"};
  auth.insert(auth.end(), auth_.begin(), auth_.end());
  const std::string probe = auth_.empty() ? kPing : FormatCommand(auth) + kPing;
  const std::string answer = auth_.empty() ? "+PONG\r\n" : "+OK\r\n+PONG\r\n";
  while (Running()) {
    Socket s = Socket::Connect(port_, milliseconds(std::max(RemainingMs(deadline), 1)));
    if (s.valid() && s.SendAll(probe, milliseconds(RemainingMs(deadline))) &&
        s.RecvN(answer.size(), milliseconds(RemainingMs(deadline))) == answer) {
      // Leave no probe connection behind: the server closes it on QUIT, so
      // once we see EOF it no longer counts it.
      return s.SendAll(kQuit, milliseconds(RemainingMs(deadline))) &&
             s.RecvN(5, milliseconds(RemainingMs(deadline))) == "+OK\r\n" &&
             s.WaitForClose(milliseconds(RemainingMs(deadline))) && Running();
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return false;
}

// A server on a free port of 127.0.0.1, retried up to 3 times on a port
// race: start(server, port) forks it (false: fork failed), ours(server,
// port, &why) checks that the server answering on the port is the one we
// started (another process may have taken the port after we picked it).
static std::unique_ptr<ServerProcess> StartOnFreePort(
    const std::string& name, const std::function<bool(ServerProcess&, uint16_t)>& start,
    const std::function<bool(ServerProcess&, uint16_t, std::string*)>& ours) {
  std::string why;
  for (int attempt = 1; attempt <= 3; attempt++) {
    uint16_t port = PickFreePort();
    if (port == 0) {
      why = "no free port";
      continue;
    }
    auto server = std::make_unique<ServerProcess>(name);
    if (!start(*server, port)) {
      why = "fork failed";
      continue;
    }
    server->set_port(port);
    if (!server->WaitReady()) {
      bool running = server->Running();
      server->Stop();
      why = "attempt " + std::to_string(attempt) + " on port " + std::to_string(port) +
            " did not become ready; log:\n" + server->Log();
      if (running) break;  // up but not answering: not a port race
      continue;            // exited: most likely the port was taken
    }
    if (ours(*server, port, &why)) return server;
    server->Stop();
  }
  ADD_FAILURE() << name << " did not start: " << why;
  return nullptr;
}

std::unique_ptr<ServerProcess> StartRedhubd(const std::vector<std::string>& extra_args,
                                            const StartOptions& options) {
  // A --requirepass among the flags is the probes' password unless the
  // test says otherwise.
  std::vector<std::string> auth = options.auth;
  for (size_t i = 0; auth.empty() && i + 1 < extra_args.size(); i++) {
    if (extra_args[i] == "--requirepass") auth = {extra_args[i + 1]};
  }
  auto start = [&](ServerProcess& server, uint16_t port) {
    server.set_nofile_limit(options.nofile_soft, options.nofile_hard);
    server.set_env(options.env);
    server.set_auth(auth);
    // No admin process unless a test asks for one: the default port 9121 is
    // shared by every daemon and often taken.
    std::vector<std::string> args = {"--bind", "127.0.0.1", "--port", std::to_string(port)};
    if (std::find(extra_args.begin(), extra_args.end(), "--admin-port") == extra_args.end()) {
      args.insert(args.end(), {"--admin-port", "0"});
    }
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    return server.Start(options.binary.empty() ? REDHUBD_PATH : options.binary, args);
  };
  // INFO's process_id is redhubd itself or, with worker processes, one of
  // its children.
  auto ours = [](ServerProcess& server, uint16_t port, std::string* why) {
    Socket s = Socket::Connect(port);
    std::string info;
    std::string auth;
    if (!server.auth().empty()) {
      std::vector<std::string> argv = {"AUTH"};
      argv.insert(argv.end(), server.auth().begin(), server.auth().end());
      auth = FormatCommand(argv);
    }
    if (s.valid() && s.SendAll(auth + "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n*1\r\n$4\r\nQUIT\r\n") &&
        s.WaitForClose(kTimeout, &info)) {
      size_t at = info.find("\r\nprocess_id:");
      pid_t answered = at == std::string::npos ? -1 : atoi(info.c_str() + at + 13);
      if (answered == server.pid() || ParentPid(answered) == server.pid()) {
        // One worker answering is not all of them: tests that count workers
        // or stop the daemon at once need every slot up, which the master
        // announces once.
        if (server.WaitForLogLine("Ready to accept connections")) return true;
        *why = "no \"Ready to accept connections\" in the log";
        return false;
      }
    }
    *why = "port " + std::to_string(port) + " answered but not by our redhubd: " + info;
    return false;
  };
  return StartOnFreePort("redhubd", start, ours);
}

std::unique_ptr<ServerProcess> StartRedisServer(const std::vector<std::string>& extra_args,
                                                const std::vector<std::string>& auth) {
  if (std::string(REDIS_SERVER_PATH).empty()) {
    ADD_FAILURE() << "redis-server not found (deploy/install-deps.sh installs it)";
    return nullptr;
  }
  auto start = [&](ServerProcess& server, uint16_t port) {
    server.set_auth(auth);
    // No RDB, no AOF: nothing is written at start or at the SIGTERM that
    // stops it, so no directory is needed.
    std::vector<std::string> args = {
        "--bind", "127.0.0.1",   "--port", std::to_string(port), "--save", "", "--appendonly",
        "no",     "--daemonize", "no",     "--loglevel",         "warning"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    return server.Start(REDIS_SERVER_PATH, args);
  };
  auto ours = [](ServerProcess& server, uint16_t port, std::string* why) {
    Socket s = Socket::Connect(port);
    if (!server.auth().empty()) {
      std::vector<std::string> argv = {"AUTH"};
      argv.insert(argv.end(), server.auth().begin(), server.auth().end());
      Reply ok = SocketCommand(s, argv);
      if (!ok || ok->type != REDIS_REPLY_STATUS) {
        *why = "AUTH refused on port " + std::to_string(port);
        return false;
      }
    }
    Reply info = SocketCommand(s, {"INFO", "server"});
    std::optional<std::string> pid =
        info && info->type == REDIS_REPLY_STRING
            ? InfoField(std::string_view(info->str, info->len), "process_id")
            : std::nullopt;
    if (pid && atoi(pid->c_str()) == server.pid()) return true;
    *why = "port " + std::to_string(port) + " is served by another process";
    return false;
  };
  return StartOnFreePort("redis-server", start, ours);
}

std::unique_ptr<ServerProcess> StartMemoryKv(const StartOptions& options) {
  auto server = std::make_unique<ServerProcess>("memory_kv");
  server->set_nofile_limit(options.nofile_soft, options.nofile_hard);
  if (!server->Start(MEMORY_KV_PATH, {"--bind", "127.0.0.1", "--port", "0"})) {
    ADD_FAILURE() << "could not fork memory_kv";
    return nullptr;
  }
  static constexpr std::string_view kAnnouncement = "memory_kv listening on 127.0.0.1:";
  std::optional<std::string> line = server->WaitForLogLine(kAnnouncement);
  int port = 0;
  if (line) {
    std::string_view digits =
        std::string_view(*line).substr(line->find(kAnnouncement) + kAnnouncement.size());
    std::from_chars(digits.data(), digits.data() + digits.size(), port);
  }
  if (port <= 0 || port > 65535) {
    server->Stop();
    ADD_FAILURE() << "memory_kv did not announce its port; log:\n" << server->Log();
    return nullptr;
  }
  server->set_port(static_cast<uint16_t>(port));
  if (!server->WaitReady()) {
    server->Stop();
    ADD_FAILURE() << "memory_kv on port " << port << " did not answer PING; log:\n"
                  << server->Log();
    return nullptr;
  }
  return server;
}

std::unique_ptr<ServerProcess> StartServer(ServerKind kind) {
  return kind == ServerKind::kRedhubd ? StartRedhubd() : StartMemoryKv();
}

std::string KindName(ServerKind kind) {
  return kind == ServerKind::kRedhubd ? "redhubd" : "memory_kv";
}

}  // namespace redhub::integration

namespace redhub::integration {

void ExpectRepliesAsReference(Socket& ours, Socket& reference,
                              const std::vector<std::vector<std::string>>& script) {
  ASSERT_TRUE(ours.valid());
  ASSERT_TRUE(reference.valid());
  for (const auto& argv : script) {
    std::string expected = RawCommand(reference, argv);
    ASSERT_FALSE(expected.empty()) << ::testing::PrintToString(argv);
    EXPECT_EQ(RawCommand(ours, argv), expected) << ::testing::PrintToString(argv);
  }
}

}  // namespace redhub::integration
