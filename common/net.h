// Socket helpers shared by the framework and the prefork master: address
// parsing and formatting, and listening sockets.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace redhub {

struct Address {
  enum class Family { kTcp, kUnix } family = Family::kTcp;
  std::string host;  // IPv4 or IPv6 literal, or a name getaddrinfo knows
  uint16_t port = 0;
  std::string path;  // unix socket path
};

// Accepts "tcp://host:port", "host:port", "[v6]:port", ":port" (all IPv4
// addresses) and "unix:///path". Returns "" or what is wrong.
std::string ParseAddress(std::string_view text, Address* out);

// "1.2.3.4:5", "[::1]:5", "/path:0" (as Redis shows unix clients).
std::string FormatAddress(const sockaddr* addr, socklen_t len);

struct ListenOptions {
  int backlog = 511;
  bool reuse_port = false;  // SO_REUSEPORT: one socket per worker slot
  bool v6_only = true;
  int unix_mode = 0700;  // permissions of a unix socket file
};

// Creates a non-blocking, close-on-exec listening socket. On failure returns
// -1 and sets *error to the failed call with its arguments and errno.
int Listen(const Address& address, const ListenOptions& options, std::string* error);

// The port a TCP socket is bound to, or 0.
uint16_t BoundPort(int fd);

}  // namespace redhub
