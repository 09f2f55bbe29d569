// Building the server's SSL_CTX from Redis's tls-* settings (tls_context.h).
#include "tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cctype>
#include <sstream>

namespace redhub::worker {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// tls-protocols as OpenSSL's "no" options: every protocol not named is off,
// so a list with a gap ("TLSv1.1 TLSv1.3") means what it says, as in Redis.
bool ProtocolOptions(const std::string& protocols, uint64_t* no_options, std::string* error) {
  const std::string list = protocols.empty() ? "TLSv1.2 TLSv1.3" : protocols;
  struct Name {
    const char* name;
    uint64_t no;
  };
  static constexpr Name kNames[] = {{"tlsv1", SSL_OP_NO_TLSv1},
                                    {"tlsv1.1", SSL_OP_NO_TLSv1_1},
                                    {"tlsv1.2", SSL_OP_NO_TLSv1_2},
                                    {"tlsv1.3", SSL_OP_NO_TLSv1_3}};
  uint64_t off = SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2 | SSL_OP_NO_TLSv1_3;
  std::istringstream words(list);
  std::string word;
  while (words >> word) {
    bool known = false;
    for (const Name& n : kNames) {
      if (Lower(word) == n.name) {
        off &= ~n.no;
        known = true;
      }
    }
    if (!known) {
      *error = "tls-protocols: invalid protocol '" + word +
               "'; use a combination of 'TLSv1', 'TLSv1.1', 'TLSv1.2' and 'TLSv1.3'";
      return false;
    }
  }
  if (off == (SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2 | SSL_OP_NO_TLSv1_3)) {
    *error = "tls-protocols: no TLS protocol enabled";
    return false;
  }
  *no_options = off;
  return true;
}

// The key's passphrase for OpenSSL's PEM reader; userdata is the setting.
int PassphraseCallback(char* buf, int size, int, void* userdata) {
  const auto* pass = static_cast<const std::string*>(userdata);
  if (pass == nullptr || pass->empty()) return 0;
  int n = static_cast<int>(pass->size()) < size ? static_cast<int>(pass->size()) : size;
  pass->copy(buf, static_cast<size_t>(n));
  return n;
}

}  // namespace

std::string TakeOpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(e, text, sizeof(text));
    out += (out.empty() ? "" : "; ") + std::string(text);
  }
  return out;
}

std::string CheckTlsSettings(const TlsSettings& s) {
  if (s.auth_clients != "yes" && s.auth_clients != "no" && s.auth_clients != "optional") {
    return "tls-auth-clients: '" + s.auth_clients + "' is not yes, no or optional";
  }
  uint64_t ignored;
  std::string error;
  if (!ProtocolOptions(s.protocols, &ignored, &error)) return error;
  if (s.cert_file.empty()) return "tls-port is set but no tls-cert-file is configured";
  if (s.key_file.empty()) return "tls-port is set but no tls-key-file is configured";
  // Redis's rule: a client certificate can only be checked against a CA.
  if (s.auth_clients != "no" && s.ca_cert_file.empty() && s.ca_cert_dir.empty()) {
    return "either tls-ca-cert-file or tls-ca-cert-dir must be configured when "
           "tls-auth-clients is yes or optional";
  }
  return "";
}

SSL_CTX* MakeTlsContext(const TlsSettings& s, std::string* error) {
  if (std::string e = CheckTlsSettings(s); !e.empty()) {
    *error = e;
    return nullptr;
  }
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  auto fail = [&](const std::string& what) {
    std::string why = TakeOpenSslErrors();
    *error = what + (why.empty() ? "" : ": " + why);
    if (ctx != nullptr) SSL_CTX_free(ctx);
    return nullptr;
  };
  if (ctx == nullptr) return fail("SSL_CTX_new(TLS_server_method) failed");

  uint64_t no_protocols = 0;
  if (!ProtocolOptions(s.protocols, &no_protocols, error)) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  // No renegotiation at all (a client-driven CPU cost, and RESP has no use
  // for it); a client that closes without close_notify has ended its
  // stream, as a TCP FIN does: RESP frames its own requests.
  uint64_t options = no_protocols | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                     SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_SINGLE_DH_USE;
  if (s.prefer_server_ciphers) options |= SSL_OP_CIPHER_SERVER_PREFERENCE;
  if (!s.session_caching) options |= SSL_OP_NO_TICKET;
  SSL_CTX_set_options(ctx, options);
  // The output buffer may grow and move between an SSL_write that must be
  // retried and its retry (replies are appended meanwhile), and a write
  // that took part of it is progress, as send(2)'s is.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // One read(2) for several records of a pipeline, not two per record
  // (header, then body); what it reads ahead is SSL_has_pending's.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_dh_auto(ctx, 1);
  // Needed for resumption with client certificates; the same in every worker.
  static const unsigned char kSessionContext[] = "redhub";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
  if (s.session_caching) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, s.session_cache_size);
    SSL_CTX_set_timeout(ctx, s.session_cache_timeout);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }

  if (!s.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, s.ciphers.c_str()) != 1) {
    return fail("tls-ciphers: cannot use '" + s.ciphers + "'");
  }
  if (!s.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, s.ciphersuites.c_str()) != 1) {
    return fail("tls-ciphersuites: cannot use '" + s.ciphersuites + "'");
  }

  SSL_CTX_set_default_passwd_cb(ctx, PassphraseCallback);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, const_cast<std::string*>(&s.key_file_pass));
  bool cert_ok = SSL_CTX_use_certificate_chain_file(ctx, s.cert_file.c_str()) == 1;
  if (!cert_ok) return fail("tls-cert-file: cannot load certificate '" + s.cert_file + "'");
  bool key_ok = SSL_CTX_use_PrivateKey_file(ctx, s.key_file.c_str(), SSL_FILETYPE_PEM) == 1;
  // The passphrase is needed only while the key is read: keep no pointer
  // to a Config that will go away.
  SSL_CTX_set_default_passwd_cb_userdata(ctx, nullptr);
  if (!key_ok) {
    return fail("tls-key-file: cannot load private key '" + s.key_file + "'" +
                (s.key_file_pass.empty() ? "" : " (with tls-key-file-pass)"));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return fail("tls-key-file: '" + s.key_file + "' does not match tls-cert-file '" + s.cert_file +
                "'");
  }

  if (!s.ca_cert_file.empty() || !s.ca_cert_dir.empty()) {
    const char* file = s.ca_cert_file.empty() ? nullptr : s.ca_cert_file.c_str();
    const char* dir = s.ca_cert_dir.empty() ? nullptr : s.ca_cert_dir.c_str();
    if (SSL_CTX_load_verify_locations(ctx, file, dir) != 1) {
      return fail("tls-ca-cert-file/tls-ca-cert-dir: cannot load CA certificates from '" +
                  (file ? s.ca_cert_file : s.ca_cert_dir) + "'");
    }
    // Tells clients which CAs we accept, so one with several certificates
    // picks the right one.
    if (file != nullptr) {
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(file)) {
        SSL_CTX_set_client_CA_list(ctx, names);
      }
      ERR_clear_error();
    }
  }
  int verify = SSL_VERIFY_NONE;
  if (s.auth_clients == "yes") verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  if (s.auth_clients == "optional") verify = SSL_VERIFY_PEER;
  SSL_CTX_set_verify(ctx, verify, nullptr);
  return ctx;
}

}  // namespace redhub::worker
