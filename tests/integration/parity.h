// Parity with redis-server 7.0, byte for byte, for the integration tests:
// a scenario of raw RESP commands over two connections, run against a
// fresh redis-server and a fresh redhubd, every reply compared (RESP2 and,
// after HELLO 3, RESP3). Also the RESP-bytes helpers it is built on.
//
//   ParityScript s{"name", {C(0, {"SET", "a", "1"}), C(1, {"GET", "a"})}};
//   RunParity(s, /*pipelined=*/false);
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "server_process.h"

namespace redhub::integration {

std::string Raw(Socket& s, const std::vector<std::string>& argv);
// The next n replies' bytes; fewer at EOF, an error or the timeout.
std::vector<std::string> ReadReplies(Socket& s, size_t n);
// The reply re-encoded with the elements of every array that holds only
// bulk strings sorted: KEYS and SCAN, alone or inside EXEC, whose order is
// the server's own.
std::string Canonical(std::string_view data);

// One step of a scenario, on connection `conn` (0 or 1) of each server.
struct Step {
  enum Kind {
    kBytes,      // the reply bytes must be the same
    kSorted,     // the same once KEYS/SCAN arrays are sorted (Canonical)
    kMap,        // both reply with a RESP3 map (HELLO 3: the map names the server)
    kWaitGone,   // PTTL argv[0] until -2 (the key has expired and is gone)
    kWaitClock,  // TIME until argv[0] ms have passed on the server's clock, no key touched
  };
  int conn;
  std::vector<std::string> argv;
  Kind kind = kBytes;
};

inline Step C(int conn, std::vector<std::string> argv) { return Step{conn, std::move(argv)}; }
inline Step Sorted(int conn, std::vector<std::string> argv) {
  return Step{conn, std::move(argv), Step::kSorted};
}
inline Step Hello3(int conn) { return Step{conn, {"HELLO", "3"}, Step::kMap}; }
inline Step WaitGone(int conn, std::string key) {
  return Step{conn, {std::move(key)}, Step::kWaitGone};
}
inline Step WaitClock(int conn, int ms) {
  return Step{conn, {std::to_string(ms)}, Step::kWaitClock};
}

struct ParityScript {
  std::string name;
  std::vector<Step> steps;
};
inline void PrintTo(const ParityScript& script, std::ostream* os) { *os << script.name; }

// Runs the scenario on a fresh redis-server and a fresh one-worker redhubd
// (plus redhubd_args), two connections to each, and compares every reply
// (gtest failures). Pipelined: each run of consecutive commands on one
// connection goes as one write, its replies compared one by one.
void RunParity(const ParityScript& script, bool pipelined,
               const std::vector<std::string>& redhubd_args = {});

}  // namespace redhub::integration
