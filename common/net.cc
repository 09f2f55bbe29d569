#include "net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>

#include "syserr.h"

namespace redhub {
namespace {

std::string Errno(const std::string& call) { return SysError(call, errno); }

}  // namespace

std::string ParseAddress(std::string_view text, Address* out) {
  *out = Address{};
  if (text.starts_with("unix://")) {
    out->family = Address::Family::kUnix;
    out->path = std::string(text.substr(7));
    if (out->path.empty()) return "empty unix socket path";
    if (out->path.size() >= sizeof(sockaddr_un::sun_path)) return "unix socket path too long";
    return "";
  }
  if (text.starts_with("tcp://")) text.remove_prefix(6);
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return "address must be host:port";
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
    return "invalid port '" + std::string(port) + "'";
  }
  out->host = host.empty() ? "0.0.0.0" : std::string(host);
  out->port = static_cast<uint16_t>(value);
  return "";
}

std::string FormatAddress(const sockaddr* addr, socklen_t len) {
  char ip[INET6_ADDRSTRLEN] = "?";
  switch (addr->sa_family) {
    case AF_INET: {
      auto* in = reinterpret_cast<const sockaddr_in*>(addr);
      inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
      return std::string(ip) + ":" + std::to_string(ntohs(in->sin_port));
    }
    case AF_INET6: {
      auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
      inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
      return "[" + std::string(ip) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    case AF_UNIX: {
      auto* un = reinterpret_cast<const sockaddr_un*>(addr);
      size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      std::string path(un->sun_path, strnlen(un->sun_path, n));
      return path + ":0";
    }
  }
  return "?:0";
}

int Listen(const Address& address, const ListenOptions& options, std::string* error) {
  int one = 1;
  if (address.family == Address::Family::kUnix) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *error = Errno("socket(AF_UNIX)");
      return -1;
    }
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    memcpy(un.sun_path, address.path.c_str(), address.path.size() + 1);
    unlink(address.path.c_str());  // a stale file from a previous run
    if (bind(fd, reinterpret_cast<sockaddr*>(&un), sizeof(un)) < 0) {
      *error = Errno("bind(\"" + address.path + "\")");
      close(fd);
      return -1;
    }
    if (chmod(address.path.c_str(), options.unix_mode) < 0 || listen(fd, options.backlog) < 0) {
      *error = Errno("listen(\"" + address.path + "\")");
      close(fd);
      return -1;
    }
    return fd;
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(address.port);
  if (int rc = getaddrinfo(address.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    *error = "getaddrinfo(\"" + address.host + "\") failed: " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  std::string where = address.host + ":" + port;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      *error = Errno("socket(" + where + ")");
      continue;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (options.reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
      *error = Errno("setsockopt(SO_REUSEPORT, " + where + ")");
      close(fd);
      fd = -1;
      continue;
    }
    if (ai->ai_family == AF_INET6) {
      int v6only = options.v6_only ? 1 : 0;
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
      *error = Errno("bind(" + where + ")");
      close(fd);
      fd = -1;
      continue;
    }
    if (listen(fd, options.backlog) < 0) {
      *error = Errno("listen(" + where + ")");
      close(fd);
      fd = -1;
      continue;
    }
    break;
  }
  freeaddrinfo(res);
  return fd;
}

uint16_t BoundPort(int fd) {
  sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

}  // namespace redhub
