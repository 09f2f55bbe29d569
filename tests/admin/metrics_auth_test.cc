// MetricsGuard and its parts without a process: what each Authorization
// header gets, how secret files are read, which settings are refused.
#include "metrics_auth.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace redhub::admin {
namespace {

using Result = MetricsGuard::Result;

// A directory of secret files, removed at the end.
class SecretDir {
 public:
  SecretDir() {
    char path[] = "/tmp/metrics_auth_test_XXXXXX";
    if (mkdtemp(path) != nullptr) path_ = path;
  }
  ~SecretDir() {
    for (const std::string& f : files_) unlink(f.c_str());
    if (!path_.empty()) rmdir(path_.c_str());
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::binary) << text;
    files_.push_back(file);
    return file;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

// base64 of "prom:s3cret pass" and others, as `printf %s ... | base64` gives.
constexpr const char* kPromRight = "cHJvbTpzM2NyZXQgcGFzcw==";  // prom:s3cret pass
constexpr const char* kPromWrong = "cHJvbTpzM2NyZXQ=";          // prom:s3cret
constexpr const char* kOtherUser = "YWRtaW46czNjcmV0IHBhc3M=";  // admin:s3cret pass

TEST(MetricsAuthTest, DecodesBase64) {
  std::string out;
  ASSERT_TRUE(DecodeBase64(kPromRight, &out));
  EXPECT_EQ(out, "prom:s3cret pass");
  ASSERT_TRUE(DecodeBase64("YQ==", &out));
  EXPECT_EQ(out, "a");
  ASSERT_TRUE(DecodeBase64("YWI=", &out));
  EXPECT_EQ(out, "ab");
  ASSERT_TRUE(DecodeBase64("", &out));
  EXPECT_EQ(out, "");
  EXPECT_FALSE(DecodeBase64("YQ", &out));        // unpadded
  EXPECT_FALSE(DecodeBase64("Y===", &out));      // padding too early
  EXPECT_FALSE(DecodeBase64("YQ==YQ==", &out));  // data after padding
  EXPECT_FALSE(DecodeBase64("YQ!=", &out));
}

TEST(MetricsAuthTest, SecretFilesLoseOneTrailingNewlineOnly) {
  SecretDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::string secret, error;
  ASSERT_TRUE(ReadSecretFile(dir.Write("a", "pass word\n"), &secret, &error)) << error;
  EXPECT_EQ(secret, "pass word");
  ASSERT_TRUE(ReadSecretFile(dir.Write("b", "crlf\r\n"), &secret, &error)) << error;
  EXPECT_EQ(secret, "crlf");
  ASSERT_TRUE(ReadSecretFile(dir.Write("c", " spaces kept "), &secret, &error)) << error;
  EXPECT_EQ(secret, " spaces kept ");
  EXPECT_FALSE(ReadSecretFile(dir.Write("d", "\n"), &secret, &error));
  EXPECT_NE(error.find("is empty"), std::string::npos) << error;
  EXPECT_FALSE(ReadSecretFile(dir.Write("e", "one\ntwo\n"), &secret, &error));
  EXPECT_NE(error.find("more than one line"), std::string::npos) << error;
  EXPECT_FALSE(ReadSecretFile(dir.Write("f", std::string(5000, 'x')), &secret, &error));
  EXPECT_FALSE(ReadSecretFile(dir.path() + "/missing", &secret, &error));
  EXPECT_NE(error.find("No such file"), std::string::npos) << error;
  EXPECT_FALSE(ReadSecretFile(dir.path(), &secret, &error));  // a directory
}

TEST(MetricsAuthTest, BasicAuthentication) {
  SecretDir dir;
  std::string error;
  auto guard = MetricsGuard::Load({"prom", dir.Write("pw", "s3cret pass\n"), ""}, &error);
  ASSERT_NE(guard, nullptr) << error;
  EXPECT_TRUE(guard->enabled());
  EXPECT_EQ(guard->Check(nullptr), Result::kMissing);
  EXPECT_EQ(guard->Check(""), Result::kMissing);
  EXPECT_EQ(guard->Check((std::string("Basic ") + kPromRight).c_str()), Result::kAllowed);
  EXPECT_EQ(guard->Check((std::string("basic  ") + kPromRight).c_str()), Result::kAllowed);
  EXPECT_EQ(guard->Check((std::string("Basic ") + kPromWrong).c_str()), Result::kInvalid);
  EXPECT_EQ(guard->Check((std::string("Basic ") + kOtherUser).c_str()), Result::kInvalid);
  EXPECT_EQ(guard->Check("Basic not-base64"), Result::kInvalid);
  EXPECT_EQ(guard->Check("Basic"), Result::kInvalid);
  // A bearer token is not configured: whatever it holds is refused.
  EXPECT_EQ(guard->Check("Bearer s3cret pass"), Result::kInvalid);
  ASSERT_EQ(guard->Challenges().size(), 1u);
  EXPECT_EQ(guard->Challenges()[0], "Basic realm=\"redhubd\", charset=\"UTF-8\"");
}

TEST(MetricsAuthTest, BearerTokenAndBothSchemes) {
  SecretDir dir;
  std::string error;
  auto token_only = MetricsGuard::Load({"", "", dir.Write("tok", "t0ken-abc\n")}, &error);
  ASSERT_NE(token_only, nullptr) << error;
  EXPECT_EQ(token_only->Check("Bearer t0ken-abc"), Result::kAllowed);
  EXPECT_EQ(token_only->Check("bearer t0ken-abc"), Result::kAllowed);
  EXPECT_EQ(token_only->Check("Bearer t0ken-ab"), Result::kInvalid);
  EXPECT_EQ(token_only->Check("Bearer t0ken-abcd"), Result::kInvalid);
  EXPECT_EQ(token_only->Check((std::string("Basic ") + kPromRight).c_str()), Result::kInvalid);
  EXPECT_EQ(token_only->Check(nullptr), Result::kMissing);
  ASSERT_EQ(token_only->Challenges().size(), 1u);
  EXPECT_EQ(token_only->Challenges()[0], "Bearer realm=\"redhubd\"");

  auto both = MetricsGuard::Load(
      {"prom", dir.Write("pw", "s3cret pass"), dir.Write("tok2", "t0ken-abc")}, &error);
  ASSERT_NE(both, nullptr) << error;
  EXPECT_EQ(both->Check("Bearer t0ken-abc"), Result::kAllowed);
  EXPECT_EQ(both->Check((std::string("Basic ") + kPromRight).c_str()), Result::kAllowed);
  EXPECT_EQ(both->Check("Bearer s3cret pass"), Result::kInvalid);
  EXPECT_EQ(both->Challenges().size(), 2u);
}

TEST(MetricsAuthTest, NoSettingAdmitsEveryone) {
  std::string error;
  auto open = MetricsGuard::Load({}, &error);
  ASSERT_NE(open, nullptr) << error;
  EXPECT_FALSE(open->enabled());
  EXPECT_EQ(open->Check(nullptr), Result::kAllowed);
  EXPECT_TRUE(open->Challenges().empty());
}

TEST(MetricsAuthTest, RefusedSettingsNameTheSetting) {
  SecretDir dir;
  std::string error;
  EXPECT_EQ(MetricsGuard::Load({"prom", "", ""}, &error), nullptr);
  EXPECT_EQ(error, "admin-auth-user needs admin-auth-password-file");
  EXPECT_EQ(MetricsGuard::Load({"", dir.Write("pw", "x"), ""}, &error), nullptr);
  EXPECT_EQ(error, "admin-auth-password-file needs admin-auth-user");
  EXPECT_EQ(MetricsGuard::Load({"a:b", dir.Write("pw2", "x"), ""}, &error), nullptr);
  EXPECT_EQ(error, "admin-auth-user must not contain ':'");
  EXPECT_EQ(MetricsGuard::Load({"prom", dir.path() + "/missing", ""}, &error), nullptr);
  EXPECT_EQ(error.rfind("admin-auth-password-file: open(" + dir.path() + "/missing)", 0), 0u)
      << error;
  EXPECT_EQ(MetricsGuard::Load({"", "", dir.Write("empty", "")}, &error), nullptr);
  EXPECT_EQ(error.rfind("admin-auth-token-file: ", 0), 0u) << error;
}

}  // namespace
}  // namespace redhub::admin
