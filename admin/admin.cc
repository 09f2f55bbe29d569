#include "admin.h"

#include <CivetServer.h>
#include <prometheus/exposer.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string_view>
#include <vector>

#include "counters.h"
#include "health_checks.h"
#include "log.h"
#include "metrics_collector.h"
#include "process.h"
#include "store.h"
#include "syserr.h"

namespace redhub::admin {
namespace {

// What /healthz and /readyz read. civetweb's begin_request callback gets no
// pointer of ours (Exposer keeps its CivetServer private), so the probes
// reach their state through this one pointer: one RunAdmin per process.
struct Probes {
  pid_t master_pid = 0;
  shm::CounterArea* counters = nullptr;
};
std::atomic<const Probes*> g_probes{nullptr};

// Slow clients must outnumber the threads to delay a probe at all, and then
// a probe waits about one request timeout per kHttpThreads of them queued
// ahead of it (admin/README.md). An idle thread costs a mostly untouched
// stack and a 16 KB buffer.
constexpr int kHttpThreads = 32;
constexpr int kRequestTimeoutMs = 1000;

int Respond(mg_connection* conn, const Verdict& v, bool with_body) {
  const std::string length = std::to_string(v.body.size());
  mg_response_header_start(conn, v.status);
  mg_response_header_add(conn, "Content-Type", "text/plain; charset=utf-8", -1);
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  mg_response_header_send(conn);
  if (with_body) mg_write(conn, v.body.data(), v.body.size());
  return v.status;  // civetweb: the request is handled, with this status
}

// Runs on civetweb's threads before its own dispatch; 0 passes the request
// on (to /metrics, or a 404).
int BeginRequest(mg_connection* conn) {
  const Probes* probes = g_probes.load(std::memory_order_acquire);
  const mg_request_info* ri = mg_get_request_info(conn);
  if (probes == nullptr || ri == nullptr || ri->local_uri == nullptr) return 0;
  const std::string_view uri = ri->local_uri;
  const bool with_body = ri->request_method == nullptr || strcmp(ri->request_method, "HEAD") != 0;
  if (uri == "/healthz") return Respond(conn, Liveness(probes->master_pid), with_body);
  if (uri == "/readyz") {
    Verdict v = Liveness(probes->master_pid);
    if (v.status == 200) v = Readiness(probes->counters->Sum());
    return Respond(conn, v, with_body);
  }
  return 0;
}

std::string ListeningPort(const AdminSpec& spec) {
  std::string host = spec.bind.find(':') != std::string::npos ? "[" + spec.bind + "]" : spec.bind;
  return host + ":" + std::to_string(spec.port);
}

}  // namespace

int RunAdmin(const AdminSpec& spec) {
  prctl(PR_SET_NAME, "redhubd: admin");

  // Signals. The master's handlers came with fork(): put back defaults, and
  // block SIGTERM and SIGINT before any thread starts, so that the HTTP
  // threads inherit the mask and only sigtimedwait below takes them.
  for (int sig : {SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE}) signal(sig, SIG_IGN);
  signal(SIGCHLD, SIG_DFL);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_SETMASK, &stop, nullptr);
  // The master's death arrives as SIGTERM; it may already have happened.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  const pid_t master = spec.master_pid;
  if (master > 0 && !ProcessAlive(master)) return 0;
  CloseInheritedSockets();

  std::string error;
  std::unique_ptr<shm::CounterArea> counters = shm::CounterArea::Attach(spec.counters_name, &error);
  if (!counters) {
    LOG_WARNING("Admin: cannot attach counters %s: %s", spec.counters_name.c_str(), error.c_str());
    return 1;
  }
  std::unique_ptr<shm::Store> store = shm::Store::Attach(spec.store_name, &error);
  if (!store) {
    LOG_WARNING("Admin: cannot attach store %s: %s", spec.store_name.c_str(), error.c_str());
    return 1;
  }
  auto collector = std::make_shared<MetricsCollector>(
      counters.get(), store.get(),
      StaticInfo{spec.version, spec.started_at_unix > 0 ? spec.started_at_unix : time(nullptr),
                 spec.max_clients});
  Probes probes{master, counters.get()};
  g_probes.store(&probes, std::memory_order_release);

  CivetCallbacks callbacks;
  callbacks.begin_request = BeginRequest;
  std::unique_ptr<prometheus::Exposer> exposer;
  const std::string address = ListeningPort(spec);
  // civetweb (1.15) gives a connection a thread from its first byte to its
  // close, so slow clients hold threads; what bounds them is the request
  // timeout, counted from the start of the request (not between bytes): a
  // header trickled a byte at a time is dropped after it, and so is a reply
  // the client stops reading. Without keep-alive no connection keeps a thread
  // between requests. Scrapers and probes send their request in one packet.
  const std::vector<std::string> options = {
      "listening_ports",    address,
      "num_threads",        std::to_string(kHttpThreads),
      "request_timeout_ms", std::to_string(kRequestTimeoutMs),
      "enable_keep_alive",  "no",
  };
  try {
    exposer = std::make_unique<prometheus::Exposer>(options, &callbacks);
  } catch (const std::exception& e) {
    LOG_WARNING("Admin: cannot listen on %s: %s", address.c_str(), e.what());
    g_probes.store(nullptr, std::memory_order_release);
    return 1;
  }
  exposer->RegisterCollectable(collector);

  // Wake once a second to notice a master that died without the signal
  // (PR_SET_PDEATHSIG follows the parent, and the master may not be it).
  const timespec tick{1, 0};
  for (;;) {
    int sig = sigtimedwait(&stop, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) break;
    if (sig < 0 && errno != EAGAIN && errno != EINTR) {
      LOG_WARNING("Admin: %s", SysError("sigtimedwait", errno).c_str());
      break;
    }
    if (master > 0 && !ProcessAlive(master)) break;
  }
  // Tear-down in reverse: the HTTP threads end before what they read goes.
  exposer.reset();
  g_probes.store(nullptr, std::memory_order_release);
  return 0;
}

}  // namespace redhub::admin
