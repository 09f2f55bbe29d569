// The admin process: redhubd's HTTP endpoint for Prometheus and for health
// checks, in a child of the master that does nothing else.
//
// It owns no state of its own: every scrape reads the per-worker counter
// blocks (shm/counters.h, summed with dead workers folded in) and the store's
// header statistics, so the figures are the ones INFO reports in any worker.
// It runs prometheus-cpp's Exposer (civetweb threads), which is why it is a
// process of its own: the master forks and must stay single-threaded.
//
//   GET /metrics  redis_exporter-compatible names (admin/README.md lists them)
//   GET /healthz  200 "ok" while the master lives, 503 otherwise
//   GET /readyz   200 "ok" when every configured worker slot is serving,
//                 else 503 and one line saying why ("1 of 2 worker slots serving")
//
// /metrics (and any path but the two probes) may require HTTP basic
// authentication or a bearer token (401 otherwise, counted in
// redhub_admin_auth_failures_total), and the endpoint may serve HTTPS only.
//
// In the master, after creating the store and the counter area:
//
//   pid_t pid = fork();
//   if (pid == 0) _exit(admin::RunAdmin({.port = 9121, .store_name = config.shm_name,
//                                        .counters_name = config.shm_name + "-stats",
//                                        .master_pid = getppid(), ...}));
#pragma once

#include <cstdint>
#include <string>

namespace redhub::admin {

struct AdminSpec {
  std::string bind = "127.0.0.1";  // IPv4 (CheckAdminSpec refuses IPv6 without civetweb support)
  uint16_t port = 9121;            // 0 = disabled: the master does not start the process
  std::string store_name;          // shm name of the store
  std::string counters_name;       // shm name of the counter area
  int master_pid = 0;              // 0 = do not watch (tests)
  std::string version;             // redhub_build_info{version}
  double started_at_unix = 0;      // the master's start, for redis_uptime_in_seconds
  int max_clients = 0;             // redis_max_clients
  // Who may read /metrics (metrics_auth.h); all empty: anyone who reaches
  // the port. The secrets are read from the files when the process starts.
  std::string auth_user;
  std::string auth_password_file;
  std::string auth_token_file;
  // Both set: HTTPS only on the port (admin_tls.h), PEM files.
  std::string tls_cert_file;
  std::string tls_key_file;
};

// Reads and checks the spec's secret, certificate and key files as RunAdmin
// will, so that the master can refuse to start on a bad setting instead of
// respawning an admin process that exits at once. "" or the reason, naming
// the setting ("admin-tls-cert-file: open(/x.pem) failed: ...").
std::string CheckAdminSpec(const AdminSpec& spec);

// Runs the admin process until SIGTERM or SIGINT (exit code 0), or until the
// master dies (0 as well: nothing is left to report on). Call it in a fresh
// child of the master, right after fork(): it closes the sockets it inherited
// (a copy of a SO_REUSEPORT listener would keep taking connections that no
// one accepts), sets PR_SET_PDEATHSIG, attaches both segments and starts the
// HTTP threads. Returns 1 if a segment cannot be attached, a file of the
// spec is bad (CheckAdminSpec) or the address cannot be bound, after a
// message on stderr.
int RunAdmin(const AdminSpec& spec);

}  // namespace redhub::admin
