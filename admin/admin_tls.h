// TLS for the admin endpoint. civetweb (Debian 12's 1.15) takes one PEM file
// holding both certificate and key; operators and cert-manager keep them in
// two (tls.crt, tls.key), so the admin process loads them itself, through
// civetweb's init_ssl callback, into the SSL_CTX civetweb made.
//
// civetweb's own way to OpenSSL does not work on Debian 12 as packaged
// (civetweb_openssl.h): RunAdmin loads what it needs first.
#pragma once

#include <string>

namespace redhub::admin {

// Loads the certificate chain and the private key (PEM) into ssl_ctx (an
// SSL_CTX*), checks that they match, and refuses anything below TLS 1.2.
// "" or what failed, with OpenSSL's reason.
std::string ConfigureTls(void* ssl_ctx, const std::string& cert_file, const std::string& key_file);

// What RunAdmin will need: both files or neither, both loading into a fresh
// context and matching. "" or the
// reason, naming the setting (admin-tls-cert-file, admin-tls-key-file).
std::string CheckTlsFiles(const std::string& cert_file, const std::string& key_file);

}  // namespace redhub::admin
