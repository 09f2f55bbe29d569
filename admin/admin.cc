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

#include "admin_tls.h"
#include "civetweb_openssl.h"
#include "counters.h"
#include "health_checks.h"
#include "log.h"
#include "metrics_auth.h"
#include "metrics_collector.h"
#include "process.h"
#include "store.h"
#include "syserr.h"

namespace redhub::admin {
namespace {

// What /healthz and /readyz read. civetweb's begin_request callback gets no
// pointer of ours (Exposer keeps its CivetServer private), so the probes
// reach their state through this one pointer: one RunAdmin per process.
// The guard too: civetweb's dispatch would ask for credentials per URI
// (prometheus-cpp's RegisterAuth does), but never counts a refusal and
// knows only basic authentication.
struct Probes {
  pid_t master_pid = 0;
  shm::CounterArea* counters = nullptr;
  const MetricsGuard* guard = nullptr;
  AdminCounters* own = nullptr;
};
std::atomic<const Probes*> g_probes{nullptr};

// The certificate and key for civetweb's init_ssl callback, which gets no
// pointer of ours either. Set before the Exposer starts, read by the
// callback during its construction only.
struct TlsFiles {
  std::string cert;
  std::string key;
};
const TlsFiles* g_tls = nullptr;

// Slow clients must outnumber the threads to delay a probe at all, and then
// a probe waits about one request timeout per kHttpThreads of them queued
// ahead of it (admin/README.md). An idle thread costs a mostly untouched
// stack and a 16 KB buffer.
constexpr int kHttpThreads = 32;
constexpr int kRequestTimeoutMs = 1000;

int Respond(mg_connection* conn, const Verdict& v, bool with_body,
            const std::vector<std::string>& challenges = {}) {
  const std::string length = std::to_string(v.body.size());
  mg_response_header_start(conn, v.status);
  for (const std::string& c : challenges) {
    mg_response_header_add(conn, "WWW-Authenticate", c.c_str(), -1);
  }
  mg_response_header_add(conn, "Content-Type", "text/plain; charset=utf-8", -1);
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  mg_response_header_send(conn);
  if (with_body) mg_write(conn, v.body.data(), v.body.size());
  return v.status;  // civetweb: the request is handled, with this status
}

// Runs on civetweb's threads before its own dispatch; 0 passes the request
// on (to /metrics, or a 404). The probes answer without credentials (an
// orchestrator's carry none and they tell nothing but up or down); any
// other path needs them when a guard is set, so a 404 does not tell an
// unauthenticated client which paths exist.
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
  if (probes->guard != nullptr && probes->guard->enabled()) {
    switch (probes->guard->Check(mg_get_header(conn, "Authorization"))) {
      case MetricsGuard::Result::kAllowed:
        return 0;
      case MetricsGuard::Result::kMissing:
        probes->own->auth_missing.fetch_add(1, std::memory_order_relaxed);
        break;
      case MetricsGuard::Result::kInvalid:
        probes->own->auth_invalid.fetch_add(1, std::memory_order_relaxed);
        break;
    }
    return Respond(conn, {401, "unauthorized\n"}, with_body, probes->guard->Challenges());
  }
  return 0;
}

int InitSsl(void* ssl_ctx, void* /*user_data*/) {
  const TlsFiles* tls = g_tls;
  if (tls == nullptr) return -1;
  if (std::string e = ConfigureTls(ssl_ctx, tls->cert, tls->key); !e.empty()) {
    LOG_WARNING("Admin: %s", e.c_str());
    return -1;
  }
  return 1;  // civetweb: the context is set up, load no certificate of your own
}

bool IsLoopback(const std::string& address) {
  return address.starts_with("127.") || address == "::1" || address == "localhost";
}

std::string ListeningPort(const AdminSpec& spec) {
  std::string host = spec.bind.find(':') != std::string::npos ? "[" + spec.bind + "]" : spec.bind;
  return host + ":" + std::to_string(spec.port);
}

MetricsAuthFiles AuthFiles(const AdminSpec& spec) {
  return {spec.auth_user, spec.auth_password_file, spec.auth_token_file};
}

}  // namespace

std::string CheckAdminSpec(const AdminSpec& spec) {
  // Debian 12 builds civetweb without IPv6 (mg_check_feature(8) is 0): the
  // admin process would fail to listen and be respawned forever.
  if (spec.bind.find(':') != std::string::npos && mg_check_feature(8) == 0) {
    return "admin-bind " + spec.bind +
           ": this civetweb has no IPv6 support (Debian 12's is built without it); use an "
           "IPv4 address";
  }
  std::string error;
  if (!MetricsGuard::Load(AuthFiles(spec), &error)) return error;
  return CheckTlsFiles(spec.tls_cert_file, spec.tls_key_file);
}

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
  // The files first: a bad one is the operator's to fix, and says so
  // however the segments are.
  std::unique_ptr<MetricsGuard> guard = MetricsGuard::Load(AuthFiles(spec), &error);
  if (!guard) {
    LOG_WARNING("Admin: %s", error.c_str());
    return 1;
  }
  const bool tls = !spec.tls_cert_file.empty() || !spec.tls_key_file.empty();
  if (std::string e = CheckTlsFiles(spec.tls_cert_file, spec.tls_key_file); !e.empty()) {
    LOG_WARNING("Admin: %s", e.c_str());
    return 1;
  }
  // Here, not in the master's CheckAdminSpec: the stand-ins' memfds would
  // stay open in the master and in every worker it forks.
  if (tls) {
    if (std::string e = LoadOpenSslForCivetweb(); !e.empty()) {
      LOG_WARNING("Admin: cannot load OpenSSL for civetweb: %s", e.c_str());
      return 1;
    }
  }
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
  AdminCounters own;
  auto collector = std::make_shared<MetricsCollector>(
      counters.get(), store.get(),
      StaticInfo{spec.version, spec.started_at_unix > 0 ? spec.started_at_unix : time(nullptr),
                 spec.max_clients},
      &own);
  Probes probes{master, counters.get(), guard.get(), &own};
  g_probes.store(&probes, std::memory_order_release);
  if (!guard->enabled() && !IsLoopback(spec.bind)) {
    LOG_WARNING(
        "Admin: /metrics on %s is open to anyone who reaches the port: set admin-auth-user and "
        "admin-auth-password-file, or admin-auth-token-file",
        spec.bind.c_str());
  }

  CivetCallbacks callbacks;
  callbacks.begin_request = BeginRequest;
  const TlsFiles tls_files{spec.tls_cert_file, spec.tls_key_file};
  if (tls) {
    g_tls = &tls_files;
    callbacks.init_ssl = InitSsl;
  }
  std::unique_ptr<prometheus::Exposer> exposer;
  // civetweb: a port ending in 's' serves HTTPS only.
  const std::string address = ListeningPort(spec) + (tls ? "s" : "");
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
    g_tls = nullptr;
    return 1;
  }
  g_tls = nullptr;
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
