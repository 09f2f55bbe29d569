#include "config.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>

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

int ParseArgs(int argc, char** argv, Config* config) {
  CLI::App app{"redhubd: a Redis-protocol server"};
  app.set_version_flag("--version", std::string("redhubd ") + "0.1.0");
  Options& o = config->server;

  app.add_option("--bind", config->bind, "Addresses to listen on (IPv4 or IPv6)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--port", config->port, "TCP port; 0 listens on no TCP port")
      ->capture_default_str();
  app.add_option("--unixsocket", config->unix_socket, "Also listen on this unix socket path");
  app.add_option("--workers", config->workers, "Worker processes")
      ->check(CLI::Range(1, 1))
      ->capture_default_str();
  app.add_option("--loglevel", config->log_level, "debug, verbose, notice or warning")
      ->check(CLI::IsMember({"debug", "verbose", "notice", "warning"}))
      ->capture_default_str();
  app.add_option("--logfile", config->log_file, "Log to this file instead of stderr");

  app.add_option("--maxclients", o.max_clients, "Maximum connected clients")
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? -1 : app.exit(e);
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
  o.read_buffer_cap = read_cap;
  o.max_query_buffer = query_limit;
  o.max_bulk_len = bulk_limit;
  o.output_buffer_soft_limit = soft;
  o.output_buffer_hard_limit = hard;
  o.idle_timeout = std::chrono::seconds(timeout);
  o.tcp_keepalive = std::chrono::seconds(keepalive);
  o.workers = config->workers;
  return 0;
}

}  // namespace redhub::master
