// The TLS half of Transport (transport.h): OpenSSL's non-blocking calls and
// their SSL_get_error codes turned into the loop's kIo* vocabulary.
#include "transport.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "syserr.h"
#include "tls_context.h"

namespace redhub::worker {

Transport::Tls::~Tls() {
  if (ssl != nullptr) SSL_free(ssl);
}

const std::string& Transport::error() const {
  static const std::string kNone;
  return tls_ != nullptr ? tls_->error : kNone;
}

std::string Transport::StartTls(SSL_CTX* ctx, int fd) {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr) return "SSL_new failed: " + TakeOpenSslErrors();
  if (SSL_set_fd(ssl, fd) != 1) {
    std::string e = "SSL_set_fd(" + std::to_string(fd) + ") failed: " + TakeOpenSslErrors();
    SSL_free(ssl);
    return e;
  }
  SSL_set_accept_state(ssl);
  tls_ = std::make_unique<Tls>();
  tls_->ssl = ssl;
  return "";
}

ssize_t Transport::Failure(int ret, const char* call) {
  SSL* ssl = tls_->ssl;
  std::string& error = tls_->error;
  int code = SSL_get_error(ssl, ret);
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
      error = !queue.empty() ? std::string(call) + " failed: " + queue
              : err != 0     ? SysError(call, err)
                             : std::string(call) + " failed: connection closed";
      return kIoError;
    }
    default: {
      std::string queue = TakeOpenSslErrors();
      error = std::string(call) +
              " failed: " + (queue.empty() ? "SSL_get_error " + std::to_string(code) : queue);
      return kIoError;
    }
  }
}

ssize_t Transport::Handshake() {
  ERR_clear_error();
  int ret = SSL_do_handshake(tls_->ssl);
  if (ret == 1) {
    tls_->handshaking = false;
    return 1;
  }
  ssize_t r = Failure(ret, "SSL_do_handshake");
  // A peer gone before the handshake ended failed it, whatever OpenSSL
  // calls it.
  if (r == kIoClosed) {
    tls_->error = "SSL_do_handshake failed: connection closed";
    return kIoError;
  }
  return r;
}

ssize_t Transport::TlsRead(char* buf, size_t len) {
  if (tls_->deferred != 1) {
    ssize_t r = tls_->deferred;
    tls_->deferred = 1;
    return r;
  }
  // Record after record: one SSL_read_ex gives at most one record (16 KB),
  // and a pipeline is read as one batch, as a plaintext recv reads it.
  size_t total = 0;
  while (total < len) {
    ERR_clear_error();
    size_t n = 0;
    int ret = SSL_read_ex(tls_->ssl, buf + total, len - total, &n);
    if (ret == 1) {
      total += n;
      continue;
    }
    ssize_t r = Failure(ret, "SSL_read");
    if (total == 0) return r;
    if (r != kIoWantRead) tls_->deferred = r;  // the caller runs what came first
    break;
  }
  return static_cast<ssize_t>(total);
}

ssize_t Transport::TlsWrite(const char* buf, size_t len) {
  ERR_clear_error();
  size_t n = 0;
  int ret = SSL_write_ex(tls_->ssl, buf, len, &n);
  if (ret == 1) return static_cast<ssize_t>(n);
  ssize_t r = Failure(ret, "SSL_write");
  return r == kIoClosed ? kIoError : r;
}

bool Transport::HasPending() const {
  return tls_ != nullptr && !tls_->handshaking &&
         (tls_->deferred != 1 || SSL_has_pending(tls_->ssl) == 1);
}

void Transport::Shutdown() {
  if (tls_ == nullptr || tls_->handshaking) return;
  ERR_clear_error();
  // One call: it queues close_notify and sends what the socket takes; the
  // peer's own close_notify is not waited for.
  SSL_shutdown(tls_->ssl);
  ERR_clear_error();
}

std::string Transport::Describe() const {
  if (tls_ == nullptr) return "";
  return std::string(SSL_get_version(tls_->ssl)) + " " + SSL_get_cipher_name(tls_->ssl);
}

}  // namespace redhub::worker
