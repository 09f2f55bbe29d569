#include "config.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>

#include "cgroup.h"
#include "policy.h"
#include "version.h"

namespace redhub::master {

bool ParseMemory(const std::string& text, uint64_t* bytes) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) digits++;
  if (digits == 0 || digits > 19) return false;
  std::string unit = text.substr(digits);
  std::transform(unit.begin(), unit.end(), unit.begin(), ::tolower);
  static const struct {
    const char* unit;
    uint64_t mul;
  } kUnits[] = {{"", 1},
                {"b", 1},
                {"k", 1000},
                {"kb", 1024},
                {"m", 1000 * 1000},
                {"mb", 1024 * 1024},
                {"g", 1000000000},
                {"gb", 1024ull * 1024 * 1024}};
  for (const auto& u : kUnits) {
    if (unit == u.unit) {
      uint64_t n = std::stoull(text.substr(0, digits));
      if (n > UINT64_MAX / u.mul) return false;
      *bytes = n * u.mul;
      return true;
    }
  }
  return false;
}

namespace {

std::vector<std::string> PolicyNames() {
  std::vector<std::string> names;
  for (const shm::PolicyName& n : shm::kPolicyNames) names.emplace_back(n.name);
  return names;
}

// A CLI11 option value in Redis's memory units.
struct MemoryValue {
  uint64_t* target;
};

CLI::Option* AddMemory(CLI::App& app, const std::string& name, uint64_t* target,
                       const std::string& help) {
  return app
      .add_option_function<std::string>(
          name,
          [target, name](const std::string& v) {
            if (!ParseMemory(v, target)) {
              throw CLI::ValidationError(name, "'" + v + "' is not a memory size (e.g. 64mb)");
            }
          },
          help)
      ->type_name("SIZE");
}

}  // namespace

bool SameExceptLive(const Config& a, const Config& b) {
  const Options& x = a.server;
  const Options& y = b.server;
  return x.read_buffer_cap == y.read_buffer_cap && x.tcp_nodelay == y.tcp_nodelay &&
         x.socket_recv_buffer == y.socket_recv_buffer &&
         x.socket_send_buffer == y.socket_send_buffer && x.listen_backlog == y.listen_backlog &&
         a.log_file == b.log_file && a.worker_timeout == b.worker_timeout &&
         a.drain_timeout == b.drain_timeout;
}

std::string RestartOnlyChange(const Config& a, const Config& b) {
  if (a.bind != b.bind) return "bind";
  if (a.port != b.port) return "port";
  if (a.unix_socket != b.unix_socket) return "unixsocket";
  if (a.workers != b.workers) return "workers";
  if (a.daemonize != b.daemonize) return "daemonize";
  if (a.pid_file != b.pid_file) return "pidfile";
  if (a.shm_name != b.shm_name) return "shm-name";
  if (a.admin_bind != b.admin_bind) return "admin-bind";
  if (a.admin_port != b.admin_port) return "admin-port";
  return "";
}

int ParseArgs(int argc, char** argv, Config* config) {
  CLI::App app{"redhubd: a Redis-protocol server"};
  app.set_config("--config", "", "Read options from this file (TOML or INI: port = 6380)");
  app.allow_config_extras(false);
  app.set_version_flag("--version", std::string("redhubd ") + kVersion);
  Options& o = config->server;

  app.add_option("--bind", config->bind, "Addresses to listen on (IPv4 or IPv6)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--port", config->port, "TCP port; 0 listens on no TCP port")
      ->capture_default_str();
  app.add_option("--unixsocket", config->unix_socket, "Also listen on this unix socket path");
  config->workers = UsableCpus();
  app.add_option("--workers", config->workers,
                 "Worker processes (default: the CPUs it may use: affinity, cgroup CPU quota)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--worker-timeout", config->worker_timeout,
                 "Kill (SIGKILL) and respawn a worker that neither heartbeats nor makes progress "
                 "for this many seconds; a long command that progresses is never killed")
      ->check(CLI::Range(1.0, 3600.0))
      ->capture_default_str();
  app.add_option("--drain-timeout", config->drain_timeout,
                 "Seconds a stopping or retiring worker may take to finish its clients")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--pidfile", config->pid_file, "Write the master's pid here");
  app.add_flag("--daemonize", config->daemonize, "Detach from the terminal");
  app.add_option("--loglevel", config->log_level, "debug, verbose, notice or warning")
      ->check(CLI::IsMember({"debug", "verbose", "notice", "warning"}))
      ->capture_default_str();
  app.add_option("--logfile", config->log_file, "Log to this file instead of stderr");

  app.add_option("--maxclients", o.max_clients,
                 "Maximum connected clients of the whole daemon (all workers together). At "
                 "start and reload the soft open file limit is raised, up to the hard one, "
                 "to maxclients + 32 + 1 per listener + 1 per worker + 2; if it cannot be, "
                 "maxclients is lowered to fit (Redis's rule)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 24))
      ->capture_default_str();
  int64_t timeout = o.idle_timeout.count();
  app.add_option("--timeout", timeout, "Close clients idle this many seconds (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  int64_t keepalive = o.tcp_keepalive.count();
  app.add_option("--tcp-keepalive", keepalive, "TCP keepalive idle seconds (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--tcp-backlog", o.listen_backlog, "listen(2) backlog")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  uint64_t read_cap = o.read_buffer_cap, query_limit = o.max_query_buffer,
           bulk_limit = o.max_bulk_len, soft = o.output_buffer_soft_limit,
           hard = o.output_buffer_hard_limit;
  AddMemory(app, "--read-buffer", &read_cap, "Bytes per read(2) (default 64kb)");
  AddMemory(app, "--client-query-buffer-limit", &query_limit,
            "Close clients whose unparsed input exceeds this (default 1gb)");
  AddMemory(app, "--proto-max-bulk-len", &bulk_limit, "Largest bulk argument (default 512mb)");
  AddMemory(app, "--output-buffer-soft-limit", &soft,
            "Stop reading from a client whose unsent replies exceed this (default 8mb)");
  AddMemory(app, "--output-buffer-hard-limit", &hard,
            "Close a client whose unsent replies exceed this (default 256mb)");

  uint64_t maxmemory = config->maxmemory;
  AddMemory(app, "--maxmemory", &maxmemory,
            "Memory for keys and values; the shared segment is sized from it and "
            "reserved at start (default 256mb)");
  app.add_option("--maxmemory-policy", config->maxmemory_policy, "What to do when memory is full")
      ->check(CLI::IsMember(PolicyNames()))
      ->capture_default_str();
  app.add_option("--shm-name", config->shm_name,
                 "POSIX shared-memory name of the store (default /redhub-<port>): "
                 "/dev/shm/<name> and /dev/shm/<name>-stats, both mode 0600, removed at "
                 "stop, or by the instance's last process if the master is killed");
  app.add_option("--admin-bind", config->admin_bind,
                 "Address of the metrics and health endpoint (IPv4 or IPv6)")
      ->capture_default_str();
  app.add_option("--admin-port", config->admin_port,
                 "Port of /metrics, /healthz and /readyz; 0 disables the admin process")
      ->capture_default_str();
  app.add_option("--slowlog-log-slower-than", config->slowlog_slower_than,
                 "Log commands slower than this many microseconds in SLOWLOG (<0: off)")
      ->capture_default_str();
  app.add_option("--slowlog-max-len", config->slowlog_max_len, "SLOWLOG entries kept")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_flag("--shm-keep", config->shm_keep,
               "Keep the store's segment at exit (also when the master is killed) and reuse a "
               "kept one at start (only one owned by this uid with no group or other access)");

  try {
    app.parse(argc, argv);
    config->config_file = app.get_config_ptr()->as<std::string>();
  } catch (const CLI::ParseError& e) {
    // app.exit prints the help, the version or the error (once: it prints
    // on every call). --help and --version succeed; any other parse error is
    // a usage error, exit code 2 like the checks below, not CLI11's
    // per-kind codes (104, 105, ...).
    return app.exit(e) == 0 ? -1 : 2;
  }
  if (read_cap < 512 || read_cap > (1u << 30)) {
    std::cerr << "--read-buffer: must be between 512b and 1gb\n";
    return 2;
  }
  if (soft > hard) {
    std::cerr << "--output-buffer-soft-limit must not exceed --output-buffer-hard-limit\n";
    return 2;
  }
  if (bulk_limit < 1024) {
    std::cerr << "--proto-max-bulk-len: must be at least 1kb\n";
    return 2;
  }
  if (maxmemory < (1u << 20)) {
    std::cerr << "--maxmemory: must be at least 1mb\n";
    return 2;
  }
  config->maxmemory = maxmemory;
  if (config->shm_name.empty()) config->shm_name = "/redhub-" + std::to_string(config->port);
  if (config->shm_name[0] != '/') config->shm_name.insert(0, "/");
  if (config->shm_name.size() > 200 || config->shm_name.find('/', 1) != std::string::npos) {
    std::cerr << "--shm-name: one path component of at most 200 characters, e.g. /redhub-6379\n";
    return 2;
  }
  o.read_buffer_cap = read_cap;
  o.max_query_buffer = query_limit;
  o.max_bulk_len = bulk_limit;
  o.output_buffer_soft_limit = soft;
  o.output_buffer_hard_limit = hard;
  o.idle_timeout = std::chrono::seconds(timeout);
  o.tcp_keepalive = std::chrono::seconds(keepalive);
  return 0;
}

}  // namespace redhub::master
