// The daemon's configuration: command-line flags and the --config file
// (CLI11), parsed and checked in one place so that start-up and reload share
// the same rules. The fields' defaults are here; the flags, their help and
// what a reload may change are the rows of settings.h.
#pragma once

#include <redhub/server.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tls_context.h"

namespace redhub::master {

struct Config {
  std::vector<std::string> bind = {"127.0.0.1"};
  uint16_t port = 6379;
  std::string unix_socket;
  int workers = 1;  // ParseArgs defaults it to UsableCpus()
  std::string log_level = "notice";
  std::string log_file;
  std::string config_file;
  std::string pid_file;
  bool daemonize = false;
  double worker_timeout = 10;  // seconds without a heartbeat before SIGKILL
  double drain_timeout = 30;   // seconds a stopping or retiring worker may take
  Options server;              // the framework's limits and socket options
  // The shared store. The segment is reserved up front, so maxmemory also
  // sizes it (unlike Redis, 0 is not "unlimited").
  std::string shm_name;  // "" = "/redhub-<port>"
  uint64_t maxmemory = 256ull << 20;
  std::string maxmemory_policy = "noeviction";
  bool shm_keep = false;  // keep the segment at exit, reuse a kept one at start
  // The admin process: /metrics, /healthz, /readyz. Port 0 disables it.
  std::string admin_bind = "127.0.0.1";
  uint16_t admin_port = 9121;
  // Who may read /metrics, from files (never the secret itself: ps shows
  // argv), and HTTPS for the endpoint. Empty: off.
  std::string admin_auth_user;
  std::string admin_auth_password_file;
  std::string admin_auth_token_file;
  std::string admin_tls_cert_file;
  std::string admin_tls_key_file;
  int64_t slowlog_slower_than = 10000;  // microseconds; negative disables
  uint32_t slowlog_max_len = 128;
  // Access control (Redis's): the default user's password, the ACL file
  // (users at start, ACL LOAD and SAVE), protected mode, ACL LOG's length.
  std::string requirepass;
  std::string aclfile;
  bool protected_mode = true;
  uint32_t acllog_max_len = 128;
  // TLS (Redis 7.0's tls-* settings): a second set of listeners beside
  // `port`; tls_port 0 has none, port 0 with a tls_port is TLS only.
  uint16_t tls_port = 0;
  worker::TlsSettings tls;
  double tls_handshake_timeout = 10;  // seconds; not a Redis setting
};

// Parses argv. Returns 0 to go on, -1 after --help or --version (exit 0),
// or 2 (a usage error) after the error was printed to stderr.
int ParseArgs(int argc, char** argv, Config* config);

// True if a and b differ at most in settings a running worker or the
// master takes at once (settings.h: no Change::kNewWorkers row differs).
bool SameExceptLive(const Config& a, const Config& b);
// The name of the first Change::kRestart row (listening sockets, slot
// count, ...) whose value differs, or "": a reload must refuse the change.
std::string RestartOnlyChange(const Config& a, const Config& b);

// Redis's memory units: "100", "100b", "1k", "1kb", "5mb", "2gb" (k = 1000,
// kb = 1024, case-insensitive). Returns false if text is not one.
bool ParseMemory(const std::string& text, uint64_t* bytes);

}  // namespace redhub::master
