/* Built twice into stand-ins for the libraries Debian 12's civetweb (1.15,
 * built against the OpenSSL 1.1 API) dlopen()s by their unversioned names
 * (admin/civetweb_openssl.h says why and how they are loaded):
 *   - REDHUB_SHIM_SSL: soname "libssl.so", needs libssl.so.3, and defines
 *     the one function civetweb looks up that OpenSSL 3 no longer exports
 *     (a macro there); without it the lookup fails and civetweb calls a
 *     null pointer after the first TLS handshake;
 *   - otherwise: soname "libcrypto.so", needs libcrypto.so.3, adds nothing.
 * dlsym() on the stand-in's handle finds everything else in the library
 * it needs. */
#ifdef REDHUB_SHIM_SSL
#include <openssl/ssl.h>

#undef SSL_get_peer_certificate
X509* SSL_get_peer_certificate(const SSL* ssl);
X509* SSL_get_peer_certificate(const SSL* ssl) { return SSL_get1_peer_certificate(ssl); }
#else
/* Nothing: the point is the soname and the dependency. An empty unit is
 * not ISO C, hence this. */
typedef int redhub_civetweb_crypto_shim;
#endif
