// Who may read /metrics: HTTP basic authentication (one user and password),
// a bearer token, or both (either one admits). /healthz and /readyz are
// never guarded: an orchestrator's probes carry no credentials.
//
// The secrets come from files (a setting on the command line would show in
// ps), read once when the admin process starts. Only SHA-256 digests of the
// expected credentials are kept, and a request's credentials are compared by
// digest with CRYPTO_memcmp, so the comparison takes the same time whatever
// the client sent.
//
//   std::string error;
//   auto guard = MetricsGuard::Load({.user = "prom", .password_file = "/run/secrets/pw"}, &error);
//   switch (guard->Check(mg_get_header(conn, "Authorization"))) { ... }
//   for (const std::string& c : guard->Challenges()) ...  // WWW-Authenticate values
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace redhub::admin {

struct MetricsAuthFiles {
  std::string user;           // basic authentication: this user name...
  std::string password_file;  // ...and the password in this file
  std::string token_file;     // bearer: the token in this file
};

// A secret file's text: the whole file, less one trailing "\n" or "\r\n"
// (what `echo secret > file` and Docker or Kubernetes secrets leave). False
// with *error set if it cannot be read, is not a regular file, is empty or
// longer than 4 KB, or holds a NUL or another line break.
bool ReadSecretFile(const std::string& path, std::string* secret, std::string* error);

class MetricsGuard {
 public:
  enum class Result {
    kAllowed,
    kMissing,  // no Authorization header
    kInvalid,  // one that does not match (a wrong secret, a scheme not configured, garbage)
  };

  // Nullptr (and *error naming the setting) if the files cannot be read or
  // the settings do not fit together (a user without a password file or
  // the reverse). With no setting at all, a guard that admits everyone.
  static std::unique_ptr<MetricsGuard> Load(const MetricsAuthFiles& files, std::string* error);

  // Whether any credential is required.
  bool enabled() const { return basic_ || bearer_; }
  // authorization is the request's Authorization header, or nullptr.
  Result Check(const char* authorization) const;
  // The WWW-Authenticate values a 401 carries: one per configured scheme.
  std::vector<std::string> Challenges() const;

 private:
  using Digest = std::array<unsigned char, 32>;
  static Digest Sha256(std::string_view data);
  static bool Same(const Digest& a, const Digest& b);

  bool basic_ = false;
  bool bearer_ = false;
  Digest basic_digest_{};  // of "user:password", as the header carries it
  Digest token_digest_{};
};

// RFC 4648 base64 (padding required, as browsers, curl and Prometheus send
// it). False if text is not that.
bool DecodeBase64(std::string_view text, std::string* out);

}  // namespace redhub::admin
