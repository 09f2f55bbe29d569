// The TLS half of Transport (transport.h): OpenSSL's non-blocking calls and
// their SSL_get_error codes turned into the loop's kIo* vocabulary.
#include "transport.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "syserr.h"
#include "tls_context.h"

namespace redhub::worker {

Transport::~Transport() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

std::string Transport::StartTls(SSL_CTX* ctx, int fd) {
  ERR_clear_error();
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr) return "SSL_new failed: " + TakeOpenSslErrors();
  if (SSL_set_fd(ssl_, fd) != 1) {
    std::string e = "SSL_set_fd(" + std::to_string(fd) + ") failed: " + TakeOpenSslErrors();
    SSL_free(ssl_);
    ssl_ = nullptr;
    return e;
  }
  SSL_set_accept_state(ssl_);
  handshaking_ = true;
  return "";
}

ssize_t Transport::Failure(int ret, const char* call) {
  int code = SSL_get_error(ssl_, ret);
  switch (code) {
    case SSL_ERROR_WANT_READ:
      return kIoWantRead;
    case SSL_ERROR_WANT_WRITE:
      return kIoWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      // close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a plain EOF.
      return kIoClosed;
    case SSL_ERROR_SYSCALL: {
      int err = errno;
      std::string queue = TakeOpenSslErrors();
      error_ = !queue.empty() ? std::string(call) + " failed: " + queue
               : err != 0     ? SysError(call, err)
                              : std::string(call) + " failed: connection closed";
      return kIoError;
    }
    default: {
      std::string queue = TakeOpenSslErrors();
      error_ = std::string(call) +
               " failed: " + (queue.empty() ? "SSL_get_error " + std::to_string(code) : queue);
      return kIoError;
    }
  }
}

ssize_t Transport::Handshake() {
  ERR_clear_error();
  int ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    handshaking_ = false;
    return 1;
  }
  ssize_t r = Failure(ret, "SSL_do_handshake");
  // A peer gone before the handshake ended failed it, whatever OpenSSL
  // calls it.
  if (r == kIoClosed) {
    error_ = "SSL_do_handshake failed: connection closed";
    return kIoError;
  }
  return r;
}

ssize_t Transport::TlsRead(char* buf, size_t len) {
  if (deferred_ != 1) {
    ssize_t r = deferred_;
    deferred_ = 1;
    return r;
  }
  // Record after record: one SSL_read_ex gives at most one record (16 KB),
  // and a pipeline is read as one batch, as a plaintext recv reads it.
  size_t total = 0;
  while (total < len) {
    ERR_clear_error();
    size_t n = 0;
    int ret = SSL_read_ex(ssl_, buf + total, len - total, &n);
    if (ret == 1) {
      total += n;
      continue;
    }
    ssize_t r = Failure(ret, "SSL_read");
    if (total == 0) return r;
    if (r != kIoWantRead) deferred_ = r;  // the caller runs what came first
    break;
  }
  return static_cast<ssize_t>(total);
}

ssize_t Transport::TlsWrite(const char* buf, size_t len) {
  ERR_clear_error();
  size_t n = 0;
  int ret = SSL_write_ex(ssl_, buf, len, &n);
  if (ret == 1) return static_cast<ssize_t>(n);
  ssize_t r = Failure(ret, "SSL_write");
  return r == kIoClosed ? kIoError : r;
}

bool Transport::HasPending() const {
  return ssl_ != nullptr && !handshaking_ && (deferred_ != 1 || SSL_has_pending(ssl_) == 1);
}

void Transport::Shutdown() {
  if (ssl_ == nullptr || handshaking_) return;
  ERR_clear_error();
  // One call: it queues close_notify and sends what the socket takes; the
  // peer's own close_notify is not waited for.
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::string Transport::Describe() const {
  if (ssl_ == nullptr) return "";
  return std::string(SSL_get_version(ssl_)) + " " + SSL_get_cipher_name(ssl_);
}

}  // namespace redhub::worker
