// txn_bench: a load client for MULTI/EXEC transactions and EVALSHA, which
// redis-benchmark cannot send (it sends one command per request).
//
// One thread, one epoll loop, C connections to a loopback host:port. Each
// connection sends a pipeline of P units, waits for all their replies, then
// sends the next pipeline, until the total unit count is reached or the time
// limit passes. A unit is
//   - multi mode (default): MULTI, N x SET key:<r> <value>, EXEC; the replies
//     must be exactly +OK, N x +QUEUED, *N and N x +OK (compared byte for
//     byte);
//   - --evalsha SHA: EVALSHA SHA K key:<r1> .. key:<rK> <arg>; the reply must
//     be one well-formed RESP2 reply that is not an error (at any depth).
// Any wrong reply, a closed connection or the time limit ends the program
// with exit status 1 and a message on stderr. On success it prints the unit
// count, the elapsed time, units/s and commands/s on stdout.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 6379;
  int clients = 50;
  int pipeline = 16;
  uint64_t transactions = 100000;  // units: transactions, or EVALSHA calls
  uint64_t keyspace = 1000000;
  int sets_per_tx = 10;
  int datasize = 3;
  double timeout = 60;
  std::string evalsha;  // empty: multi mode
  int keys = 1;
  uint64_t seed = 1;
  std::string key_prefix = "key:";
};

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "txn_bench: error: %s\n", msg.c_str());
  std::exit(1);
}

void Usage(FILE* f) {
  std::fprintf(f,
               "Usage: txn_bench [--host H] [--port P] [--clients C] [--pipeline P]\n"
               "                 [--transactions N] [--keyspace K] [--sets-per-tx S]\n"
               "                 [--datasize D] [--timeout SECONDS] [--seed X]\n"
               "                 [--key-prefix PREFIX] [--evalsha SHA [--keys K]]\n"
               "\n"
               "Loopback only. C connections each send pipelines of P transactions\n"
               "(MULTI, S x SET key:<random below K> <D-byte value>, EXEC) and check\n"
               "every reply byte for byte. With --evalsha, each unit is\n"
               "EVALSHA SHA K key:<r>.. <arg> and its reply must not be an error.\n"
               "N units in all (default 100000), within --timeout seconds (default 60).\n"
               "Keys are PREFIX (default key:) and 12 digits. Defaults: 127.0.0.1:6379,\n"
               "-c 50, -P 16, K 1000000, S 10, D 3, --keys 1.\n"
               "Exit status 1 on a wrong reply, a lost connection or the time limit.\n");
}

uint64_t ParseUint(std::string_view opt, const char* s, uint64_t min, uint64_t max) {
  char* end = nullptr;
  errno = 0;
  if (*s == '\0' || *s == '-') Die(std::string(opt) + " needs a non-negative integer");
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) {
    Die(std::string(opt) + ": '" + s + "' is not an integer in [" + std::to_string(min) + ", " +
        std::to_string(max) + "]");
  }
  return v;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      Usage(stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      Usage(stderr);
      Die("unknown argument or missing value: '" + std::string(a) + "'");
    }
    const char* v = argv[++i];
    if (a == "--host") {
      o.host = v;
    } else if (a == "--port") {
      o.port = static_cast<int>(ParseUint(a, v, 1, 65535));
    } else if (a == "--clients") {
      o.clients = static_cast<int>(ParseUint(a, v, 1, 10000));
    } else if (a == "--pipeline") {
      o.pipeline = static_cast<int>(ParseUint(a, v, 1, 100000));
    } else if (a == "--transactions") {
      o.transactions = ParseUint(a, v, 1, UINT64_MAX / 2);
    } else if (a == "--keyspace") {
      o.keyspace = ParseUint(a, v, 1, 1000000000000ULL);
    } else if (a == "--sets-per-tx") {
      o.sets_per_tx = static_cast<int>(ParseUint(a, v, 1, 100000));
    } else if (a == "--datasize") {
      o.datasize = static_cast<int>(ParseUint(a, v, 1, 1 << 20));
    } else if (a == "--timeout") {
      char* end = nullptr;
      o.timeout = std::strtod(v, &end);
      if (*end != '\0' || !(o.timeout > 0)) Die("--timeout needs a positive number of seconds");
    } else if (a == "--seed") {
      o.seed = ParseUint(a, v, 0, UINT64_MAX);
    } else if (a == "--evalsha") {
      o.evalsha = v;
      if (o.evalsha.empty()) Die("--evalsha needs a SHA");
    } else if (a == "--key-prefix") {
      o.key_prefix = v;
    } else if (a == "--keys") {
      o.keys = static_cast<int>(ParseUint(a, v, 0, 1000));
    } else {
      Usage(stderr);
      Die("unknown argument '" + std::string(a) + "'");
    }
  }
  return o;
}

// Loopback addresses only: 127.0.0.0/8, ::1 and "localhost".
sockaddr_storage LoopbackAddress(const Options& o, socklen_t* len) {
  sockaddr_storage ss{};
  std::string host = o.host == "localhost" ? "127.0.0.1" : o.host;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127) Die("--host must be a loopback address");
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(o.port));
    *len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)) Die("--host must be a loopback address");
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(o.port));
    *len = sizeof(sockaddr_in6);
  } else {
    Die("--host '" + o.host + "' is not a numeric loopback address (or localhost)");
  }
  return ss;
}

// splitmix64: cheap, good enough for picking keys.
struct Rng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

void AppendBulk(std::string& out, std::string_view s) {
  out += '$';
  out += std::to_string(s.size());
  out += "\r\n";
  out.append(s);
  out += "\r\n";
}

// The prefix ("key:" by default) and 12 digits, like redis-benchmark -r.
// Returns the key.
std::string AppendKey(std::string& out, std::string_view prefix, uint64_t r) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%012" PRIu64, r);
  std::string key(prefix);
  key.append(buf, static_cast<size_t>(n));
  AppendBulk(out, key);
  return key;
}

// Streaming RESP2 reply parser for --evalsha: Feed() consumes bytes and
// counts complete top-level replies; it reports the first error reply or
// malformed input. Arrays may nest; a pending count is kept per level.
class ReplyParser {
 public:
  // Returns false on malformed input or an error reply (message in *why).
  bool Feed(const char* p, size_t n, uint64_t* complete, std::string* why) {
    buf_.append(p, n);
    size_t pos = 0;
    for (;;) {
      if (bulk_left_ >= 0) {  // the payload of a bulk string, then CRLF
        size_t need = static_cast<size_t>(bulk_left_) + 2;
        if (buf_.size() - pos < need) break;
        if (buf_.compare(pos + need - 2, 2, "\r\n") != 0) {
          *why = "bulk string not followed by CRLF";
          return false;
        }
        pos += need;
        bulk_left_ = -1;
        Done(complete);
        continue;
      }
      size_t eol = buf_.find("\r\n", pos);
      if (eol == std::string::npos) {
        if (buf_.size() - pos > 1 << 20) {
          *why = "reply line longer than 1 MB";
          return false;
        }
        break;
      }
      std::string_view line(buf_.data() + pos, eol - pos);
      pos = eol + 2;
      if (line.empty()) {
        *why = "empty reply line";
        return false;
      }
      char type = line[0];
      std::string_view rest = line.substr(1);
      switch (type) {
        case '+':
          Done(complete);
          break;
        case '-':
          *why = "error reply: " + std::string(line);
          return false;
        case ':':
          if (!IsInt(rest)) {
            *why = "bad integer reply: " + std::string(line);
            return false;
          }
          Done(complete);
          break;
        case '$':
        case '*': {
          if (!IsInt(rest)) {
            *why = "bad length: " + std::string(line);
            return false;
          }
          long long len = std::strtoll(std::string(rest).c_str(), nullptr, 10);
          if (len < -1) {
            *why = "bad length: " + std::string(line);
            return false;
          }
          if (len == -1) {
            Done(complete);
          } else if (type == '$') {
            bulk_left_ = len;
          } else if (len == 0) {
            Done(complete);
          } else {
            pending_.push_back(len);
          }
          break;
        }
        default:
          *why = "unknown reply type in: " + std::string(line.substr(0, 80));
          return false;
      }
    }
    buf_.erase(0, pos);
    return true;
  }

 private:
  static bool IsInt(std::string_view s) {
    if (!s.empty() && s[0] == '-') s.remove_prefix(1);
    if (s.empty() || s.size() > 19) return false;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
    }
    return true;
  }
  // One element finished: it completes the innermost array's slot, and
  // possibly that array, and so on up.
  void Done(uint64_t* complete) {
    while (!pending_.empty()) {
      if (--pending_.back() > 0) return;
      pending_.pop_back();
    }
    ++*complete;
  }
  std::string buf_;
  long long bulk_left_ = -1;
  std::vector<long long> pending_;
};

struct Conn {
  int id = 0;
  int fd = -1;
  Rng rng{};
  uint64_t todo = 0;       // units not yet sent
  uint64_t in_flight = 0;  // units of the current pipeline
  uint64_t replied = 0;    // multi: reply bytes matched; evalsha: replies complete
  std::string out;         // request bytes of the current pipeline
  size_t out_off = 0;
  bool want_out = false;
  ReplyParser parser;
  uint64_t units_done = 0;
};

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o) {
    value_.assign(static_cast<size_t>(o_.datasize), 'x');
    arg_ = "1";
    if (o_.evalsha.empty()) {
      unit_reply_ = "+OK\r\n";
      for (int i = 0; i < o_.sets_per_tx; ++i) unit_reply_ += "+QUEUED\r\n";
      unit_reply_ += "*" + std::to_string(o_.sets_per_tx) + "\r\n";
      for (int i = 0; i < o_.sets_per_tx; ++i) unit_reply_ += "+OK\r\n";
    }
  }

  int Run() {
    socklen_t alen = 0;
    sockaddr_storage addr = LoopbackAddress(o_, &alen);
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) Die(std::string("epoll_create1: ") + std::strerror(errno));

    uint64_t per = o_.transactions / static_cast<uint64_t>(o_.clients);
    uint64_t extra = o_.transactions % static_cast<uint64_t>(o_.clients);
    conns_.resize(static_cast<size_t>(o_.clients));
    for (int i = 0; i < o_.clients; ++i) {
      Conn& c = conns_[static_cast<size_t>(i)];
      c.id = i;
      c.rng.s = o_.seed * 1000003ULL + static_cast<uint64_t>(i) * 0x632be59bd9b4e019ULL;
      c.todo = per + (static_cast<uint64_t>(i) < extra ? 1 : 0);
      c.fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (c.fd < 0) Die(std::string("socket: ") + std::strerror(errno));
      if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), alen) != 0) {
        Die("connect to " + o_.host + ":" + std::to_string(o_.port) + " (connection " +
            std::to_string(i) + "): " + std::strerror(errno));
      }
      int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<uint32_t>(i);
      if (epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
        Die(std::string("epoll_ctl: ") + std::strerror(errno));
      }
    }

    auto start = std::chrono::steady_clock::now();
    auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                std::chrono::duration<double>(o_.timeout));
    active_ = 0;
    for (Conn& c : conns_) {
      if (c.todo > 0) {
        ++active_;
        SendPipeline(c);
      }
    }
    std::vector<epoll_event> evs(static_cast<size_t>(o_.clients));
    std::vector<char> rbuf(256 * 1024);
    while (active_ > 0) {
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) TimedOut();
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      int n = epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), static_cast<int>(ms));
      if (n < 0) {
        if (errno == EINTR) continue;
        Die(std::string("epoll_wait: ") + std::strerror(errno));
      }
      for (int k = 0; k < n; ++k) {
        Conn& c = conns_[evs[static_cast<size_t>(k)].data.u32];
        uint32_t e = evs[static_cast<size_t>(k)].events;
        if ((e & EPOLLOUT) != 0) Flush(c);
        if ((e & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) Read(c, rbuf);
      }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    uint64_t units = 0;
    for (Conn& c : conns_) {
      units += c.units_done;
      close(c.fd);
    }
    close(ep_);
    uint64_t cmds_per_unit = o_.evalsha.empty() ? static_cast<uint64_t>(o_.sets_per_tx) + 2 : 1;
    const char* unit = o_.evalsha.empty() ? "transactions" : "requests";
    std::printf("mode: %s\n", o_.evalsha.empty() ? "multi" : "evalsha");
    std::printf("%s: %" PRIu64 "\n", unit, units);
    std::printf("commands: %" PRIu64 "\n", units * cmds_per_unit);
    std::printf("seconds: %.6f\n", secs);
    std::printf("%s/s: %.2f\n", unit, static_cast<double>(units) / secs);
    std::printf("commands/s: %.2f\n", static_cast<double>(units * cmds_per_unit) / secs);
    if (!sample_key_.empty()) std::printf("sample key: %s\n", sample_key_.c_str());
    return 0;
  }

 private:
  [[noreturn]] void TimedOut() {
    uint64_t units = 0;
    for (const Conn& c : conns_) units += c.units_done;
    Die("time limit of " + std::to_string(o_.timeout) + " s reached after " +
        std::to_string(units) + " of " + std::to_string(o_.transactions) + " units");
  }

  void BuildUnit(Conn& c) {
    std::string& out = c.out;
    if (o_.evalsha.empty()) {
      out += "*1\r\n$5\r\nMULTI\r\n";
      for (int i = 0; i < o_.sets_per_tx; ++i) {
        out += "*3\r\n$3\r\nSET\r\n";
        std::string key = AppendKey(out, o_.key_prefix, c.rng.Next() % o_.keyspace);
        if (c.id == 0) sample_key_ = std::move(key);
        AppendBulk(out, value_);
      }
      out += "*1\r\n$4\r\nEXEC\r\n";
    } else {
      out += '*';
      out += std::to_string(o_.keys + 4);
      out += "\r\n$7\r\nEVALSHA\r\n";
      AppendBulk(out, o_.evalsha);
      AppendBulk(out, std::to_string(o_.keys));
      for (int i = 0; i < o_.keys; ++i) {
        std::string key = AppendKey(out, o_.key_prefix, c.rng.Next() % o_.keyspace);
        if (c.id == 0) sample_key_ = std::move(key);
      }
      AppendBulk(out, arg_);
    }
  }

  void SendPipeline(Conn& c) {
    uint64_t n =
        c.todo < static_cast<uint64_t>(o_.pipeline) ? c.todo : static_cast<uint64_t>(o_.pipeline);
    c.todo -= n;
    c.in_flight = n;
    c.replied = 0;
    c.out.clear();
    c.out_off = 0;
    for (uint64_t i = 0; i < n; ++i) BuildUnit(c);
    Flush(c);
  }

  void Flush(Conn& c) {
    while (c.out_off < c.out.size()) {
      ssize_t w = write(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off);
      if (w > 0) {
        c.out_off += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        SetWantOut(c, true);
        return;
      }
      Die("write on connection " + std::to_string(c.id) + ": " + std::strerror(errno));
    }
    SetWantOut(c, false);
  }

  void SetWantOut(Conn& c, bool want) {
    if (c.want_out == want) return;
    c.want_out = want;
    epoll_event ev{};
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
    ev.data.u32 = static_cast<uint32_t>(c.id);
    if (epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev) != 0) {
      Die(std::string("epoll_ctl: ") + std::strerror(errno));
    }
  }

  static std::string Printable(std::string_view s) {
    std::string r;
    for (char ch : s) {
      if (ch == '\r') {
        r += "\\r";
      } else if (ch == '\n') {
        r += "\\n";
      } else if (ch >= 32 && ch < 127) {
        r += ch;
      } else {
        char b[8];
        std::snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned char>(ch));
        r += b;
      }
    }
    return r;
  }

  void Read(Conn& c, std::vector<char>& rbuf) {
    for (;;) {
      ssize_t r = read(c.fd, rbuf.data(), rbuf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (r < 0) Die("read on connection " + std::to_string(c.id) + ": " + std::strerror(errno));
      if (r == 0) {
        Die("connection " + std::to_string(c.id) + " closed by the server with " +
            std::to_string(c.in_flight) + " units in flight");
      }
      Consume(c, rbuf.data(), static_cast<size_t>(r));
    }
  }

  void Consume(Conn& c, const char* p, size_t n) {
    if (c.in_flight == 0) {
      Die("connection " + std::to_string(c.id) + ": unexpected bytes with nothing in flight: '" +
          Printable(std::string_view(p, n < 200 ? n : 200)) + "'");
    }
    if (o_.evalsha.empty()) {
      const size_t ulen = unit_reply_.size();
      const uint64_t total = c.in_flight * ulen;
      size_t i = 0;
      while (i < n) {
        if (c.replied == total) {
          Die("connection " + std::to_string(c.id) + ": more reply bytes than expected: '" +
              Printable(std::string_view(p + i, n - i < 200 ? n - i : 200)) + "'");
        }
        size_t off = static_cast<size_t>(c.replied % ulen);
        size_t take = ulen - off;
        if (take > n - i) take = n - i;
        if (std::memcmp(p + i, unit_reply_.data() + off, take) != 0) {
          size_t j = 0;
          while (p[i + j] == unit_reply_[off + j]) ++j;
          Die("connection " + std::to_string(c.id) + ": wrong reply in transaction " +
              std::to_string(c.units_done + c.replied / ulen + 1) + " of this connection at byte " +
              std::to_string(off + j) + " of the transaction's reply: expected '" +
              Printable(std::string_view(unit_reply_).substr(off + j, 40)) + "...', got '" +
              Printable(std::string_view(p + i + j, n - i - j < 40 ? n - i - j : 40)) + "...'");
        }
        i += take;
        c.replied += take;
      }
      if (c.replied == total) PipelineDone(c);
    } else {
      std::string why;
      uint64_t complete = c.replied;
      if (!c.parser.Feed(p, n, &complete, &why)) {
        Die("connection " + std::to_string(c.id) + ": EVALSHA reply " +
            std::to_string(c.units_done + complete + 1) + " of this connection: " + why);
      }
      c.replied = complete;
      if (c.replied > c.in_flight) {
        Die("connection " + std::to_string(c.id) + ": more replies than requests");
      }
      if (c.replied == c.in_flight) PipelineDone(c);
    }
  }

  void PipelineDone(Conn& c) {
    c.units_done += c.in_flight;
    c.in_flight = 0;
    c.replied = 0;
    if (c.todo > 0) {
      SendPipeline(c);
    } else {
      --active_;
    }
  }

  Options o_;
  std::string value_;
  std::string arg_;
  std::string unit_reply_;
  std::string sample_key_;  // the last key connection 0 sent
  std::vector<Conn> conns_;
  int ep_ = -1;
  int active_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o = ParseArgs(argc, argv);
  return Bench(o).Run();
}
