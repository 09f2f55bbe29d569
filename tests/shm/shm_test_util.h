// Helpers shared by the shm tests: unique segment names that are removed even
// when a test fails, a watchdog that turns a deadlock into a clear failure,
// and child processes.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "store.h"

namespace redhub::shm::testing {

// "/redhub-shm-test-<pid>-<n>": unique per test, so tests may run in parallel.
inline std::string UniqueName() {
  static int counter = 0;
  return "/redhub-shm-test-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
}

// Owns a store created for one test and removes its segment when it goes out
// of scope, whatever the test's outcome.
class TestStore {
 public:
  explicit TestStore(StoreOptions options) : name_(UniqueName()) {
    options.name = name_;
    std::string error;
    store_ = Store::Create(options, &error);
    if (!store_) ADD_FAILURE() << "Store::Create failed: " << error;
  }
  ~TestStore() {
    store_.reset();
    Store::Remove(name_);
  }
  Store* operator->() const { return store_.get(); }
  Store& operator*() const { return *store_; }
  Store* get() const { return store_.get(); }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::unique_ptr<Store> store_;
};

// prefix + decimal i. (GCC 12 warns, wrongly, about "lit" + std::to_string(i).)
inline std::string Name(std::string_view prefix, uint64_t i) {
  std::string s(prefix);
  s += std::to_string(i);
  return s;
}

inline StoreOptions Options(uint64_t data_bytes, uint32_t stripes = 1024) {
  StoreOptions o;
  o.data_bytes = data_bytes;
  o.stripes = stripes;
  return o;
}

// Aborts the whole test program with `what` if `fn` takes longer than the
// limit: a deadlocked lock would otherwise hang the suite until ctest's
// timeout with no clue. The thread exists only while `fn` runs, so no fork()
// ever happens in a multi-threaded parent.
inline void WithWatchdog(const std::string& what, std::chrono::seconds limit,
                         const std::function<void()>& fn) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, limit, [&] { return done; })) {
      fprintf(stderr, "WATCHDOG: %s took more than %lld s: a lock is deadlocked\n", what.c_str(),
              static_cast<long long>(limit.count()));
      fflush(stderr);
      abort();
    }
  });
  fn();
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_one();
  watchdog.join();
}

// Runs fn in a forked child that exits with fn's return value (never returns
// into gtest).
inline pid_t ForkChild(const std::function<int()>& fn) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    // A child must not outlive a test that crashed: it would loop on, and
    // hold ctest's output pipe open.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int rc = fn();
    fflush(stdout);
    fflush(stderr);
    _exit(rc);
  }
  return pid;
}

// A child process attached to a store segment, which can tell the parent
// that it reached a point (holds a lock, say) before going on.
struct AttachedChild {
  pid_t pid = -1;
  int ready_fd = -1;  // parent's end of the pipe
  // Blocks until the child called ready() (true) or exited first (false).
  bool AwaitReady() {
    char c;
    bool ok = read(ready_fd, &c, 1) == 1;
    close(ready_fd);
    ready_fd = -1;
    return ok;
  }
};

// Forks a child that attaches to the segment `name` and returns
// fn(store, ready); exit status 2 if it cannot attach, 3 if ready() fails.
inline AttachedChild ForkAttached(
    const std::string& name, const std::function<int(Store&, const std::function<void()>&)>& fn) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  pid_t pid = ForkChild([&] {
    close(fds[0]);
    std::string error;
    auto store = Store::Attach(name, &error);
    if (!store) return 2;
    auto ready = [&] {
      if (write(fds[1], "R", 1) != 1) _exit(3);
    };
    return fn(*store, ready);
  });
  close(fds[1]);
  return AttachedChild{pid, fds[0]};
}

// Waits for `pid`; returns its exit status as waitpid reports it, or -1 after
// `timeout` (the child is then killed).
inline int WaitChild(pid_t pid, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

inline std::string JoinErrors(const std::vector<std::string>& errors, size_t max = 20) {
  std::string out;
  for (size_t i = 0; i < errors.size() && i < max; i++) out += errors[i] + "\n";
  if (errors.size() > max) out += "... and " + std::to_string(errors.size() - max) + " more\n";
  return out;
}

// A child's wait status says it died of SIGKILL (a crash point was reached).
inline bool KilledBySigkill(int status) {
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

}  // namespace redhub::shm::testing
