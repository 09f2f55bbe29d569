// Do the daemon's workers serialise on a lock when they share the store?
//
// An end-to-end redis-benchmark cannot tell on a small machine: the client
// needs as much CPU as the server. This program runs the real command path
// (CommandService::Dispatch: command table, per-worker counters, the shared
// store) with no network, first in 1 process, then in 2..N processes at once
// on one store, and prints the aggregate throughput and its ratio to the
// 1-process figure. Without a shared lock on the path, N processes on N idle
// cores should do close to N times the work; CPU ns per op shows whether a
// shortfall is contention (it rises) or cores the processes did not get (it
// stays flat while "cpu/proc" drops).
//
// Not Google Benchmark: the measurement forks.
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "commands.h"
#include "counters.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::worker {
namespace {

// Handlers see a Conn; the benchmark has no socket behind it.
class BenchConn : public Conn {};

constexpr size_t kKeyLen = 16;    // "key:%012d"
constexpr size_t kValueLen = 16;  // the key's 12 digits, '-', a 3-digit writer tag
// A GET's whole reply is "$16\r\n" + value + "\r\n"; a SET's is "+OK\r\n".
constexpr size_t kGetReplyLen = 5 + kValueLen + 2;
constexpr std::string_view kSetReply = "+OK\r\n";
constexpr int kBatch = 1000;            // commands between clock checks and buffer clears
constexpr uint64_t kSampleMask = 1023;  // every 1024th reply is compared byte for byte
constexpr int kMaxProcs = 64;
constexpr int kMinPreload = 100000;

enum class Mix { kGet, kSet, kMix };

struct CmdChoice {
  const char* name;
  Mix mix;
};
constexpr CmdChoice kCmds[] = {{"GET", Mix::kGet}, {"SET", Mix::kSet}, {"MIX", Mix::kMix}};

struct Settings {
  double seconds = 2;
  int max_procs = 1;
  int keys = kMinPreload;
  int preload = kMinPreload;
  uint32_t stripes = 1024;
  uint64_t maxmemory_mb = 256;
  bool counters = true;
  bool partition = false;
  std::vector<Mix> mixes;
};

// One child's figures, in a MAP_SHARED page: the child writes them before
// _exit, the parent reads them after waitpid.
struct Result {
  uint64_t ops;
  uint64_t wall_ns;
  uint64_t cpu_ns;        // user + system, getrusage(RUSAGE_SELF) over the timed loop
  uint64_t vcsw;          // voluntary context switches: sleeping on a contended futex shows here
  uint64_t dispatched;    // ops plus the warm-up's, as the counters see them
  uint64_t hits, misses;  // the service's keyspace figures (process-local in a worker)
  char error[512];
};

// Touched by the signal handler, so plain static storage.
pid_t g_children[kMaxProcs];
char g_store_name[128];
char g_area_name[128];

void KillChildren() {
  for (pid_t& pid : g_children) {
    if (pid > 0) kill(pid, SIGKILL);
  }
}

// Ctrl-C or kill: no segment and no child may outlive the program. Children
// also have PR_SET_PDEATHSIG, for the cases no handler sees (SIGKILL).
void OnSignal(int sig) {
  KillChildren();
  if (g_store_name[0] != '\0') shm_unlink(g_store_name);
  if (g_area_name[0] != '\0') shm_unlink(g_area_name);
  signal(sig, SIG_DFL);
  raise(sig);
}

uint64_t Nanos(const timeval& tv) {
  return static_cast<uint64_t>(tv.tv_sec) * 1000000000ull +
         static_cast<uint64_t>(tv.tv_usec) * 1000;
}

uint64_t CpuNanos(const rusage& ru) { return Nanos(ru.ru_utime) + Nanos(ru.ru_stime); }

// The keys live in one flat array built before fork, so children share it
// and the timed loop spends nothing on formatting them.
class Keys {
 public:
  explicit Keys(int n) : buf_(static_cast<size_t>(n) * kKeyLen + 1) {
    for (int i = 0; i < n; i++)
      snprintf(&buf_[static_cast<size_t>(i) * kKeyLen], 17, "key:%012d", i);
  }
  std::string_view operator[](uint32_t i) const { return {&buf_[i * kKeyLen], kKeyLen}; }

 private:
  std::vector<char> buf_;
};

// The value stored under a key: its own digits (so a GET that returned
// another key's value is caught) and the tag of whoever wrote it (0: the
// preload, c + 1: child c), so readers can tell SETs really landed.
void MakeValue(std::string_view key, int tag, char* out) {
  memcpy(out, key.data() + 4, 12);
  out[12] = '-';
  out[13] = static_cast<char>('0' + tag / 100 % 10);
  out[14] = static_cast<char>('0' + tag / 10 % 10);
  out[15] = static_cast<char>('0' + tag % 10);
}

// Checks one GET reply: "$16\r\n<key digits>-<tag>\r\n" with tag <= max_tag.
// Returns the tag, or -1 with *why set.
int CheckGet(std::string_view reply, std::string_view key, int max_tag, std::string* why) {
  auto fail = [&](const char* what) {
    *why = std::string(what) + ": GET " + std::string(key) + " replied \"";
    for (char c : reply.substr(0, 64)) {
      if (c == '\r') {
        *why += "\\r";
      } else if (c == '\n') {
        *why += "\\n";
      } else {
        *why += isprint(static_cast<unsigned char>(c)) ? c : '?';
      }
    }
    *why += "\"";
    return -1;
  };
  if (reply.size() != kGetReplyLen || reply.substr(0, 5) != "$16\r\n" ||
      reply.substr(kGetReplyLen - 2) != "\r\n") {
    return fail("not a 16-byte bulk");
  }
  std::string_view value = reply.substr(5, kValueLen);
  if (value.substr(0, 12) != key.substr(4, 12)) return fail("another key's value");
  if (value[12] != '-' || !isdigit(static_cast<unsigned char>(value[13])) ||
      !isdigit(static_cast<unsigned char>(value[14])) ||
      !isdigit(static_cast<unsigned char>(value[15]))) {
    return fail("malformed value");
  }
  int tag = (value[13] - '0') * 100 + (value[14] - '0') * 10 + (value[15] - '0');
  if (tag > max_tag) return fail("written by nobody in this run");
  return tag;
}

// A tenth of the timed duration, at most half a second.
double WarmupSeconds(const Settings& s) { return std::min(0.5, s.seconds / 10); }

struct ChildSpec {
  const Settings* settings;
  const Keys* keys;
  Mix mix;
  int index;  // 0..procs-1
  int procs;
  int ready_fd;  // write one byte: 'r' ready, 'e' failed
  int go_fd;     // EOF = start
  Result* result;
};

// Runs in the forked child; never returns.
[[noreturn]] void ChildMain(const ChildSpec& c, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(3);  // the parent died before prctl took effect
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
  Result& r = *c.result;
  auto fail = [&](const std::string& why) {
    snprintf(r.error, sizeof(r.error), "%s", why.c_str());
    _exit(2);
  };
  auto setup_fail = [&](const std::string& why) {
    snprintf(r.error, sizeof(r.error), "%s", why.c_str());
    (void)!write(c.ready_fd, "e", 1);
    _exit(2);
  };

  // As a worker: its own mapping of the store and of the counter area, its
  // own counter block and command service.
  std::string error;
  std::unique_ptr<shm::Store> store = shm::Store::Attach(g_store_name, &error);
  if (!store) setup_fail("attach store: " + error);
  std::unique_ptr<shm::CounterArea> area;
  shm::CounterBlock* block = nullptr;
  if (c.settings->counters) {
    area = shm::CounterArea::Attach(g_area_name, &error);
    if (!area) setup_fail("attach counter area: " + error);
    block = area->Claim(getpid());
    if (block == nullptr) setup_fail("no free counter block");
  }
  CommandService service(ServiceInfo{}, store.get());
  service.set_counters(area.get(), block);

  const Keys& keys = *c.keys;
  auto nkeys = static_cast<uint64_t>(c.settings->keys);
  // --partition: only keys of stripes no other child uses, so that nothing
  // but the store's global state is written by two processes.
  std::vector<uint32_t> mine;
  if (c.settings->partition) {
    for (uint32_t k = 0; k < nkeys; k++) {
      if (store->StripeOf(keys[k]) % static_cast<uint32_t>(c.procs) ==
          static_cast<uint32_t>(c.index)) {
        mine.push_back(k);
      }
    }
    if (mine.empty()) setup_fail("--partition: no key falls in this process's stripes");
    nkeys = mine.size();
  }
  const int max_tag = c.mix == Mix::kGet ? 0 : c.procs;
  const int tag = c.index + 1;
  char value[kValueLen + 1];
  BenchConn conn;
  std::string out;
  out.reserve(kBatch * kGetReplyLen);
  resp::Writer w(out);
  std::string_view argv[3];
  uint64_t rng = (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(c.index + 1)) ^
                 static_cast<uint64_t>(getpid());
  if (rng == 0) rng = 1;

  if (write(c.ready_fd, "r", 1) != 1) fail("ready pipe");
  char byte;
  while (read(c.go_fd, &byte, 1) != 0) {
    // Nothing is written to the go pipe; EOF (the parent closing it) starts
    // every child at once. EINTR just retries.
  }

  uint64_t dispatched = 0;  // every command run, warm-up included
  std::string why;
  auto batch = [&] {
    size_t expected = 0;
    for (int i = 0; i < kBatch; i++) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      // High bits pick the key (multiply-shift, no division), low bits the
      // command, so the two choices are independent.
      auto k = static_cast<uint32_t>(((rng >> 32) * nkeys) >> 32);
      if (!mine.empty()) k = mine[k];
      const bool set =
          c.mix == Mix::kSet || (c.mix == Mix::kMix && (((rng & 0xffff) * 10) >> 16) == 0);
      const std::string_view key = keys[k];
      resp::Command cmd;
      argv[1] = key;
      if (set) {
        MakeValue(key, tag, value);
        argv[0] = "SET";
        argv[2] = std::string_view(value, kValueLen);
        cmd.args = std::span<const std::string_view>(argv, 3);
        expected += kSetReply.size();
      } else {
        argv[0] = "GET";
        cmd.args = std::span<const std::string_view>(argv, 2);
        expected += kGetReplyLen;
      }
      const size_t mark = out.size();
      service.Dispatch(conn, cmd, w);
      if (((dispatched + static_cast<uint64_t>(i)) & kSampleMask) == 0) {
        std::string_view reply = std::string_view(out).substr(mark);
        if (set) {
          if (reply != kSetReply) fail("SET " + std::string(key) + " did not reply +OK");
        } else if (CheckGet(reply, key, max_tag, &why) < 0) {
          fail(why);
        }
      }
    }
    // Every reply has a fixed length, so the batch's total catches any reply
    // the byte-for-byte sample missed (a null, an error, a short value).
    if (out.size() != expected) {
      fail("batch of " + std::to_string(kBatch) + " replies is " + std::to_string(out.size()) +
           " bytes, expected " + std::to_string(expected));
    }
    out.clear();
    dispatched += kBatch;
  };
  auto after = [](double seconds) {
    return std::chrono::steady_clock::now() +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(
               std::chrono::duration<double>(seconds));
  };

  // Untimed warm-up, all children together: this process's fresh mapping of
  // the store faults in, caches and predictors settle, so the first run of
  // the program is not penalised against the later ones.
  for (auto end = after(WarmupSeconds(*c.settings)); std::chrono::steady_clock::now() < end;) {
    batch();
  }
  rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = after(c.settings->seconds);
  const uint64_t warm = dispatched;
  do {
    batch();
  } while (std::chrono::steady_clock::now() < deadline);
  const auto t1 = std::chrono::steady_clock::now();
  getrusage(RUSAGE_SELF, &ru1);
  r.ops = dispatched - warm;
  r.dispatched = dispatched;
  r.wall_ns =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
  r.cpu_ns = CpuNanos(ru1) - CpuNanos(ru0);
  r.vcsw = static_cast<uint64_t>(ru1.ru_nvcsw - ru0.ru_nvcsw);
  r.hits = service.stats.keyspace_hits;
  r.misses = service.stats.keyspace_misses;
  // A clean exit folds this block's counters now, as a worker's does.
  if (area) area->Release(block);
  _exit(0);
}

struct RunFigures {
  uint64_t ops = 0;
  double ops_per_sec = 0;  // sum of each child's ops / its own wall time
  double cpu_ns_per_op = 0;
  double cpu_share = 0;  // CPU time / wall time, averaged over the children
  uint64_t vcsw = 0;
  uint64_t dispatched = 0, hits = 0, misses = 0;
};

class Bench {
 public:
  explicit Bench(const Settings& s) : s_(s), keys_(s.preload) {}

  ~Bench() {
    KillChildren();
    for (pid_t& pid : g_children) {
      if (pid > 0) waitpid(pid, nullptr, 0);
      pid = 0;
    }
    service_.reset();
    store_.reset();
    if (g_store_name[0] != '\0') shm::Store::Remove(g_store_name);
    area_.reset();
    if (g_area_name[0] != '\0') shm::CounterArea::Remove(g_area_name);
    g_store_name[0] = g_area_name[0] = '\0';
    if (page_ != nullptr) munmap(page_, PageBytes());
  }

  bool Setup(std::string* error) {
    // Unique per run of the program, as dispatch_bench names its store.
    const std::string name = "/redhub-scaling-bench-" + std::to_string(getpid());
    snprintf(g_store_name, sizeof(g_store_name), "%s", name.c_str());
    snprintf(g_area_name, sizeof(g_area_name), "%s-stats", name.c_str());
    shm::StoreOptions o;
    o.name = name;
    o.maxmemory = s_.maxmemory_mb << 20;
    o.stripes = s_.stripes;
    o.if_exists = shm::IfExists::kReplace;
    store_ = shm::Store::Create(o, error);
    if (!store_) {
      *error = "store: " + *error;
      return false;
    }
    if (s_.counters) {
      // As the master creates it (master/main.cc), with the daemon's default
      // slowlog threshold, so Dispatch does the same accounting as a worker.
      shm::CounterAreaOptions co;
      co.counters = shm::slots::kSlots;
      co.gauges = shm::slots::kGauges;
      area_ = shm::CounterArea::Create(g_area_name, co, error);
      if (!area_) {
        *error = "counter area: " + *error;
        return false;
      }
      CommandService::LabelCounters(area_.get());
      area_->SetSlowLogSettings(10000, 128);
    }
    // The parent's own service, for checking the store after each run; no
    // counters, so the children's counts stay exact.
    service_ = std::make_unique<CommandService>(ServiceInfo{}, store_.get());
    page_ = mmap(nullptr, PageBytes(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page_ == MAP_FAILED) {
      page_ = nullptr;
      *error = std::string("mmap: ") + strerror(errno);
      return false;
    }
    return true;
  }

  // Every run starts from the same store: all keys present, tag 000.
  bool Preload(std::string* error) {
    char value[kValueLen + 1];
    for (int i = 0; i < s_.preload; i++) {
      std::string_view key = keys_[static_cast<uint32_t>(i)];
      MakeValue(key, 0, value);
      auto txn = store_->Lock(key);
      if (txn.Put(key, std::string_view(value, kValueLen)) != shm::Status::kOk) {
        *error = "preload: Put " + std::string(key) + " failed (maxmemory too small?)";
        return false;
      }
    }
    // Growing the tables leaves stripes mid-rehash (two tables to probe), and
    // GETs never finish a rehash: the first run would be slower than the
    // rest for that alone. A daemon's workers finish it in their cron
    // (ExpireCycle, 10 times a second), so do the same before every run.
    for (int i = 0; i < 3; i++) store_->ExpireCycle(shm::Store::NowMs(), std::chrono::seconds(1));
    return true;
  }

  bool Run(Mix mix, int procs, RunFigures* fig, std::string* error) {
    error->clear();
    if (!Preload(error)) return false;
    std::vector<uint64_t> before;
    if (area_) before = area_->Sum();
    auto* results = static_cast<Result*>(page_);
    memset(results, 0, PageBytes());
    int ready[2], go[2];
    if (pipe(ready) != 0 || pipe(go) != 0) {
      *error = std::string("pipe: ") + strerror(errno);
      return false;
    }
    const pid_t parent = getpid();
    fflush(stdout);  // a child must not inherit unwritten output
    fflush(stderr);
    for (int i = 0; i < procs; i++) {
      pid_t pid = fork();
      if (pid < 0) {
        *error = std::string("fork: ") + strerror(errno);
        Abandon(ready, go);
        return false;
      }
      if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        ChildMain(ChildSpec{&s_, &keys_, mix, i, procs, ready[1], go[0], &results[i]}, parent);
      }
      g_children[i] = pid;
    }
    close(ready[1]);
    close(go[0]);

    // Start barrier: every child has attached and built its service, then all
    // start together when the go pipe closes.
    int got = 0;
    while (got < procs) {
      pollfd pfd{ready[0], POLLIN, 0};
      int n = poll(&pfd, 1, 30000);
      char buf[kMaxProcs];
      ssize_t r = n > 0 ? read(ready[0], buf, sizeof(buf)) : -1;
      if (n < 0 && errno == EINTR) continue;
      if (r <= 0) {
        *error = n == 0 ? "children not ready after 30 s" : "a child died before it was ready";
        break;
      }
      for (ssize_t j = 0; j < r; j++) {
        if (buf[j] != 'r') *error = "a child failed its setup";
      }
      got += static_cast<int>(r);
      if (!error->empty()) break;
    }
    close(ready[0]);
    if (got < procs || !error->empty()) {
      close(go[1]);
      std::string ignored;
      Reap(procs, 0, &ignored);
      // The failed child's own message says why.
      for (int i = 0; i < procs; i++) {
        if (results[i].error[0] != '\0') {
          *error += " (child " + std::to_string(i) + ": " + results[i].error + ")";
          break;
        }
      }
      return false;
    }
    close(go[1]);
    if (!Reap(procs, s_.seconds + 30, error)) return false;

    for (int i = 0; i < procs; i++) {
      const Result& r = results[i];
      fig->ops += r.ops;
      fig->ops_per_sec +=
          r.wall_ns == 0 ? 0 : static_cast<double>(r.ops) * 1e9 / static_cast<double>(r.wall_ns);
      fig->cpu_ns_per_op += static_cast<double>(r.cpu_ns);
      fig->cpu_share +=
          r.wall_ns == 0 ? 0 : static_cast<double>(r.cpu_ns) / static_cast<double>(r.wall_ns);
      fig->vcsw += r.vcsw;
      fig->dispatched += r.dispatched;
      fig->hits += r.hits;
      fig->misses += r.misses;
    }
    fig->cpu_ns_per_op /= static_cast<double>(std::max<uint64_t>(fig->ops, 1));
    fig->cpu_share /= procs;
    return CheckCounters(mix, before, *fig, error) && CheckStore(mix, procs, error);
  }

 private:
  size_t PageBytes() const { return sizeof(Result) * kMaxProcs; }

  void Abandon(int ready[2], int go[2]) {
    for (int fd : {ready[0], ready[1], go[0], go[1]}) close(fd);
    std::string ignored;
    Reap(kMaxProcs, 0, &ignored);
  }

  // Waits for the children, killing them all after `limit` seconds (at once
  // if 0). False, with *error, if one failed, timed out or was killed.
  bool Reap(int procs, double limit, std::string* error) {
    if (limit <= 0) KillChildren();
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit);
    auto* results = static_cast<Result*>(page_);
    bool ok = true;
    for (;;) {
      bool left = false;
      for (int i = 0; i < procs; i++) {
        pid_t& pid = g_children[i];
        if (pid <= 0) continue;
        int status = 0;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == 0) {
          left = true;
          continue;
        }
        pid = 0;
        if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
          ok = false;
          if (error->empty()) {
            *error = "child " + std::to_string(i) + " ";
            if (r > 0 && WIFSIGNALED(status)) {
              *error += std::string("killed by ") + strsignal(WTERMSIG(status));
            } else {
              *error += "exited with status " + std::to_string(WEXITSTATUS(status));
            }
            if (results[i].error[0] != '\0') *error += std::string(": ") + results[i].error;
          }
        }
      }
      if (!left) return ok;
      // One failure decides the run: stop the others rather than wait.
      if (!ok) KillChildren();
      if (std::chrono::steady_clock::now() >= end) {
        if (error->empty()) *error = "children still running after " + std::to_string(limit) + " s";
        KillChildren();
        for (pid_t& pid : g_children) {
          if (pid > 0) waitpid(pid, nullptr, 0);
          pid = 0;
        }
        return false;
      }
      usleep(20000);
    }
  }

  // The daemon's own accounting must have seen exactly the commands the
  // children say they ran, and every GET must have been a hit.
  bool CheckCounters(Mix mix, const std::vector<uint64_t>& before, const RunFigures& fig,
                     std::string* error) {
    if (!area_) {
      if (fig.misses == 0) return true;
      *error = std::to_string(fig.misses) + " GETs missed";
      return false;
    }
    std::vector<uint64_t> after = area_->Sum();
    auto slot = [](const char* name) {
      auto c = static_cast<uint32_t>(CommandService::Lookup(name) - CommandService::Table().data());
      return shm::slots::CommandSlot(c, shm::slots::kCalls);
    };
    auto diff = [&](uint32_t i) { return after[i] - before[i]; };
    const uint64_t gets = diff(slot("GET")), sets = diff(slot("SET"));
    const uint64_t hits = fig.hits, misses = fig.misses;
    std::string bad;
    if (gets + sets != fig.dispatched) bad = "GET+SET calls " + std::to_string(gets + sets);
    if (mix == Mix::kGet && sets != 0) bad = "SET calls " + std::to_string(sets);
    if (mix == Mix::kSet && gets != 0) bad = "GET calls " + std::to_string(gets);
    if (misses != 0 || hits != gets)
      bad = "hits " + std::to_string(hits) + ", misses " + std::to_string(misses);
    if (diff(shm::slots::kErrorReplies) != 0)
      bad = "error replies " + std::to_string(diff(shm::slots::kErrorReplies));
    if (bad.empty()) return true;
    *error = "counters disagree with the children's " + std::to_string(fig.dispatched) +
             " commands: " + bad;
    return false;
  }

  // Reads a sample of keys back through the command path: every value must
  // be well formed, and after SETs some must carry a child's tag (the
  // writes reached the shared store, not just a reply buffer).
  bool CheckStore(Mix mix, int procs, std::string* error) {
    const int max_tag = mix == Mix::kGet ? 0 : procs;
    const int step = std::max(1, s_.keys / 1000);
    BenchConn conn;
    std::string out;
    resp::Writer w(out);
    int written = 0;
    std::string why;
    for (int i = 0; i < s_.keys; i += step) {
      std::string_view argv[] = {"GET", keys_[static_cast<uint32_t>(i)]};
      resp::Command cmd;
      cmd.args = argv;
      out.clear();
      service_->Dispatch(conn, cmd, w);
      int tag = CheckGet(out, argv[1], max_tag, &why);
      if (tag < 0) {
        *error = "store after the run: " + why;
        return false;
      }
      if (tag > 0) written++;
    }
    if (mix != Mix::kGet && written == 0) {
      *error = "store after the run: no sampled key carries a child's value";
      return false;
    }
    return true;
  }

  const Settings& s_;
  Keys keys_;
  std::unique_ptr<shm::Store> store_;
  std::unique_ptr<shm::CounterArea> area_;
  std::unique_ptr<CommandService> service_;
  void* page_ = nullptr;
};

int CpusAvailable() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0)
    return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  return CPU_COUNT(&set);
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown CPU";
}

const char* CmdName(Mix mix) {
  for (const CmdChoice& c : kCmds) {
    if (c.mix == mix) return c.name;
  }
  return "?";
}

int Main(int argc, char** argv) {
  Settings s;
  const int cpus = CpusAvailable();
  s.max_procs = std::min(cpus, kMaxProcs);
  std::string cmds = "GET,SET,MIX";
  CLI::App app{
      "Runs GET/SET through the real command table and shared-memory store (no network) in 1, "
      "then 2..N processes at once, and prints the aggregate throughput and its ratio to 1 "
      "process: whether workers serialise on a lock when they share the store."};
  app.add_option("--seconds", s.seconds, "Timed duration of each run")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 3600.0));
  app.add_option("--max-procs", s.max_procs,
                 "Runs with 1, 2, ..., this many processes (default: nproc)")
      ->capture_default_str()
      ->check(CLI::Range(1, kMaxProcs));
  app.add_option("--keys", s.keys,
                 "Key space: random keys key:000000000000 .. N-1 (1 = one hot key, the worst case "
                 "for stripe locks). At least 100000 keys are always preloaded")
      ->capture_default_str()
      ->check(CLI::Range(1, 50000000));
  app.add_option("--cmds", cmds,
                 "Comma-separated: GET, SET (16-byte value), MIX (90% GET, 10% SET)")
      ->capture_default_str();
  app.add_option("--stripes", s.stripes, "Store stripes (locks)")
      ->capture_default_str()
      ->check(CLI::Range(1, 2000));
  app.add_option("--maxmemory-mb", s.maxmemory_mb, "Store maxmemory in MB")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 20));
  bool no_counters = false;
  app.add_flag("--no-counters", no_counters,
               "Dispatch without the per-worker counter blocks (the daemon always has them)");
  app.add_flag("--partition", s.partition,
               "Diagnostic: each process uses only keys of its own stripes (stripe % procs), so "
               "processes share no stripe, only the store's global state");
  CLI11_PARSE(app, argc, argv);
  s.counters = !no_counters;
  s.preload = std::max(kMinPreload, s.keys);

  std::string upper = cmds;
  for (char& ch : upper) ch = static_cast<char>(toupper(static_cast<unsigned char>(ch)));
  size_t pos = 0;
  while (pos <= upper.size()) {
    size_t comma = upper.find(',', pos);
    std::string word =
        upper.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const CmdChoice* found = nullptr;
    for (const CmdChoice& c : kCmds) {
      if (word == c.name) found = &c;
    }
    if (found == nullptr) {
      fprintf(stderr, "--cmds: unknown command \"%s\" (GET, SET, MIX)\n", word.c_str());
      return 1;
    }
    if (std::find(s.mixes.begin(), s.mixes.end(), found->mix) == s.mixes.end())
      s.mixes.push_back(found->mix);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);

  utsname un{};
  uname(&un);
  char date[32];
  time_t now = time(nullptr);
  strftime(date, sizeof(date), "%Y-%m-%d %H:%M", localtime(&now));
  printf("machine: %s, nproc %d, %s %s, %s\n", CpuModel().c_str(), cpus, un.sysname, un.release,
         date);
  std::string space = s.keys == 1 ? std::string("one hot key key:000000000000")
                                  : "random keys over " + std::to_string(s.keys);
  if (s.partition) space += ", partitioned by stripe between the processes";
  printf(
      "config: store %llu MB maxmemory, %u stripes, %d keys preloaded with 16-byte values; %s; "
      "%.3g s per run after %.3g s warm-up; counters %s; replies verified (every length, every "
      "1024th byte for byte, "
      "store and counters after each run)\n",
      static_cast<unsigned long long>(s.maxmemory_mb), s.stripes, s.preload, space.c_str(),
      s.seconds, WarmupSeconds(s), s.counters ? "on" : "off");
  if (s.max_procs > cpus) {
    printf("note: --max-procs %d is more than the %d CPUs: processes beyond %d share cores\n",
           s.max_procs, cpus, cpus);
  }
  printf("%-4s %5s %14s %14s %10s %9s %10s %6s\n", "cmd", "procs", "ops/s total", "ops/s/proc",
         "CPU ns/op", "cpu/proc", "vol.csw", "ratio");
  fflush(stdout);

  Bench bench(s);
  std::string error;
  if (!bench.Setup(&error)) {
    fprintf(stderr, "scaling_bench: %s\n", error.c_str());
    return 1;
  }
  for (Mix mix : s.mixes) {
    double one = 0;
    for (int procs = 1; procs <= s.max_procs; procs++) {
      RunFigures fig;
      if (!bench.Run(mix, procs, &fig, &error)) {
        fprintf(stderr, "scaling_bench: %s with %d process%s: %s\n", CmdName(mix), procs,
                procs == 1 ? "" : "es", error.c_str());
        return 1;
      }
      if (procs == 1) one = fig.ops_per_sec;
      printf("%-4s %5d %14.0f %14.0f %10.1f %8.0f%% %10llu %5.2fx\n", CmdName(mix), procs,
             fig.ops_per_sec, fig.ops_per_sec / procs, fig.cpu_ns_per_op, fig.cpu_share * 100,
             static_cast<unsigned long long>(fig.vcsw), one > 0 ? fig.ops_per_sec / one : 0.0);
      fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace redhub::worker

int main(int argc, char** argv) { return redhub::worker::Main(argc, argv); }
