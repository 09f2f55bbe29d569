// Messages between processes of the daemon over SOCK_SEQPACKET unix sockets:
// one message per datagram, optionally carrying one file descriptor
// (SCM_RIGHTS). Used for master <-> worker control and for handing client
// connections from a retiring worker to its successor.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace redhub {

enum class MessageType : uint16_t {
  // master -> worker
  kRetire = 1,     // carries the handoff socket to the slot's new worker
  kConfig = 2,     // live settings (payload: EncodeLiveConfig)
  kReopenLog = 3,  // reopen the log file (log rotation, SIGUSR1 to the master)
  // worker -> master
  kReady = 10,
  kHeartbeat = 11,
  // retiring worker -> new worker, and back
  kConnection = 20,  // carries a client socket; payload: EncodeConnection
  kAdopted = 21,     // payload: the connection id, 8 bytes
  kRefused = 22,     // payload: the connection id
};

struct Message {
  MessageType type;
  std::string payload;
  int fd = -1;  // received descriptor, owned by the receiver
};

// Sends one message; fd < 0 sends none. Returns 0 or errno (EAGAIN when the
// socket is full).
int SendMessage(int sock, MessageType type, std::string_view payload, int fd = -1);
// Receives one message. Returns 0, errno, or -1 at end of stream.
int ReceiveMessage(int sock, Message* out);

// A SOCK_SEQPACKET socketpair, close-on-exec, non-blocking. Returns 0 or errno.
int MakeChannel(int fds[2]);

// Little-endian field encoding for messages that a later binary must still
// read: a sequence of (tag u16, length u32, bytes). Readers skip tags they do
// not know, so fields can be added without a version bump.
class FieldWriter {
 public:
  void Put(uint16_t tag, std::string_view bytes);
  void PutU64(uint16_t tag, uint64_t v);
  std::string& data() { return data_; }

 private:
  std::string data_;
};

class FieldReader {
 public:
  explicit FieldReader(std::string_view data) : data_(data) {}
  // Next field; false at the end or on a truncated field (then ok() is false).
  bool Next(uint16_t* tag, std::string_view* bytes);
  bool ok() const { return ok_; }
  static uint64_t U64(std::string_view bytes);

 private:
  std::string_view data_;
  bool ok_ = true;
};

}  // namespace redhub
