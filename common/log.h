// Logging for the daemon's processes, in Redis's format:
//   <pid>:<role> 25 Nov 2026 06:12:01.123 * message
// Lines go to stderr or to the file given to LogOpen (reopened on SIGUSR1).
#pragma once

#include <string>

namespace redhub::log {

enum class Level { kDebug = 0, kVerbose = 1, kNotice = 2, kWarning = 3 };

void SetLevel(Level level);
Level GetLevel();
// Parses "debug", "verbose", "notice", "warning". Returns false otherwise.
bool ParseLevel(const std::string& name, Level* level);
// The role letter Redis prints: 'M' master, 'W' worker, 'A' admin.
void SetRole(char role);
// Logs to this file from now on ("" means stderr). Returns "" or the error.
std::string Open(const std::string& path);
// Reopens the current file, for log rotation.
std::string Reopen();

void Write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace redhub::log

#define RH_LOG(level, ...)                                            \
  do {                                                                \
    if (::redhub::log::Level::level >= ::redhub::log::GetLevel())     \
      ::redhub::log::Write(::redhub::log::Level::level, __VA_ARGS__); \
  } while (0)
#define LOG_DEBUG(...) RH_LOG(kDebug, __VA_ARGS__)
#define LOG_VERBOSE(...) RH_LOG(kVerbose, __VA_ARGS__)
#define LOG_NOTICE(...) RH_LOG(kNotice, __VA_ARGS__)
#define LOG_WARNING(...) RH_LOG(kWarning, __VA_ARGS__)
