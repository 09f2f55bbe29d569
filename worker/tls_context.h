// The server's TLS configuration as OpenSSL holds it: an SSL_CTX built from
// Redis 7.0's tls-* settings (certificate and key, CA for client
// certificates, protocols, ciphers, session cache).
//
// The master builds it (MakeTlsContext) at start and at every reload, so a
// bad certificate refuses the start or the reload with the reason, and the
// workers it forks inherit the context already loaded: a reload re-reads
// the files, and every worker of one generation shares the session-ticket
// keys, so a session resumes whichever worker's SO_REUSEPORT socket the
// client lands on. A worker never reads the files itself.
//
//   worker::TlsSettings s;
//   s.cert_file = "server.crt";
//   s.key_file = "server.key";
//   s.auth_clients = "no";
//   std::string error;
//   SSL_CTX* ctx = worker::MakeTlsContext(s, &error);  // nullptr: error says why
#pragma once

#include <cstdint>
#include <string>

typedef struct ssl_ctx_st SSL_CTX;

namespace redhub::worker {

// Redis's tls-* settings, with Redis 7.0's defaults.
struct TlsSettings {
  std::string cert_file;             // tls-cert-file (PEM chain), required
  std::string key_file;              // tls-key-file (PEM), required
  std::string key_file_pass;         // tls-key-file-pass, for an encrypted key
  std::string ca_cert_file;          // tls-ca-cert-file: CAs trusted for client certificates
  std::string ca_cert_dir;           // tls-ca-cert-dir (c_rehash layout)
  std::string auth_clients = "yes";  // yes | no | optional
  std::string protocols;             // "" = "TLSv1.2 TLSv1.3"
  std::string ciphers;               // TLSv1.2 and below; "" = OpenSSL's default
  std::string ciphersuites;          // TLSv1.3; "" = OpenSSL's default
  bool prefer_server_ciphers = false;
  bool session_caching = true;
  uint32_t session_cache_size = 20 * 1024;
  uint32_t session_cache_timeout = 300;  // seconds
  bool operator==(const TlsSettings&) const = default;
};

// Checks what can be checked without reading files (auth_clients and
// protocols spelled right, a CA given when clients must show a
// certificate): "" or the error.
std::string CheckTlsSettings(const TlsSettings& settings);

// A server context, or nullptr with *error naming the setting, the file and
// OpenSSL's reason. The caller owns the reference (SSL_CTX_free).
SSL_CTX* MakeTlsContext(const TlsSettings& settings, std::string* error);

// OpenSSL's error queue as text ("error:0A00010B:SSL routines::wrong
// version number; ..."), emptied; "" if it was empty.
std::string TakeOpenSslErrors();

}  // namespace redhub::worker
