// Connection's construction (the parts that need the owning loop: its
// clock, its options, the socket's addresses) and the set-up of an accepted
// socket as the options say.
#include "connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

#include "event_loop.h"
#include "log.h"
#include "net.h"
#include "syserr.h"

namespace redhub::worker {

Connection::Connection(EventLoop* owner_loop, int fd, uint64_t id)
    : owner(owner_loop), writer(out) {
  fd_ = fd;
  id_ = id;
  writer_ = &writer;
  server_ = owner_loop;
  loop_ = owner_loop;
  created_at_ = last_active_ = owner_loop->now();
  resp::ParserLimits limits;
  limits.max_bulk_len = owner_loop->options().max_bulk_len;
  parser.set_limits(limits);
  sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    remote_addr_ = FormatAddress(reinterpret_cast<sockaddr*>(&addr), len);
  }
  len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    local_addr_ = FormatAddress(reinterpret_cast<sockaddr*>(&addr), len);
  }
}

Connection::~Connection() = default;

void ConfigureSocket(int fd, const Options& options) {
  int one = 1;
  sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  bool tcp = getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
             (addr.ss_family == AF_INET || addr.ss_family == AF_INET6);
  if (tcp) {
    if (options.tcp_nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
      LOG_VERBOSE("setsockopt(TCP_NODELAY) failed: %s", ErrnoText(errno).c_str());
    }
    if (options.tcp_keepalive.count() > 0) {
      int idle = static_cast<int>(options.tcp_keepalive.count());
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
      // Redis's default: probe every third of the idle time.
      int interval = options.tcp_keep_interval.count() > 0
                         ? static_cast<int>(options.tcp_keep_interval.count())
                         : (idle / 3 > 0 ? idle / 3 : 1);
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
      int count = options.tcp_keep_count > 0 ? options.tcp_keep_count : 3;
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    }
  }
  if (options.socket_recv_buffer > 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &options.socket_recv_buffer,
                 sizeof(options.socket_recv_buffer)) < 0) {
    LOG_VERBOSE("setsockopt(SO_RCVBUF, %d) failed: %s", options.socket_recv_buffer,
                ErrnoText(errno).c_str());
  }
  if (options.socket_send_buffer > 0 &&
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &options.socket_send_buffer,
                 sizeof(options.socket_send_buffer)) < 0) {
    LOG_VERBOSE("setsockopt(SO_SNDBUF, %d) failed: %s", options.socket_send_buffer,
                ErrnoText(errno).c_str());
  }
}

}  // namespace redhub::worker
