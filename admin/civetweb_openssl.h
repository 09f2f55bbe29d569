// Makes civetweb's TLS work on Debian 12.
//
// Debian 12's civetweb (1.15) reaches OpenSSL through dlopen("libssl.so")
// and dlopen("libcrypto.so"), names only libssl-dev installs, and was built
// against the OpenSSL 1.1 API: it looks up SSL_get_peer_certificate, which
// OpenSSL 3 no longer exports. The lookup fails, and civetweb either refuses
// to start ("Error initializing SSL context") or, once the library is
// initialised, calls a null pointer after the first handshake (SIGSEGV).
//
// The fix needs no package: two stand-in libraries
// (civetweb_openssl_shim.c) whose sonames are "libssl.so" and
// "libcrypto.so", which depend on the real libssl.so.3 and libcrypto.so.3,
// and of which the first defines SSL_get_peer_certificate. They are built
// into this binary, written to memfd files and dlopen()ed before civetweb
// starts; glibc's dlopen("libssl.so") then finds the library already loaded
// under that soname and uses it, whatever /usr/lib holds.
#pragma once

#include <string>

namespace redhub::admin {

// Loads both stand-ins, once per process (later calls return the first
// result). "" or what failed.
std::string LoadOpenSslForCivetweb();

}  // namespace redhub::admin
