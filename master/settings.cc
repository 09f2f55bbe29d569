// The settings table (settings.h) and what is derived from it.
#include "settings.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <sstream>
#include <type_traits>

#include "cgroup.h"
#include "policy.h"

namespace redhub::master {
namespace {

// Whether --help shows the value the field holds before parsing.
enum Shown { kNoDefault, kShowDefault };

std::string Text(const std::string& v) { return v; }
std::string Text(bool v) { return v ? "yes" : "no"; }
std::string Text(std::chrono::seconds v) { return std::to_string(v.count()); }
std::string Text(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}
template <typename T>
std::enable_if_t<std::is_arithmetic_v<T>, std::string> Text(T v) {
  std::ostringstream out;  // "10" for a double 10, not to_string's "10.000000"
  out << +v;
  return out.str();
}

std::string Flag(const char* name) { return std::string("--") + name; }

// A row whose field CLI11 reads itself (numbers, text, lists). get is
// [](auto& c) -> auto& { return c.field; }: one accessor for the const
// (comparing, rendering) and the mutable (parsing) uses.
template <typename Get>
Setting Value(const char* name, Change change, const char* help, Get get, Shown shown,
              std::function<void(CLI::Option*)> tune = nullptr) {
  Setting s{name, change, help, nullptr, nullptr, nullptr, nullptr};
  s.add = [name, help, get, shown, tune](CLI::App& app, Config* c) {
    CLI::Option* o = app.add_option(Flag(name), get(*c), help);
    if (tune) tune(o);
    if (shown == kShowDefault) o->capture_default_str();
    return o;
  };
  s.same = [get](const Config& a, const Config& b) { return get(a) == get(b); };
  s.text = [get](const Config& c) { return Text(get(c)); };
  return s;
}

// A flag without a value (--daemonize).
template <typename Get>
Setting Switch(const char* name, Change change, const char* help, Get get) {
  Setting s = Value(name, change, help, get, kNoDefault);
  s.add = [name, help, get](CLI::App& app, Config* c) {
    return app.add_flag(Flag(name), get(*c), help);
  };
  return s;
}

// The sizes a memory row admits, checked after parsing (CLI11 knows no
// memory units); error is the usage message for one outside.
struct SizeRange {
  uint64_t min = 0;
  uint64_t max = UINT64_MAX;
  const char* error = nullptr;
};

// A size in Redis's memory units (ParseMemory). The help says the default:
// CLI11 would show the byte count.
template <typename Get>
Setting Memory(const char* name, Change change, const char* help, Get get, SizeRange range = {}) {
  Setting s = Value(name, change, help, get, kNoDefault);
  if (range.error != nullptr) {
    s.finish = [get, range](Config* c) {
      uint64_t v = get(*c);
      return v < range.min || v > range.max ? std::string(range.error) : std::string();
    };
  }
  s.add = [name, help, get](CLI::App& app, Config* c) {
    auto* target = &get(*c);
    return app
        .add_option_function<std::string>(
            Flag(name),
            [target, name](const std::string& v) {
              uint64_t bytes = 0;
              if (!ParseMemory(v, &bytes)) {
                throw CLI::ValidationError(Flag(name),
                                           "'" + v + "' is not a memory size (e.g. 64mb)");
              }
              *target = static_cast<std::remove_reference_t<decltype(*target)>>(bytes);
            },
            help)
        ->type_name("SIZE");
  };
  return s;
}

// Whole seconds, non-negative, into a std::chrono::seconds field.
template <typename Get>
Setting Seconds(const char* name, Change change, const char* help, Get get) {
  Setting s = Value(name, change, help, get, kNoDefault);
  s.add = [name, help, get](CLI::App& app, Config* c) {
    std::chrono::seconds* target = &get(*c);
    return app
        .add_option_function<int64_t>(
            Flag(name), [target](const int64_t& v) { *target = std::chrono::seconds(v); }, help)
        ->check(CLI::NonNegativeNumber)
        ->default_str(std::to_string(target->count()));
  };
  return s;
}

template <typename T>
std::function<void(CLI::Option*)> InRange(T min, T max) {
  return [min, max](CLI::Option* o) { o->check(CLI::Range(min, max)); };
}

std::vector<std::string> PolicyNames() {
  std::vector<std::string> names;
  for (const shm::PolicyName& n : shm::kPolicyNames) names.emplace_back(n.name);
  return names;
}

// --workers: its default is computed (the CPUs this process may use), so
// the row sets it before CLI11 captures it for --help.
Setting Workers() {
  Setting s = Value(
      "workers", Change::kRestart,
      "Worker processes (default: the CPUs it may use: affinity, cgroup CPU quota)",
      [](auto& c) -> auto& { return c.workers; }, kShowDefault, InRange(1, 1024));
  auto add = s.add;
  s.add = [add](CLI::App& app, Config* c) {
    c->workers = UsableCpus();
    return add(app, c);
  };
  return s;
}

// A row with a check CLI11 cannot make (it knows no memory units) or a
// value that depends on another row.
Setting WithFinish(Setting s, std::function<std::string(Config*)> finish) {
  s.finish = std::move(finish);
  return s;
}

using C = Change;

// The rows in --help order, in three groups: the sockets and processes, the
// clients' limits, and the store, the admin process and the slow log.
void AddProcessRows(std::vector<Setting>& t) {
  Setting bind = Value(
      "bind", C::kRestart, "Addresses to listen on (IPv4 or IPv6)",
      [](auto& c) -> auto& { return c.bind; }, kShowDefault,
      [](CLI::Option* o) { o->delimiter(','); });
  // CONFIG GET has always shown the first address (the one INFO names).
  bind.text = [](const Config& c) { return c.bind.empty() ? std::string() : c.bind.front(); };
  t.push_back(bind);
  t.push_back(Value(
      "port", C::kRestart, "TCP port; 0 listens on no TCP port",
      [](auto& c) -> auto& { return c.port; }, kShowDefault));
  t.push_back(Value(
      "unixsocket", C::kRestart, "Also listen on this unix socket path",
      [](auto& c) -> auto& { return c.unix_socket; }, kNoDefault));
  t.push_back(Workers());
  t.push_back(Value(
      "worker-timeout", C::kNewWorkers,
      "Kill (SIGKILL) and respawn a worker that neither heartbeats nor makes progress "
      "for this many seconds; a long command that progresses is never killed",
      [](auto& c) -> auto& { return c.worker_timeout; }, kShowDefault, InRange(1.0, 3600.0)));
  t.push_back(Value(
      "drain-timeout", C::kNewWorkers,
      "Seconds a stopping or retiring worker may take to finish its clients",
      [](auto& c) -> auto& { return c.drain_timeout; }, kShowDefault, InRange(0.0, 3600.0)));
  t.push_back(Value(
      "pidfile", C::kRestart, "Write the master's pid here",
      [](auto& c) -> auto& { return c.pid_file; }, kNoDefault));
  t.push_back(Switch(
      "daemonize", C::kRestart, "Detach from the terminal",
      [](auto& c) -> auto& { return c.daemonize; }));
  t.push_back(Value(
      "loglevel", C::kLive, "debug, verbose, notice or warning",
      [](auto& c) -> auto& { return c.log_level; }, kShowDefault,
      [](CLI::Option* o) {
        o->check(CLI::IsMember({"debug", "verbose", "notice", "warning"}));
      }));
  t.push_back(Value(
      "logfile", C::kNewWorkers, "Log to this file instead of stderr",
      [](auto& c) -> auto& { return c.log_file; }, kNoDefault));
}

void AddClientRows(std::vector<Setting>& t) {
  t.push_back(Value(
      "maxclients", C::kLive,
      "Maximum connected clients of the whole daemon (all workers together). At "
      "start and reload the soft open file limit is raised, up to the hard one, "
      "to maxclients + 32 + 1 per listener + 1 per worker + 2; if it cannot be, "
      "maxclients is lowered to fit (Redis's rule)",
      [](auto& c) -> auto& { return c.server.max_clients; }, kShowDefault,
      InRange(size_t{1}, size_t{1} << 24)));
  t.push_back(Seconds(
      "timeout", C::kLive, "Close clients idle this many seconds (0: never)",
      [](auto& c) -> auto& { return c.server.idle_timeout; }));
  t.push_back(Seconds(
      "tcp-keepalive", C::kLive, "TCP keepalive idle seconds (0: off)",
      [](auto& c) -> auto& { return c.server.tcp_keepalive; }));
  // The listeners are the master's, made once; a reload counts it among the
  // settings of new workers, as it always has.
  t.push_back(Value(
      "tcp-backlog", C::kNewWorkers, "listen(2) backlog",
      [](auto& c) -> auto& { return c.server.listen_backlog; }, kShowDefault, InRange(1, 65535)));
  t.push_back(Memory("read-buffer", C::kNewWorkers, "Bytes per read(2) (default 64kb)",
                     [](auto& c) -> auto& { return c.server.read_buffer_cap; },
                     {512, 1u << 30, "--read-buffer: must be between 512b and 1gb"}));
  t.push_back(Memory(
      "client-query-buffer-limit", C::kLive,
      "Close clients whose unparsed input exceeds this (default 1gb)",
      [](auto& c) -> auto& { return c.server.max_query_buffer; }));
  t.push_back(Memory("proto-max-bulk-len", C::kLive, "Largest bulk argument (default 512mb)",
                     [](auto& c) -> auto& { return c.server.max_bulk_len; },
                     {1024, UINT64_MAX, "--proto-max-bulk-len: must be at least 1kb"}));
  t.push_back(Memory(
      "output-buffer-soft-limit", C::kLive,
      "Stop reading from a client whose unsent replies exceed this (default 8mb)",
      [](auto& c) -> auto& { return c.server.output_buffer_soft_limit; }));
  t.push_back(
      WithFinish(Memory(
                     "output-buffer-hard-limit", C::kLive,
                     "Close a client whose unsent replies exceed this (default 256mb)",
                     [](auto& c) -> auto& { return c.server.output_buffer_hard_limit; }),
                 [](Config* c) -> std::string {
                   if (c->server.output_buffer_soft_limit > c->server.output_buffer_hard_limit) {
                     return "--output-buffer-soft-limit must not exceed --output-buffer-hard-limit";
                   }
                   return "";
                 }));
}

// Protecting the admin endpoint: paths only, the secrets stay in their files
// (the admin process reads them when it starts; main checks them at start,
// admin::CheckAdminSpec). Pairs that only work together are checked here.
void AddAdminSecurityRows(std::vector<Setting>& t) {
  t.push_back(Value(
      "admin-auth-user", C::kRestart,
      "/metrics requires HTTP basic authentication as this user (with --admin-auth-password-file)",
      [](auto& c) -> auto& { return c.admin_auth_user; }, kNoDefault));
  t.push_back(
      WithFinish(Value(
                     "admin-auth-password-file", C::kRestart,
                     "File holding the password of --admin-auth-user (one line)",
                     [](auto& c) -> auto& { return c.admin_auth_password_file; }, kNoDefault),
                 [](Config* c) -> std::string {
                   if (c->admin_auth_user.empty() != c->admin_auth_password_file.empty()) {
                     return "--admin-auth-user and --admin-auth-password-file go together";
                   }
                   return "";
                 }));
  t.push_back(Value(
      "admin-auth-token-file", C::kRestart,
      "/metrics accepts 'Authorization: Bearer <token>' with the token in this file (one line); "
      "with basic authentication too, either one is enough",
      [](auto& c) -> auto& { return c.admin_auth_token_file; }, kNoDefault));
  t.push_back(Value(
      "admin-tls-cert-file", C::kRestart,
      "The admin port serves HTTPS only, with this PEM certificate chain (with "
      "--admin-tls-key-file)",
      [](auto& c) -> auto& { return c.admin_tls_cert_file; }, kNoDefault));
  t.push_back(
      WithFinish(Value(
                     "admin-tls-key-file", C::kRestart, "PEM private key of --admin-tls-cert-file",
                     [](auto& c) -> auto& { return c.admin_tls_key_file; }, kNoDefault),
                 [](Config* c) -> std::string {
                   if (c->admin_tls_cert_file.empty() != c->admin_tls_key_file.empty()) {
                     return "--admin-tls-cert-file and --admin-tls-key-file go together";
                   }
                   return "";
                 }));
}

void AddStoreRows(std::vector<Setting>& t) {
  t.push_back(Memory("maxmemory", C::kLive,
                     "Memory for keys and values; the shared segment is sized from it "
                     "and reserved at start (default 256mb)",
                     [](auto& c) -> auto& { return c.maxmemory; },
                     {1u << 20, UINT64_MAX, "--maxmemory: must be at least 1mb"}));
  t.push_back(Value(
      "maxmemory-policy", C::kLive, "What to do when memory is full",
      [](auto& c) -> auto& { return c.maxmemory_policy; }, kShowDefault,
      [](CLI::Option* o) { o->check(CLI::IsMember(PolicyNames())); }));
  t.push_back(WithFinish(
      Value(
          "shm-name", C::kRestart,
          "POSIX shared-memory name of the store (default /redhub-<port>): "
          "/dev/shm/<name> and /dev/shm/<name>-stats, both mode 0600, removed at "
          "stop, or by the instance's last process if the master is killed",
          [](auto& c) -> auto& { return c.shm_name; }, kNoDefault),
      [](Config* c) -> std::string {
        std::string& n = c->shm_name;
        // A TLS-only daemon (port 0) is named after its TLS port.
        if (n.empty()) n = "/redhub-" + std::to_string(c->port != 0 ? c->port : c->tls_port);
        if (n[0] != '/') n.insert(0, "/");
        if (n.size() > 200 || n.find('/', 1) != std::string::npos) {
          return "--shm-name: one path component of at most 200 characters, e.g. /redhub-6379";
        }
        return "";
      }));
  t.push_back(Value(
      "admin-bind", C::kRestart,
      "Address of the metrics and health endpoint (IPv4: Debian 12's civetweb has no IPv6)",
      [](auto& c) -> auto& { return c.admin_bind; }, kShowDefault));
  t.push_back(Value(
      "admin-port", C::kRestart,
      "Port of /metrics, /healthz and /readyz; 0 disables the admin process",
      [](auto& c) -> auto& { return c.admin_port; }, kShowDefault));
  AddAdminSecurityRows(t);
  t.push_back(Value(
      "slowlog-log-slower-than", C::kLive,
      "Log commands slower than this many microseconds in SLOWLOG (<0: off)",
      [](auto& c) -> auto& { return c.slowlog_slower_than; }, kShowDefault));
  t.push_back(Value(
      "slowlog-max-len", C::kLive, "SLOWLOG entries kept",
      [](auto& c) -> auto& { return c.slowlog_max_len; }, kShowDefault, InRange(0, 1024)));
  // main reads it at start and at exit from its own copy: a reload takes a
  // new value without effect until the next start, as before this table.
  t.push_back(Switch(
      "shm-keep", C::kNextStart,
      "Keep the store's segment at exit (also when the master is killed) and "
      "reuse a kept one at start (only one owned by this uid with no group or "
      "other access)",
      [](auto& c) -> auto& { return c.shm_keep; }));
}

void AddSecurityRows(std::vector<Setting>& t) {
  // A password on the command line is seen by everyone on the host (ps):
  // the help says to put it in the config file.
  t.push_back(Value(
      "requirepass", C::kLive,
      "The default user's password (Redis's requirepass); empty: none. Prefer the config "
      "file: the command line is visible to other users. Ignored with aclfile, whose "
      "default user rules",
      [](auto& c) -> auto& { return c.requirepass; }, kNoDefault));
  t.push_back(Value(
      "aclfile", C::kLive,
      "ACL users file in Redis's format (user <name> <rules>): loaded at start, and by ACL "
      "LOAD; ACL SAVE writes it",
      [](auto& c) -> auto& { return c.aclfile; }, kNoDefault));
  t.push_back(Value(
      "protected-mode", C::kLive,
      "yes: while the default user has no password, serve only loopback and unix-socket "
      "clients (Redis's protected mode)",
      [](auto& c) -> auto& { return c.protected_mode; }, kShowDefault));
  t.push_back(Value(
      "acllog-max-len", C::kLive, "ACL LOG entries kept",
      [](auto& c) -> auto& { return c.acllog_max_len; }, kShowDefault, InRange(0, 1024)));
}

// TLS, with Redis 7.0's names and defaults (worker/tls_context.h). The
// master loads the files into one context at start and at every reload (a
// reload re-reads them even if no setting changed: that is how a rotated
// certificate is taken), and the workers it forks inherit it.
void AddTlsRows(std::vector<Setting>& t) {
  t.push_back(WithFinish(
      Value(
          "tls-port", C::kRestart,
          "TLS port beside --port (0: none; with --port 0, TLS only); needs tls-cert-file "
          "and tls-key-file",
          [](auto& c) -> auto& { return c.tls_port; }, kShowDefault),
      [](Config* c) -> std::string {
        if (c->tls_port == 0) return "";
        if (c->tls_port == c->port) return "--tls-port must differ from --port";
        std::string e = worker::CheckTlsSettings(c->tls);
        return e.empty() ? "" : "TLS: " + e;
      }));
  t.push_back(Value(
      "tls-cert-file", C::kNewWorkers, "Server certificate chain (PEM)",
      [](auto& c) -> auto& { return c.tls.cert_file; }, kNoDefault));
  t.push_back(Value(
      "tls-key-file", C::kNewWorkers, "Server private key (PEM)",
      [](auto& c) -> auto& { return c.tls.key_file; }, kNoDefault));
  t.push_back(Value(
      "tls-key-file-pass", C::kNewWorkers, "Passphrase of an encrypted tls-key-file",
      [](auto& c) -> auto& { return c.tls.key_file_pass; }, kNoDefault));
  t.push_back(Value(
      "tls-ca-cert-file", C::kNewWorkers,
      "CA certificates (PEM) that client certificates must chain to",
      [](auto& c) -> auto& { return c.tls.ca_cert_file; }, kNoDefault));
  t.push_back(Value(
      "tls-ca-cert-dir", C::kNewWorkers, "Directory of CA certificates (c_rehash layout)",
      [](auto& c) -> auto& { return c.tls.ca_cert_dir; }, kNoDefault));
  t.push_back(Value(
      "tls-auth-clients", C::kNewWorkers,
      "Client certificates: yes (required), optional (checked if sent) or no",
      [](auto& c) -> auto& { return c.tls.auth_clients; }, kShowDefault,
      [](CLI::Option* o) {
        o->check(CLI::IsMember({"yes", "no", "optional"}));
      }));
  t.push_back(Value(
      "tls-protocols", C::kNewWorkers,
      "Protocols to accept, e.g. \"TLSv1.2 TLSv1.3\" (the default)",
      [](auto& c) -> auto& { return c.tls.protocols; }, kNoDefault));
  t.push_back(Value(
      "tls-ciphers", C::kNewWorkers, "TLSv1.2 and older cipher list (OpenSSL syntax)",
      [](auto& c) -> auto& { return c.tls.ciphers; }, kNoDefault));
  t.push_back(Value(
      "tls-ciphersuites", C::kNewWorkers, "TLSv1.3 cipher suites (OpenSSL syntax)",
      [](auto& c) -> auto& { return c.tls.ciphersuites; }, kNoDefault));
  t.push_back(Value(
      "tls-prefer-server-ciphers", C::kNewWorkers,
      "Choose the cipher by the server's order, not the client's (yes or no)",
      [](auto& c) -> auto& { return c.tls.prefer_server_ciphers; }, kShowDefault));
  t.push_back(Value(
      "tls-session-caching", C::kNewWorkers,
      "Resume TLS sessions (session cache and tickets; yes or no)",
      [](auto& c) -> auto& { return c.tls.session_caching; }, kShowDefault));
  t.push_back(Value(
      "tls-session-cache-size", C::kNewWorkers, "TLS sessions cached per worker",
      [](auto& c) -> auto& { return c.tls.session_cache_size; }, kShowDefault,
      InRange(uint32_t{1}, uint32_t{1} << 24)));
  t.push_back(Value(
      "tls-session-cache-timeout", C::kNewWorkers, "Seconds a cached TLS session stays valid",
      [](auto& c) -> auto& { return c.tls.session_cache_timeout; }, kShowDefault,
      InRange(uint32_t{1}, uint32_t{86400 * 365})));
  t.push_back(Value(
      "tls-handshake-timeout", C::kNewWorkers,
      "Close a TLS connection whose handshake has not completed after this many seconds",
      [](auto& c) -> auto& { return c.tls_handshake_timeout; }, kShowDefault,
      InRange(0.1, 3600.0)));
}

// CONFIG GET's TLS parameters, as Redis names them; the key's passphrase
// is not shown.
void AddTlsParameters(const Config& config, ConfigParameterList* out) {
  static constexpr const char* kNames[] = {"tls-port",
                                           "tls-cert-file",
                                           "tls-key-file",
                                           "tls-ca-cert-file",
                                           "tls-ca-cert-dir",
                                           "tls-auth-clients",
                                           "tls-protocols",
                                           "tls-ciphers",
                                           "tls-ciphersuites",
                                           "tls-prefer-server-ciphers",
                                           "tls-session-caching",
                                           "tls-session-cache-size",
                                           "tls-session-cache-timeout"};
  for (const char* name : kNames) out->emplace_back(name, FindSetting(name)->text(config));
}

std::vector<Setting> MakeTable() {
  std::vector<Setting> t;
  AddProcessRows(t);
  AddClientRows(t);
  AddStoreRows(t);
  AddSecurityRows(t);
  AddTlsRows(t);
  return t;
}

}  // namespace

std::string_view NameOf(Change change) {
  switch (change) {
    case Change::kLive:
      return "live";
    case Change::kNewWorkers:
      return "new-workers";
    case Change::kRestart:
      return "restart";
    case Change::kNextStart:
      return "next-start";
  }
  return "?";
}

const std::vector<Setting>& Settings() {
  static const std::vector<Setting> table = MakeTable();
  return table;
}

const Setting* FindSetting(std::string_view name) {
  for (const Setting& s : Settings()) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

void AddSettingOptions(CLI::App& app, Config* config) {
  for (const Setting& s : Settings()) s.add(app, config);
}

std::string FinishSettings(Config* config) {
  for (const Setting& s : Settings()) {
    if (!s.finish) continue;
    if (std::string e = s.finish(config); !e.empty()) return e;
  }
  return "";
}

bool SameExceptLive(const Config& a, const Config& b) {
  for (const Setting& s : Settings()) {
    if (s.change == Change::kNewWorkers && !s.same(a, b)) return false;
  }
  return true;
}

std::string RestartOnlyChange(const Config& a, const Config& b) {
  for (const Setting& s : Settings()) {
    if (s.change == Change::kRestart && !s.same(a, b)) return s.name;
  }
  return "";
}

ConfigParameterList ConfigParameters(const Config& config) {
  using Render = std::string (*)(const Config&);
  // nullptr: the row of that name renders it.
  static constexpr std::pair<const char*, Render> kReported[] = {
      {"bind", nullptr},
      {"port", nullptr},
      {"maxclients", nullptr},
      {"timeout", nullptr},
      {"tcp-keepalive", nullptr},
      {"proto-max-bulk-len", nullptr},
      {"client-query-buffer-limit", nullptr},
      // Redis's form of the two output-buffer rows: class hard soft seconds.
      {"client-output-buffer-limit",
       [](const Config& c) {
         return "normal " + std::to_string(c.server.output_buffer_hard_limit) + " " +
                std::to_string(c.server.output_buffer_soft_limit) + " 0";
       }},
      // Redis's settings that are fixed here: one database, no persistence.
      {"databases", [](const Config&) { return std::string("1"); }},
      {"save", [](const Config&) { return std::string(); }},
      {"appendonly", [](const Config&) { return std::string("no"); }},
      {"maxmemory", nullptr},
      {"maxmemory-policy", nullptr},
      {"slowlog-log-slower-than", nullptr},
      {"slowlog-max-len", nullptr},
      {"requirepass", nullptr},
      {"aclfile", nullptr},
      {"protected-mode", nullptr},
      {"acllog-max-len", nullptr},
  };
  ConfigParameterList out;
  for (const auto& [name, render] : kReported) {
    out.emplace_back(name, render != nullptr ? render(config) : FindSetting(name)->text(config));
  }
  AddTlsParameters(config, &out);
  return out;
}

}  // namespace redhub::master
