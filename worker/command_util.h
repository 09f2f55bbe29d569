// Helpers shared by the command families (commands.cc, string_commands.cc,
// keyspace_commands.cc): argument parsing and Redis 7.0's exact error
// replies, so clients and tests that match on the wording keep working.
#pragma once

#include <strings.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "commands.h"

namespace redhub::worker {

// Redis's shared error replies (src/server.c, createSharedObjects).
inline constexpr std::string_view kErrSyntax = "ERR syntax error";
inline constexpr std::string_view kErrNotInteger = "ERR value is not an integer or out of range";
inline constexpr std::string_view kErrNotFloat = "ERR value is not a valid float";
inline constexpr std::string_view kErrNoSuchKey = "ERR no such key";
inline constexpr std::string_view kErrOom =
    "OOM command not allowed when used memory > 'maxmemory'.";

inline bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Redis's string2ll: optional '-', digits, no leading zeros or blanks, no
// overflow (the parser's own, from <redhub/resp.h>).
using resp::ParseInt64;

void WrongArity(resp::Writer& w, std::string_view name);
void UnknownSubcommand(resp::Writer& w, std::string_view sub, std::string_view cmd);

}  // namespace redhub::worker
