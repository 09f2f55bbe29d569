// Helpers shared by the command families and the dispatcher: argument
// parsing, Redis 7.0's exact error replies (so clients and tests that match
// on the wording keep working) and the daemon's own, and keyspace accounting.
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
inline constexpr std::string_view kErrLoading = "LOADING Redis is loading the dataset in memory";

// ASCII lower case, as Redis names commands and subcommands ("config|get").
inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

inline bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Redis's string2ll: optional '-', digits, no leading zeros or blanks, no
// overflow (the parser's own, from <redhub/resp.h>).
using resp::ParseInt64;

void WrongArity(resp::Writer& w, std::string_view name);
// One CLIENT LIST line, newline included (also the ACL LOG's client-info);
// current_cmd is the cmd= field (connection_commands.cc).
void WriteClientInfo(std::string& out, const ClientInfo& info, const CommandService& svc,
                     std::string_view current_cmd);
void UnknownSubcommand(resp::Writer& w, std::string_view sub, std::string_view cmd);
// Redis's "unknown command '<name>', with args beginning with: ..." (the
// name and each argument cut at 128 bytes, arguments up to ~256 bytes).
void UnknownCommand(resp::Writer& w, std::span<const std::string_view> args);

// Counts a read lookup the way Redis's lookupKeyRead does (INFO
// keyspace_hits and keyspace_misses); returns `found`, a bool or an
// optional, unchanged.
template <typename T>
T CountLookup(CommandContext& ctx, T found) {
  if (found) {
    ctx.service.stats.keyspace_hits++;
  } else {
    ctx.service.stats.keyspace_misses++;
  }
  return found;
}

}  // namespace redhub::worker
