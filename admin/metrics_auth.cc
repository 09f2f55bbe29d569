#include "metrics_auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "syserr.h"

namespace redhub::admin {
namespace {

constexpr size_t kMaxSecret = 4096;

// "Basic" or "Bearer" followed by spaces and the credentials; the scheme
// is case-insensitive (RFC 7235 section 2.1).
bool SplitScheme(std::string_view header, std::string_view scheme, std::string_view* rest) {
  if (header.size() <= scheme.size() ||
      strncasecmp(header.data(), scheme.data(), scheme.size()) != 0 ||
      header[scheme.size()] != ' ') {
    return false;
  }
  header.remove_prefix(scheme.size());
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  while (!header.empty() && header.back() == ' ') header.remove_suffix(1);
  *rest = header;
  return true;
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

bool DecodeBase64(std::string_view text, std::string* out) {
  out->clear();
  if (text.size() % 4 != 0) return false;
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      char c = text[i + k];
      if (c == '=' && last && k >= 2) {
        pad++;
        v[k] = 0;
        continue;
      }
      if (pad > 0) return false;  // data after padding
      v[k] = Base64Value(c);
      if (v[k] < 0) return false;
    }
    const uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out->push_back(static_cast<char>(n >> 16));
    if (pad < 2) out->push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(n & 0xff));
  }
  return true;
}

bool ReadSecretFile(const std::string& path, std::string* secret, std::string* error) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = SysError("open(" + path + ")", errno);
    return false;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    *error = path + " is not a regular file";
    return false;
  }
  std::string text;
  char buf[1024];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0 && text.size() <= kMaxSecret) {
    text.append(buf, static_cast<size_t>(n));
  }
  const int read_errno = errno;
  close(fd);
  if (n < 0) {
    *error = SysError("read(" + path + ")", read_errno);
    return false;
  }
  if (text.ends_with("\r\n")) {
    text.resize(text.size() - 2);
  } else if (text.ends_with('\n')) {
    text.pop_back();
  }
  if (text.empty()) {
    *error = path + " is empty";
    return false;
  }
  if (text.size() > kMaxSecret) {
    *error = path + " holds more than 4 KB: not a password or token";
    return false;
  }
  // A second line would be part of the secret, which no client can send in
  // one header: more likely a file of another kind.
  if (text.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
    *error = path + " holds more than one line";
    return false;
  }
  *secret = std::move(text);
  return true;
}

std::unique_ptr<MetricsGuard> MetricsGuard::Load(const MetricsAuthFiles& files,
                                                 std::string* error) {
  auto guard = std::unique_ptr<MetricsGuard>(new MetricsGuard());
  if (files.user.empty() != files.password_file.empty()) {
    *error = files.user.empty() ? "admin-auth-password-file needs admin-auth-user"
                                : "admin-auth-user needs admin-auth-password-file";
    return nullptr;
  }
  if (!files.user.empty()) {
    // The header carries base64("user:password"), and a colon ends the user.
    if (files.user.find(':') != std::string::npos) {
      *error = "admin-auth-user must not contain ':'";
      return nullptr;
    }
    std::string password;
    if (!ReadSecretFile(files.password_file, &password, error)) {
      *error = "admin-auth-password-file: " + *error;
      return nullptr;
    }
    guard->basic_ = true;
    guard->basic_digest_ = Sha256(files.user + ":" + password);
  }
  if (!files.token_file.empty()) {
    std::string token;
    if (!ReadSecretFile(files.token_file, &token, error)) {
      *error = "admin-auth-token-file: " + *error;
      return nullptr;
    }
    guard->bearer_ = true;
    guard->token_digest_ = Sha256(token);
  }
  return guard;
}

MetricsGuard::Result MetricsGuard::Check(const char* authorization) const {
  if (!enabled()) return Result::kAllowed;
  if (authorization == nullptr || *authorization == '\0') return Result::kMissing;
  const std::string_view header = authorization;
  std::string_view credentials;
  if (basic_ && SplitScheme(header, "Basic", &credentials)) {
    std::string decoded;
    if (!DecodeBase64(credentials, &decoded)) return Result::kInvalid;
    return Same(Sha256(decoded), basic_digest_) ? Result::kAllowed : Result::kInvalid;
  }
  if (bearer_ && SplitScheme(header, "Bearer", &credentials)) {
    return Same(Sha256(credentials), token_digest_) ? Result::kAllowed : Result::kInvalid;
  }
  return Result::kInvalid;
}

std::vector<std::string> MetricsGuard::Challenges() const {
  std::vector<std::string> out;
  if (basic_) out.emplace_back("Basic realm=\"redhubd\", charset=\"UTF-8\"");
  if (bearer_) out.emplace_back("Bearer realm=\"redhubd\"");
  return out;
}

MetricsGuard::Digest MetricsGuard::Sha256(std::string_view data) {
  Digest d{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

// Digests of equal length, compared in constant time: neither the length
// nor the first differing byte of what the client sent shows in the timing.
bool MetricsGuard::Same(const Digest& a, const Digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace redhub::admin
