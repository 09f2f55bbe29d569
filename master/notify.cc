#include "notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "log.h"
#include "syserr.h"

namespace redhub::master {

bool Notify(const std::string& state) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return true;
  size_t len = strlen(path);
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sockaddr_un::sun_path)) {
    LOG_WARNING("NOTIFY_SOCKET='%s' is not a unix socket path", path);
    return false;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    LOG_WARNING("socket(AF_UNIX, SOCK_DGRAM) for sd_notify failed: %s", ErrnoText(errno).c_str());
    return false;
  }
  ssize_t n =
      sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
             static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  int err = errno;
  close(fd);
  if (n < 0) {
    LOG_WARNING("sendto(NOTIFY_SOCKET %s) failed: %s", path, ErrnoText(err).c_str());
    return false;
  }
  return true;
}

}  // namespace redhub::master
