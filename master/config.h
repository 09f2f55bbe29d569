// The daemon's configuration: command-line flags (CLI11), parsed and checked
// in one place so that start-up and, later, reload share the same rules.
#pragma once

#include <redhub/server.h>

#include <cstdint>
#include <string>
#include <vector>

namespace redhub::master {

struct Config {
  std::vector<std::string> bind = {"127.0.0.1"};
  uint16_t port = 6379;
  std::string unix_socket;
  int workers = 1;
  std::string log_level = "notice";
  std::string log_file;
  Options server;  // the framework's limits and socket options
};

// Parses argv. Returns 0 to go on; otherwise the process exit code, after
// CLI11 printed help, the version or the error.
int ParseArgs(int argc, char** argv, Config* config);

// Redis's memory units: "100", "100b", "1k", "1kb", "5mb", "2gb" (k = 1000,
// kb = 1024, case-insensitive). Returns false if text is not one.
bool ParseMemory(const std::string& text, uint64_t* bytes);

}  // namespace redhub::master
