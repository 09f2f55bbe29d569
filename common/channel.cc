#include "channel.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace redhub {
namespace {

// Large enough for a handed-off connection with a 64 KB unparsed tail.
constexpr size_t kMaxMessage = 256 * 1024;

}  // namespace

int SendMessage(int sock, MessageType type, std::string_view payload, int fd) {
  uint16_t t = static_cast<uint16_t>(type);
  iovec iov[2] = {{&t, sizeof(t)}, {const_cast<char*>(payload.data()), payload.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  }
  while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

int ReceiveMessage(int sock, Message* out) {
  static thread_local std::vector<char> buf(kMaxMessage + sizeof(uint16_t));
  iovec iov = {buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0) {
    if (errno != EINTR) return errno;
  }
  if (n == 0) return -1;
  out->fd = -1;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        if (out->fd < 0) {
          out->fd = fd;
        } else {
          close(fd);  // we expect one; never leak the rest
        }
      }
    }
  }
  if (n < static_cast<ssize_t>(sizeof(uint16_t)) || (msg.msg_flags & MSG_TRUNC)) {
    if (out->fd >= 0) close(out->fd);
    out->fd = -1;
    return EMSGSIZE;
  }
  uint16_t t;
  memcpy(&t, buf.data(), sizeof(t));
  out->type = static_cast<MessageType>(t);
  out->payload.assign(buf.data() + sizeof(t), n - sizeof(t));
  return 0;
}

int MakeChannel(int fds[2]) {
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) return errno;
  return 0;
}

void FieldWriter::Put(uint16_t tag, std::string_view bytes) {
  char head[6];
  uint32_t len = static_cast<uint32_t>(bytes.size());
  for (int i = 0; i < 2; i++) head[i] = static_cast<char>(tag >> (8 * i));
  for (int i = 0; i < 4; i++) head[2 + i] = static_cast<char>(len >> (8 * i));
  data_.append(head, sizeof(head));
  data_.append(bytes);
}

void FieldWriter::PutU64(uint16_t tag, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; i++) b[i] = static_cast<char>(v >> (8 * i));
  Put(tag, std::string_view(b, 8));
}

bool FieldReader::Next(uint16_t* tag, std::string_view* bytes) {
  if (data_.empty()) return false;
  if (data_.size() < 6) {
    ok_ = false;
    return false;
  }
  auto u = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(data_[i])); };
  *tag = static_cast<uint16_t>(u(0) | u(1) << 8);
  uint32_t len = u(2) | u(3) << 8 | u(4) << 16 | u(5) << 24;
  if (data_.size() - 6 < len) {
    ok_ = false;
    return false;
  }
  *bytes = data_.substr(6, len);
  data_.remove_prefix(6 + len);
  return true;
}

uint64_t FieldReader::U64(std::string_view bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes.size() && i < 8; i++) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  }
  return v;
}

}  // namespace redhub
