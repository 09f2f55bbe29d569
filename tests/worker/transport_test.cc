// Transport (worker/transport.h) over a socketpair, without an event loop:
// the plaintext mapping of recv/send results, and the TLS session stepped by
// hand against an OpenSSL client on the other end, so that each kIo* answer,
// HasPending and the deferred close can be seen exactly. Also the checks of
// MakeTlsContext.
#include "transport.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "tls_context.h"

namespace redhub::worker {
namespace {

struct Pair {
  int server = -1, client = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    server = fds[0];
    client = fds[1];
  }
  ~Pair() {
    if (server >= 0) close(server);
    if (client >= 0) close(client);
  }
};

TEST(TransportTest, PlaintextMapsRecvAndSend) {
  Pair p;
  Transport t;
  EXPECT_FALSE(t.tls());
  char buf[64];
  EXPECT_EQ(t.Read(p.server, buf, sizeof(buf)), kIoWantRead);
  ASSERT_EQ(write(p.client, "abc", 3), 3);
  EXPECT_EQ(t.Read(p.server, buf, sizeof(buf)), 3);
  EXPECT_EQ(std::string(buf, 3), "abc");
  // Until the socket is full, then "wait until writable".
  std::string chunk(65536, 'x');
  ssize_t n;
  while ((n = t.Write(p.server, chunk.data(), chunk.size())) > 0) {
  }
  EXPECT_EQ(n, kIoWantWrite);
  // The peer's close: the end of the stream, then EPIPE (without SIGPIPE).
  Pair q;
  close(q.client);
  q.client = -1;
  EXPECT_EQ(t.Read(q.server, buf, sizeof(buf)), kIoClosed);
  EXPECT_EQ(t.Write(q.server, "x", 1), kIoError);
}

// A self-signed certificate and its key, written to files for
// MakeTlsContext.
class TlsTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/redhub-transport-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    EVP_PKEY* key = EVP_EC_gen("P-256");
    ASSERT_NE(key, nullptr);
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("test"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    ASSERT_GT(X509_sign(x, key, EVP_sha256()), 0);
    settings_.cert_file = dir_ + "/cert.pem";
    settings_.key_file = dir_ + "/key.pem";
    settings_.auth_clients = "no";
    FILE* f = fopen(settings_.cert_file.c_str(), "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(settings_.key_file.c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
    std::string error;
    server_ctx_ = MakeTlsContext(settings_, &error);
    ASSERT_NE(server_ctx_, nullptr) << error;
    client_ctx_ = SSL_CTX_new(TLS_client_method());
  }
  void TearDown() override {
    if (client_ != nullptr) SSL_free(client_);
    if (client_ctx_ != nullptr) SSL_CTX_free(client_ctx_);
    if (server_ctx_ != nullptr) SSL_CTX_free(server_ctx_);
    unlink(settings_.cert_file.c_str());
    unlink(settings_.key_file.c_str());
    rmdir(dir_.c_str());
  }
  // Steps both sides until the handshake is done; the server's first step
  // has nothing to read yet.
  void Handshake(Transport& server) {
    ASSERT_TRUE(server.StartTls(server_ctx_, pair_.server).empty());
    EXPECT_TRUE(server.handshaking());
    EXPECT_EQ(server.Handshake(), kIoWantRead);
    client_ = SSL_new(client_ctx_);
    SSL_set_fd(client_, pair_.client);
    bool client_done = false, server_done = false;
    for (int i = 0; i < 20 && !(client_done && server_done); i++) {
      if (!client_done) client_done = SSL_connect(client_) == 1;
      if (!server_done) {
        ssize_t r = server.Handshake();
        ASSERT_NE(r, kIoError) << server.error();
        server_done = r == 1;
      }
    }
    ASSERT_TRUE(client_done && server_done);
    EXPECT_FALSE(server.handshaking());
    EXPECT_EQ(server.Describe().rfind("TLSv1.3 ", 0), 0u) << server.Describe();
  }
  void ClientWrite(const std::string& data) {
    size_t n = 0;
    ASSERT_EQ(SSL_write_ex(client_, data.data(), data.size(), &n), 1);
    ASSERT_EQ(n, data.size());
  }

  std::string dir_;
  TlsSettings settings_;
  SSL_CTX* server_ctx_ = nullptr;
  SSL_CTX* client_ctx_ = nullptr;
  SSL* client_ = nullptr;
  Pair pair_;
};

// A read into less room than a record holds leaves the rest inside OpenSSL,
// which no readable event will announce: HasPending says so until it is
// read. A read fills the room across records.
TEST_F(TlsTransportTest, HasPendingUntilEveryDecryptedByteIsRead) {
  Transport server;
  ASSERT_NO_FATAL_FAILURE(Handshake(server));
  char buf[65536];
  EXPECT_EQ(server.Read(pair_.server, buf, sizeof(buf)), kIoWantRead);  // session tickets only
  const std::string data(20000, 'd');                                   // two records
  ClientWrite(data);
  EXPECT_EQ(server.Read(pair_.server, buf, 100), 100);
  EXPECT_TRUE(server.HasPending());
  std::string got(buf, 100);
  ssize_t n;
  while ((n = server.Read(pair_.server, buf, sizeof(buf))) > 0) got.append(buf, n);
  EXPECT_EQ(n, kIoWantRead);
  EXPECT_EQ(got, data);
  EXPECT_FALSE(server.HasPending());
}

// Data followed by close_notify: the data first, the close at the next
// Read (HasPending meanwhile), never the data lost.
TEST_F(TlsTransportTest, ACloseAfterDataIsReportedAtTheNextRead) {
  Transport server;
  ASSERT_NO_FATAL_FAILURE(Handshake(server));
  char buf[4096];
  EXPECT_EQ(server.Read(pair_.server, buf, sizeof(buf)), kIoWantRead);
  ClientWrite("PING\r\n");
  SSL_shutdown(client_);
  EXPECT_EQ(server.Read(pair_.server, buf, sizeof(buf)), 6);
  EXPECT_EQ(std::string(buf, 6), "PING\r\n");
  EXPECT_TRUE(server.HasPending());
  EXPECT_EQ(server.Read(pair_.server, buf, sizeof(buf)), kIoClosed);
  // Our close_notify in return, best effort: it does not block or fail.
  server.Shutdown();
}

TEST_F(TlsTransportTest, WritesReachTheClientAndAFullSocketWaits) {
  Transport server;
  ASSERT_NO_FATAL_FAILURE(Handshake(server));
  EXPECT_EQ(server.Write(pair_.server, "+PONG\r\n", 7), 7);
  char buf[64];
  size_t n = 0;
  ASSERT_EQ(SSL_read_ex(client_, buf, sizeof(buf), &n), 1);
  EXPECT_EQ(std::string(buf, n), "+PONG\r\n");
  const std::string chunk(65536, 'w');
  ssize_t r;
  while ((r = server.Write(pair_.server, chunk.data(), chunk.size())) > 0) {
  }
  EXPECT_EQ(r, kIoWantWrite);
}

// Plaintext bytes where a ClientHello should be: the handshake fails with
// OpenSSL's reason.
TEST_F(TlsTransportTest, APlaintextClientFailsTheHandshake) {
  Transport server;
  ASSERT_TRUE(server.StartTls(server_ctx_, pair_.server).empty());
  ASSERT_EQ(write(pair_.client, "*1\r\n$4\r\nPING\r\n", 14), 14);
  EXPECT_EQ(server.Handshake(), kIoError);
  EXPECT_NE(server.error().find("SSL_do_handshake failed: "), std::string::npos) << server.error();
  EXPECT_TRUE(server.handshaking());
  EXPECT_FALSE(server.HasPending());
}

TEST_F(TlsTransportTest, ContextChecksNameTheSetting) {
  std::string error;
  TlsSettings s = settings_;
  s.cert_file = dir_ + "/missing.pem";
  EXPECT_EQ(MakeTlsContext(s, &error), nullptr);
  EXPECT_EQ(error.rfind("tls-cert-file: cannot load certificate", 0), 0u) << error;
  s = settings_;
  s.ciphers = "NO-SUCH-CIPHER";
  EXPECT_EQ(MakeTlsContext(s, &error), nullptr);
  EXPECT_EQ(error.rfind("tls-ciphers: cannot use 'NO-SUCH-CIPHER'", 0), 0u) << error;
  s = settings_;
  s.auth_clients = "yes";
  EXPECT_NE(CheckTlsSettings(s).find("tls-ca-cert-file or tls-ca-cert-dir"), std::string::npos);
  s.auth_clients = "sometimes";
  EXPECT_NE(CheckTlsSettings(s).find("is not yes, no or optional"), std::string::npos);
  s = settings_;
  s.protocols = "tlsv1.2";  // any case, as in Redis
  EXPECT_EQ(CheckTlsSettings(s), "");
  s.protocols = "TLSv1.4";
  EXPECT_NE(CheckTlsSettings(s).find("invalid protocol 'TLSv1.4'"), std::string::npos);
}

}  // namespace
}  // namespace redhub::worker
