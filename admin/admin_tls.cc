#include "admin_tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cerrno>

#include "syserr.h"

namespace redhub::admin {
namespace {

// OpenSSL's queued errors as one line (they come innermost last).
std::string OpenSslErrors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

}  // namespace

std::string ConfigureTls(void* ssl_ctx, const std::string& cert_file, const std::string& key_file) {
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  ERR_clear_error();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return "cannot require TLS 1.2: " + OpenSslErrors();
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return "admin-tls-cert-file " + cert_file + ": " + OpenSslErrors();
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return "admin-tls-key-file " + key_file + ": " + OpenSslErrors();
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return "admin-tls-key-file " + key_file + " does not match admin-tls-cert-file " + cert_file +
           ": " + OpenSslErrors();
  }
  return "";
}

std::string CheckTlsFiles(const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() && key_file.empty()) return "";
  if (cert_file.empty()) return "admin-tls-key-file needs admin-tls-cert-file";
  if (key_file.empty()) return "admin-tls-cert-file needs admin-tls-key-file";
  // OpenSSL's "no such file" is a line of codes; say it plainly first.
  for (const auto& [name, path] :
       {std::pair{"admin-tls-cert-file", &cert_file}, std::pair{"admin-tls-key-file", &key_file}}) {
    if (access(path->c_str(), R_OK) != 0) {
      return std::string(name) + ": " + SysError("access(" + *path + ", R_OK)", errno);
    }
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return "SSL_CTX_new: " + OpenSslErrors();
  std::string error = ConfigureTls(ctx, cert_file, key_file);
  SSL_CTX_free(ctx);
  if (!error.empty()) return error;
  return "";
}

}  // namespace redhub::admin
