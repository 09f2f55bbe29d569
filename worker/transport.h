// The byte stream under a connection: the socket itself (plaintext) or a
// TLS session over it (OpenSSL). The event loop reads and writes only
// through Transport::Read and Transport::Write, which answer in one
// vocabulary whichever it is: bytes moved, or what to wait for.
//
// Plaintext costs what recv(2)/send(2) cost: Read and Write are inline, and
// the only addition is one well-predicted test of a pointer (no virtual
// call; bench/compare.sh against the commit before this one, README). A
// plaintext Transport is that one pointer (8 bytes of the Connection); the
// TLS state is allocated only for a TLS connection.
//
// TLS adds what the loop must know about OpenSSL:
//   - a handshake before the first byte (Handshake(), non-blocking: the loop
//     waits on the direction it names, bounded by tls-handshake-timeout);
//   - a read may need to write (a TLS 1.3 key update's answer with the socket
//     full), and a write may need to read: kIoWantWrite from Read and
//     kIoWantRead from Write, which the loop maps onto its watchers;
//   - bytes OpenSSL has already taken from the socket (a record larger than
//     the room given, or read ahead) that epoll will never announce again:
//     HasPending(), which the loop checks after every read.
// A TLS session cannot leave its process (its keys live in this SSL object),
// so a TLS connection is never handed to a successor worker.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cerrno>
#include <memory>
#include <string>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace redhub::worker {

// Read and Write return the bytes moved (> 0) or one of these.
inline constexpr ssize_t kIoClosed = 0;      // Read: the peer ended its stream
inline constexpr ssize_t kIoWantRead = -1;   // nothing now: call again once readable
inline constexpr ssize_t kIoWantWrite = -2;  // nothing now: call again once writable
inline constexpr ssize_t kIoError = -3;      // the connection failed: close it

class Transport {
 public:
  Transport() = default;
  ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Makes this a server-side TLS session over fd, handshake pending. "" or
  // OpenSSL's error.
  std::string StartTls(SSL_CTX* ctx, int fd);
  bool tls() const { return tls_ != nullptr; }
  // TLS, before the handshake has completed.
  bool handshaking() const { return tls_ != nullptr && tls_->handshaking; }

  // Up to len bytes into buf. TLS reads record after record until buf is
  // full or the socket is empty.
  ssize_t Read(int fd, char* buf, size_t len) {
    if (tls_ != nullptr) [[unlikely]]
      return TlsRead(buf, len);
    ssize_t n = recv(fd, buf, len, 0);
    if (n >= 0) return n;
    // EINTR: level-triggered, the socket announces itself again.
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? kIoWantRead : kIoError;
  }
  // Up to len bytes of buf; a retry after kIoWant* must pass the same bytes
  // first (more may follow: the buffer may have grown and moved).
  ssize_t Write(int fd, const char* buf, size_t len) {
    if (tls_ != nullptr) [[unlikely]]
      return TlsWrite(buf, len);
    while (true) {
      ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? kIoWantWrite : kIoError;
    }
  }

  // TLS: one step of the server handshake. 1 once complete, kIoWantRead or
  // kIoWantWrite to wait, kIoError if it failed (error() says why).
  ssize_t Handshake();
  // TLS: OpenSSL holds bytes already taken from the socket, or a read
  // stopped with something to report: Read again without waiting.
  bool HasPending() const;
  // TLS: sends close_notify, best effort (never waits), before the socket
  // is closed by the server.
  void Shutdown();
  // The last TLS failure, as OpenSSL put it ("" if none).
  const std::string& error() const;
  // "TLSv1.3 TLS_AES_256_GCM_SHA384" once the handshake is done.
  std::string Describe() const;

 private:
  ssize_t TlsRead(char* buf, size_t len);
  ssize_t TlsWrite(const char* buf, size_t len);
  // SSL_get_error's code for a failed call as one of kIo*; the error text kept.
  ssize_t Failure(int ret, const char* call);

  struct Tls {
    ~Tls();
    SSL* ssl = nullptr;
    bool handshaking = true;
    // A read that returned data and then met something else (the peer's
    // close, an error, a need to write) reports it at the next Read.
    ssize_t deferred = 1;  // 1: nothing deferred
    std::string error;
  };
  std::unique_ptr<Tls> tls_;  // null: plaintext
};

}  // namespace redhub::worker
