// TLS end to end: redhubd with --tls-port beside (or instead of) --port,
// certificates made by the openssl CLI for each test (a CA, a server
// certificate, client certificates from that CA and from another one), and
// real clients: redis-cli --tls, redis-py with ssl=True, and a small
// OpenSSL client of our own (TlsClient) where a test needs control of the
// handshake, the certificate it is shown or how fast it reads.
//
// What each test proves is in its comment. Waits poll with deadlines.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include "server_process.h"

namespace redhub::integration {
namespace {

// ---- certificates ----

// Made once per test in its own directory by the openssl CLI: EC P-256
// keys (fast), valid two days.
struct Certs {
  std::string dir;
  std::string ca, server_crt, server_key, client_crt, client_key;
  std::string other_client_crt, other_client_key;  // from a CA the server does not trust
  std::string rotated_crt, rotated_key;            // a second server certificate, same CA
  std::string encrypted_key;                       // server_key under passphrase "s3cret"
};

bool MakeCerts(const TempDir& dir, Certs* c, std::string* error) {
  const std::string script = R"(set -e
cd ")" + dir.path() + R"("
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { key "$1.key"; openssl req -x509 -new -key "$1.key" -out "$1.crt" -days 2 -subj "/CN=$1" 2>/dev/null; }
# sign NAME CA EXTENSIONS
sign() {
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -out "$1.crt" \
    -days 2 -extfile "$1.ext" 2>/dev/null
}
ca ca
ca otherca
sign server ca 'subjectAltName=IP:127.0.0.1,DNS:localhost'
sign rotated ca 'subjectAltName=IP:127.0.0.1,DNS:localhost'
sign client ca 'extendedKeyUsage=clientAuth'
sign otherclient otherca 'extendedKeyUsage=clientAuth'
openssl pkey -in server.key -aes256 -passout pass:s3cret -out server-enc.key
)";
  RunResult r = RunCommand({"bash", "-c", script}, milliseconds(30000));
  if (!r.ok()) {
    *error = "openssl CLI: " + r.Describe();
    return false;
  }
  c->dir = dir.path();
  c->ca = dir.File("ca.crt");
  c->server_crt = dir.File("server.crt");
  c->server_key = dir.File("server.key");
  c->client_crt = dir.File("client.crt");
  c->client_key = dir.File("client.key");
  c->other_client_crt = dir.File("otherclient.crt");
  c->other_client_key = dir.File("otherclient.key");
  c->rotated_crt = dir.File("rotated.crt");
  c->rotated_key = dir.File("rotated.key");
  c->encrypted_key = dir.File("server-enc.key");
  return true;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Replaces path's content at once (rename), as a certificate manager does.
void ReplaceFile(const std::string& path, const std::string& text) {
  std::string tmp = path + ".new";
  std::ofstream(tmp) << text;
  ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0) << path;
}

// The DER bytes of the first certificate of a PEM file.
std::string CertDer(const std::string& pem_path) {
  FILE* f = fopen(pem_path.c_str(), "r");
  if (f == nullptr) return "";
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  fclose(f);
  if (x == nullptr) return "";
  unsigned char* der = nullptr;
  int n = i2d_X509(x, &der);
  std::string out(reinterpret_cast<char*>(der), n > 0 ? n : 0);
  OPENSSL_free(der);
  X509_free(x);
  return out;
}

// ---- a TLS client of our own ----

struct ClientOptions {
  std::string ca;  // verify the server against it ("" skips verification)
  std::string cert, key;
  int min_version = 0, max_version = 0;  // TLS1_2_VERSION...
  int recv_buffer = 0;                   // SO_RCVBUF before connecting (a slow reader)
};

// A blocking TLS connection to 127.0.0.1 with 5 s send and receive
// timeouts: every call ends.
class TlsClient {
 public:
  ~TlsClient() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
  }

  // Null, and *error, if the TCP connection or the handshake fails. With
  // TLS 1.3 a refused client certificate is seen only at the first read.
  static std::unique_ptr<TlsClient> Connect(uint16_t port, const ClientOptions& o,
                                            std::string* error) {
    auto c = std::unique_ptr<TlsClient>(new TlsClient);
    c->ctx_ = SSL_CTX_new(TLS_client_method());
    if (!o.ca.empty()) {
      SSL_CTX_load_verify_locations(c->ctx_, o.ca.c_str(), nullptr);
      SSL_CTX_set_verify(c->ctx_, SSL_VERIFY_PEER, nullptr);
    }
    if (!o.cert.empty() &&
        (SSL_CTX_use_certificate_chain_file(c->ctx_, o.cert.c_str()) != 1 ||
         SSL_CTX_use_PrivateKey_file(c->ctx_, o.key.c_str(), SSL_FILETYPE_PEM) != 1)) {
      *error = "cannot load client certificate";
      return nullptr;
    }
    if (o.min_version) SSL_CTX_set_min_proto_version(c->ctx_, o.min_version);
    if (o.max_version) SSL_CTX_set_max_proto_version(c->ctx_, o.max_version);
    c->fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    setsockopt(c->fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (o.recv_buffer > 0) {
      setsockopt(c->fd_, SOL_SOCKET, SO_RCVBUF, &o.recv_buffer, sizeof(o.recv_buffer));
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      *error = "connect: " + std::string(strerror(errno));
      return nullptr;
    }
    c->ssl_ = SSL_new(c->ctx_);
    SSL_set_fd(c->ssl_, c->fd_);
    ERR_clear_error();
    if (SSL_connect(c->ssl_) != 1) {
      char text[256] = "";
      ERR_error_string_n(ERR_get_error(), text, sizeof(text));
      *error = std::string("SSL_connect: ") + text;
      return nullptr;
    }
    return c;
  }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      size_t n = 0;
      if (SSL_write_ex(ssl_, data.data(), data.size(), &n) != 1) return false;
      data.remove_prefix(n);
    }
    return true;
  }
  // One reply; null on EOF, an error or the 5 s timeout.
  Reply Read() {
    while (true) {
      if (Reply r = reader_.Next()) return r;
      if (reader_.error()) return nullptr;
      char buf[16384];
      size_t n = 0;
      if (int ret = SSL_read_ex(ssl_, buf, sizeof(buf), &n); ret != 1) {
        closed_cleanly_ = SSL_get_error(ssl_, ret) == SSL_ERROR_ZERO_RETURN;
        return nullptr;
      }
      reader_.Feed(std::string_view(buf, n));
    }
  }
  Reply Command(const std::vector<std::string>& argv) {
    if (!Send(FormatCommand(argv))) return nullptr;
    return Read();
  }
  // Reads (and drops) up to max bytes; returns how many came before EOF,
  // an error or the timeout.
  size_t Drain(size_t max) {
    size_t total = 0;
    char buf[65536];
    while (total < max) {
      size_t n = 0;
      if (SSL_read_ex(ssl_, buf, sizeof(buf), &n) != 1) break;
      total += n;
    }
    return total;
  }
  // The server's certificate, DER.
  std::string PeerCertDer() const {
    X509* x = SSL_get1_peer_certificate(ssl_);
    if (x == nullptr) return "";
    unsigned char* der = nullptr;
    int n = i2d_X509(x, &der);
    std::string out(reinterpret_cast<char*>(der), n > 0 ? n : 0);
    OPENSSL_free(der);
    X509_free(x);
    return out;
  }
  std::string Version() const { return SSL_get_version(ssl_); }
  // The last Read ended with the server's close_notify (not a bare EOF).
  bool closed_cleanly() const { return closed_cleanly_; }
  // TLS 1.3: new keys, and asks the server for new keys too (it answers
  // with a KeyUpdate of its own); sent with the next write.
  bool RequestKeyUpdate() { return SSL_key_update(ssl_, SSL_KEY_UPDATE_REQUESTED) == 1; }
  int fd() const { return fd_; }
  // TCP_CORK: what is written meanwhile leaves in one segment at uncork.
  void Cork(bool on) {
    int v = on ? 1 : 0;
    setsockopt(fd_, IPPROTO_TCP, TCP_CORK, &v, sizeof(v));
  }

 private:
  TlsClient() = default;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool closed_cleanly_ = false;
  ReplyReader reader_;
};

// The pid in CLIENT INFO ("... worker=0 pid=123 ...").
pid_t ServingPid(const redisReply* r) {
  if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) return -1;
  std::string_view s(r->str, r->len);
  size_t at = s.find(" pid=");
  return at == std::string_view::npos ? -1 : atoi(std::string(s.substr(at + 5)).c_str());
}

// Sockets listening on 127.0.0.1:port, of any process (/proc/net/tcp).
int ListeningSockets(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  char want[16];
  snprintf(want, sizeof(want), "0100007F:%04X", port);
  int n = 0;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string slot, local, remote, state;
    f >> slot >> local >> remote >> state;
    n += local == want && state == "0A";
  }
  return n;
}

// ---- the fixture ----

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    std::string error;
    ASSERT_TRUE(MakeCerts(dir_, &certs_, &error)) << error;
    tls_port_ = PickFreePort();
    ASSERT_NE(tls_port_, 0);
  }

  // The TLS flags for this test's certificates, then extra.
  std::vector<std::string> TlsArgs(std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {
        "--tls-port",     std::to_string(tls_port_), "--tls-cert-file",    certs_.server_crt,
        "--tls-key-file", certs_.server_key,         "--tls-ca-cert-file", certs_.ca};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  std::unique_ptr<ServerProcess> Start(std::vector<std::string> extra = {}) {
    return StartRedhubd(TlsArgs(std::move(extra)));
  }
  ClientOptions WithCert() const { return {certs_.ca, certs_.client_crt, certs_.client_key}; }
  ClientOptions WithoutCert() const { return {certs_.ca, "", ""}; }
  std::unique_ptr<TlsClient> Connect(const ClientOptions& o, std::string* error = nullptr) {
    std::string ignored;
    return TlsClient::Connect(tls_port_, o, error != nullptr ? error : &ignored);
  }
  // redis-cli over TLS with the CA and, if with_cert, the client certificate.
  RunResult Cli(const std::vector<std::string>& command, bool with_cert = true) {
    std::vector<std::string> argv = {
        REDIS_CLI_PATH, "-h",       "127.0.0.1", "-p", std::to_string(tls_port_),
        "--tls",        "--cacert", certs_.ca};
    if (with_cert)
      argv.insert(argv.end(), {"--cert", certs_.client_crt, "--key", certs_.client_key});
    argv.insert(argv.end(), command.begin(), command.end());
    return RunCommand(argv, kTimeout);
  }
  // INFO figures summed over the workers, asked over the plaintext port.
  std::optional<int64_t> Info(ServerProcess& server, std::string_view section,
                              std::string_view field) {
    Context c = ConnectHiredis(server.port());
    if (c == nullptr) return std::nullopt;
    return InfoInt(c.get(), section, field);
  }

  TempDir dir_;
  Certs certs_;
  uint16_t tls_port_ = 0;
};

// redis-cli --tls (CA and client certificate) writes and reads through the
// TLS port, the plaintext port beside it sees the same keys, and INFO
// counts the TLS client while it is connected (tls_connected_clients).
TEST_F(TlsTest, RedisCliOverTlsBesidePlaintext) {
  ASSERT_FALSE(std::string(REDIS_CLI_PATH).empty())
      << "redis-cli not found (deploy/install-deps.sh)";
  auto server = Start({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  RunResult set = Cli({"SET", "tls:key", "over tls"});
  ASSERT_TRUE(set.ok()) << set.Describe();
  EXPECT_EQ(set.out, "OK\n");
  Context plain = ConnectHiredis(server->port());
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(DescribeReply(Command(plain.get(), {"GET", "tls:key"}).get()), "$8 over tls");
  ASSERT_EQ(DescribeReply(Command(plain.get(), {"SET", "plain:key", "plain"}).get()), "+OK");
  RunResult get = Cli({"GET", "plain:key"});
  ASSERT_TRUE(get.ok()) << get.Describe();
  EXPECT_EQ(get.out, "plain\n");
  // Without --tls, redis-cli gets nothing from the TLS port.
  RunResult plaintext = RunCommand(
      {REDIS_CLI_PATH, "-h", "127.0.0.1", "-p", std::to_string(tls_port_), "PING"}, kTimeout);
  EXPECT_EQ(plaintext.out.find("PONG"), std::string::npos) << plaintext.Describe();

  auto client = Connect(WithCert());
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(DescribeReply(client->Command({"PING"}).get()), "+PONG");
  EXPECT_TRUE(WaitUntil([&] { return Info(*server, "clients", "tls_connected_clients") == 1; }));
  client.reset();
  EXPECT_TRUE(WaitUntil([&] { return Info(*server, "clients", "tls_connected_clients") == 0; }));
}

// redis-py with ssl=True (CA and client certificate): commands, pipelines
// of 20,000 (many TLS records per read, and replies over many records) and
// a 3 MB value each way, all intact.
TEST_F(TlsTest, RedisPyWithSsl) {
  ASSERT_FALSE(std::string(PYTHON3_PATH).empty()) << "python3 not found (deploy/install-deps.sh)";
  auto server = Start({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  const std::string script = R"(
import sys, redis
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
r = redis.Redis(host='127.0.0.1', port=port, ssl=True, ssl_ca_certs=ca, ssl_certfile=cert,
                ssl_keyfile=key, socket_timeout=10)
assert r.ping()
assert r.set('py', 'value')
assert r.get('py') == b'value'
p = r.pipeline(transaction=False)
for i in range(20000): p.set('k%d' % i, 'v%d' % i * 10)
assert all(p.execute())
p = r.pipeline(transaction=False)
for i in range(20000): p.get('k%d' % i)
got = p.execute()
assert all(got[i] == (b'v%d' % i) * 10 for i in range(20000)), 'pipeline replies'
big = b'x' * 3000000
assert r.set('big', big)
assert r.get('big') == big
print('ok')
)";
  RunResult r = RunPython(
      script, {std::to_string(tls_port_), certs_.ca, certs_.client_crt, certs_.client_key},
      milliseconds(60000));
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.out, "ok\n");
  Context plain = ConnectHiredis(server->port());
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(DescribeReply(Command(plain.get(), {"GET", "k19999"}).get()),
            "$60 v19999v19999v19999v19999v19999v19999v19999v19999v19999v19999");
}

// tls-auth-clients yes (Redis's default): no client certificate, or one from
// a CA the server does not trust, gets no reply (redis-cli fails too); the
// CA's certificate gets PONG; the refusals are counted.
TEST_F(TlsTest, AuthClientsYesRefusesClientsWithoutACertificate) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  auto without = Connect(WithoutCert());  // TLS 1.3: refused at the first read
  EXPECT_TRUE(without == nullptr || without->Command({"PING"}) == nullptr);
  ClientOptions other{certs_.ca, certs_.other_client_crt, certs_.other_client_key};
  auto stranger = Connect(other);
  EXPECT_TRUE(stranger == nullptr || stranger->Command({"PING"}) == nullptr);
  auto with = Connect(WithCert());
  ASSERT_NE(with, nullptr);
  EXPECT_EQ(DescribeReply(with->Command({"PING"}).get()), "+PONG");
  RunResult cli = Cli({"PING"}, /*with_cert=*/false);
  EXPECT_EQ(cli.out.find("PONG"), std::string::npos) << cli.Describe();
  EXPECT_TRUE(WaitUntil([&] { return Info(*server, "stats", "tls_handshake_failures") >= 2; }))
      << Info(*server, "stats", "tls_handshake_failures").value_or(-1);
}

// tls-auth-clients no: a client without a certificate is served.
TEST_F(TlsTest, AuthClientsNoServesClientsWithoutACertificate) {
  auto server = Start({"--tls-auth-clients", "no"});
  ASSERT_NE(server, nullptr);
  auto without = Connect(WithoutCert());
  ASSERT_NE(without, nullptr);
  EXPECT_EQ(DescribeReply(without->Command({"PING"}).get()), "+PONG");
  EXPECT_EQ(Info(*server, "stats", "tls_handshake_failures"), 0);
}

// tls-auth-clients optional: no certificate is fine, a good one is fine, one
// the CA did not sign is refused.
TEST_F(TlsTest, AuthClientsOptionalChecksACertificateOnlyIfSent) {
  auto server = Start({"--tls-auth-clients", "optional"});
  ASSERT_NE(server, nullptr);
  auto without = Connect(WithoutCert());
  ASSERT_NE(without, nullptr);
  EXPECT_EQ(DescribeReply(without->Command({"PING"}).get()), "+PONG");
  auto with = Connect(WithCert());
  ASSERT_NE(with, nullptr);
  EXPECT_EQ(DescribeReply(with->Command({"PING"}).get()), "+PONG");
  ClientOptions other{certs_.ca, certs_.other_client_crt, certs_.other_client_key};
  auto stranger = Connect(other);
  EXPECT_TRUE(stranger == nullptr || stranger->Command({"PING"}) == nullptr);
  EXPECT_TRUE(WaitUntil([&] { return Info(*server, "stats", "tls_handshake_failures") == 1; }));
}

// A plaintext client on the TLS port fails the handshake: closed without a
// RESP reply, counted exactly once in INFO (summed over both workers) and
// in /metrics as redhub_tls_handshake_failures_total.
TEST_F(TlsTest, HandshakeFailureIsCountedInInfoAndMetrics) {
  uint16_t admin = PickFreePort();
  ASSERT_NE(admin, 0);
  auto server = Start({"--workers", "2", "--admin-port", std::to_string(admin)});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Info(*server, "stats", "tls_handshake_failures"), 0);
  Socket s = Socket::Connect(tls_port_);
  ASSERT_TRUE(s.valid());
  ASSERT_TRUE(s.SendAll("PING\r\n"));
  std::string got;
  EXPECT_TRUE(s.WaitForClose(kTimeout, &got));
  EXPECT_EQ(got.find("PONG"), std::string::npos);
  EXPECT_TRUE(WaitUntil([&] { return Info(*server, "stats", "tls_handshake_failures") == 1; }));
  auto metric = [&]() -> double {
    Socket h = Socket::Connect(admin);
    std::string body;
    if (!h.valid() || !h.SendAll("GET /metrics HTTP/1.0\r\n\r\n") ||
        !h.WaitForClose(kTimeout, &body))
      return -1;
    static constexpr std::string_view kName = "\nredhub_tls_handshake_failures_total ";
    size_t at = body.find(kName);
    return at == std::string::npos ? -1 : strtod(body.c_str() + at + kName.size(), nullptr);
  };
  EXPECT_TRUE(WaitUntil([&] { return metric() == 1; })) << metric();
  // A good client afterwards is not a failure.
  auto client = Connect(WithCert());
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(DescribeReply(client->Command({"PING"}).get()), "+PONG");
  EXPECT_EQ(Info(*server, "stats", "tls_handshake_failures"), 1);
}

// A client that connects to the TLS port and never starts the handshake is
// closed after tls-handshake-timeout (not before, not never), and counted.
TEST_F(TlsTest, UnfinishedHandshakeIsClosedAtTheTimeout) {
  auto server = Start({"--tls-handshake-timeout", "1"});
  ASSERT_NE(server, nullptr);
  Socket s = Socket::Connect(tls_port_);
  ASSERT_TRUE(s.valid());
  Clock::time_point start = Clock::now();
  EXPECT_TRUE(s.WaitForClose(milliseconds(10000)));
  // Not before the timeout (how much later depends on the machine's load:
  // the check runs once a second).
  EXPECT_GE(std::chrono::duration<double>(Clock::now() - start).count(), 0.9);
  EXPECT_TRUE(WaitUntil([&] { return Info(*server, "stats", "tls_handshake_failures") == 1; }));
  // Only the INFO connection is left (an earlier INFO's close may still be
  // on its way to the other worker).
  EXPECT_TRUE(WaitUntil([&] { return Info(*server, "clients", "connected_clients") == 1; }));
}

// --port 0 with --tls-port: TLS only, announced as such; redis-cli works.
TEST_F(TlsTest, TlsOnlyWithPortZero) {
  ServerProcess server("redhubd");
  std::vector<std::string> args = {
      "--bind",       "127.0.0.1", "--port",     "0",
      "--admin-port", "0",         "--shm-name", "/redhub-tls-only-" + std::to_string(getpid())};
  std::vector<std::string> tls = TlsArgs();
  args.insert(args.end(), tls.begin(), tls.end());
  ASSERT_TRUE(server.Start(REDHUBD_PATH, args));
  auto ready = server.WaitForLogLine("Ready to accept connections");
  ASSERT_TRUE(ready.has_value()) << server.Log();
  EXPECT_NE(ready->find("on tls://127.0.0.1:" + std::to_string(tls_port_) + " "), std::string::npos)
      << *ready;
  auto client = Connect(WithCert());
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(DescribeReply(client->Command({"SET", "only", "tls"}).get()), "+OK");
  EXPECT_EQ(DescribeReply(client->Command({"GET", "only"}).get()), "$3 tls");
  client.reset();
  int status = server.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// tls-protocols is enforced: with "TLSv1.3" a TLS 1.2 client is refused and
// a TLS 1.3 one served; the default takes both.
TEST_F(TlsTest, ProtocolsSettingIsEnforced) {
  auto server = Start({"--tls-protocols", "TLSv1.3"});
  ASSERT_NE(server, nullptr);
  ClientOptions v12 = WithCert();
  v12.max_version = TLS1_2_VERSION;
  std::string error;
  EXPECT_EQ(Connect(v12, &error), nullptr);
  ClientOptions v13 = WithCert();
  v13.min_version = TLS1_3_VERSION;
  auto ok = Connect(v13, &error);
  ASSERT_NE(ok, nullptr) << error;
  EXPECT_EQ(ok->Version(), "TLSv1.3");
  EXPECT_EQ(DescribeReply(ok->Command({"PING"}).get()), "+PONG");

  tls_port_ = PickFreePort();
  auto both = Start();
  ASSERT_NE(both, nullptr);
  auto old = Connect(v12, &error);
  ASSERT_NE(old, nullptr) << error;
  EXPECT_EQ(old->Version(), "TLSv1.2");
  EXPECT_EQ(DescribeReply(old->Command({"PING"}).get()), "+PONG");
}

// Bad TLS settings stop the start with a message that names the problem,
// before anything listens; a passphrase-protected key loads with its
// passphrase.
TEST_F(TlsTest, BadSettingsStopTheStartWithTheReason) {
  const std::string port = std::to_string(PickFreePort());
  const std::string tls = std::to_string(tls_port_);
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--tls-port", tls, "--tls-key-file", certs_.server_key}, 2, "no tls-cert-file"},
      {{"--tls-port", tls, "--tls-cert-file", certs_.server_crt}, 2, "no tls-key-file"},
      {{"--tls-port", tls, "--tls-cert-file", certs_.server_crt, "--tls-key-file",
        certs_.server_key},
       2,
       "tls-ca-cert-file or tls-ca-cert-dir"},
      {{"--tls-port", port, "--tls-cert-file", certs_.server_crt, "--tls-key-file",
        certs_.server_key, "--tls-auth-clients", "no"},
       2,
       "--tls-port must differ from --port"},
      {{"--tls-port", tls, "--tls-cert-file", certs_.server_crt, "--tls-key-file",
        certs_.server_key, "--tls-auth-clients", "no", "--tls-protocols", "TLSv1.2 SSLv3"},
       2,
       "invalid protocol 'SSLv3'"},
      {{"--tls-port", tls, "--tls-cert-file", certs_.dir + "/missing.crt", "--tls-key-file",
        certs_.server_key, "--tls-auth-clients", "no"},
       1,
       "tls-cert-file: cannot load certificate"},
      {{"--tls-port", tls, "--tls-cert-file", certs_.server_crt, "--tls-key-file",
        certs_.rotated_key, "--tls-auth-clients", "no"},
       1,
       "key values mismatch"},
      {{"--tls-port", tls, "--tls-cert-file", certs_.server_crt, "--tls-key-file",
        certs_.encrypted_key, "--tls-auth-clients", "no", "--tls-key-file-pass", "wrong"},
       1,
       "tls-key-file: cannot load private key"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {
        REDHUBD_PATH, "--bind",     "127.0.0.1",
        "--port",     port,         "--admin-port",
        "0",          "--shm-name", "/redhub-tls-bad-" + std::to_string(getpid())};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    RunResult r = RunCommand(argv, milliseconds(10000));
    EXPECT_EQ(r.exit_code, c.exit_code) << r.Describe();
    EXPECT_NE((r.out + r.err).find(c.message), std::string::npos) << c.message << "\n"
                                                                  << r.Describe();
  }
  auto server = StartRedhubd({"--tls-port", tls, "--tls-cert-file", certs_.server_crt,
                              "--tls-key-file", certs_.encrypted_key, "--tls-key-file-pass",
                              "s3cret", "--tls-ca-cert-file", certs_.ca});
  ASSERT_NE(server, nullptr);
  auto client = Connect(WithCert());
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(DescribeReply(client->Command({"PING"}).get()), "+PONG");
}

// Rotating the certificate: new files, then SIGHUP, while 4 TLS clients
// write without pause and a fifth opens a new connection per command. No
// command fails, every acknowledged write is there afterwards, and new
// connections are shown the new certificate once the reload is done (old
// and new workers overlap, so either may be seen meanwhile). A certificate
// that does not load refuses the reload and changes nothing.
TEST_F(TlsTest, CertificateRotatedBySighupUnderLoad) {
  auto server = Start({"--workers", "2"});
  ASSERT_NE(server, nullptr);
  const std::string old_der = CertDer(certs_.server_crt);
  const std::string new_der = CertDer(certs_.rotated_crt);
  ASSERT_FALSE(old_der.empty());
  ASSERT_NE(old_der, new_der);
  {
    auto first = Connect(WithCert());
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(first->PeerCertDer(), old_der);
  }

  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> new_cert_seen{0};
  std::vector<std::atomic<uint64_t>> acked(5);
  std::vector<std::thread> load;
  for (int t = 0; t < 4; t++) {
    load.emplace_back([&, t] {
      auto c = Connect(WithCert());
      if (c == nullptr) {
        failures++;
        return;
      }
      for (uint64_t i = 0; !stop; i++) {
        std::string key = "rot:" + std::to_string(t) + ":" + std::to_string(i);
        if (DescribeReply(c->Command({"SET", key, std::to_string(i)}).get()) != "+OK") {
          failures++;
          return;
        }
        acked[t] = i + 1;
      }
    });
  }
  load.emplace_back([&] {
    for (uint64_t i = 0; !stop; i++) {
      auto c = Connect(WithCert());
      std::string key = "rot:new:" + std::to_string(i);
      if (c == nullptr || DescribeReply(c->Command({"SET", key, "x"}).get()) != "+OK") {
        failures++;
        return;
      }
      acked[4] = i + 1;
      if (c->PeerCertDer() == new_der) new_cert_seen++;
    }
  });
  auto progress = [&] {
    uint64_t n = 0;
    for (uint64_t a : acked) n += a;
    return n;
  };
  ASSERT_TRUE(WaitUntil([&] { return progress() > 200; }));

  // A broken certificate first: refused, the old one stays.
  ReplaceFile(certs_.server_crt, "not a certificate\n");
  ASSERT_TRUE(server->Signal(SIGHUP));
  EXPECT_TRUE(
      server->WaitForLogLine("Reload refused: TLS: tls-cert-file: cannot load certificate"));

  ReplaceFile(certs_.server_crt, ReadFile(certs_.rotated_crt));
  ReplaceFile(certs_.server_key, ReadFile(certs_.rotated_key));
  ASSERT_TRUE(server->Signal(SIGHUP));
  EXPECT_TRUE(server->WaitForLogLine("Reloaded: replacing workers"));
  EXPECT_TRUE(WaitUntil([&] { return new_cert_seen > 20; }, milliseconds(15000)))
      << "new connections never saw the rotated certificate";
  auto replaced = [&] {
    std::string log = server->Log();
    size_t n = 0;
    for (size_t at = log.find("ready, replacing the previous one"); at != std::string::npos;
         at = log.find("ready, replacing the previous one", at + 1)) {
      n++;
    }
    return n;
  };
  EXPECT_TRUE(WaitUntil([&] { return replaced() == 2; }, milliseconds(15000))) << server->Log();
  uint64_t at_rotation = progress();
  EXPECT_TRUE(WaitUntil([&] { return progress() > at_rotation + 200; }));
  stop = true;
  for (std::thread& t : load) t.join();
  EXPECT_EQ(failures, 0);

  // Once both slots are replaced, every new connection sees the new one.
  for (int i = 0; i < 10; i++) {
    auto c = Connect(WithCert());
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->PeerCertDer(), new_der);
  }
  Context plain = ConnectHiredis(server->port());
  ASSERT_NE(plain, nullptr);
  for (int t = 0; t < 4; t++) {
    ASSERT_GT(acked[t], 0u);
    std::string last = "rot:" + std::to_string(t) + ":" + std::to_string(acked[t] - 1);
    EXPECT_EQ(DescribeReply(Command(plain.get(), {"GET", last}).get()),
              "$" + std::to_string(std::to_string(acked[t] - 1).size()) + " " +
                  std::to_string(acked[t] - 1));
  }
  EXPECT_EQ(DescribeReply(
                Command(plain.get(), {"EXISTS", "rot:new:" + std::to_string(acked[4] - 1)}).get()),
            ":1");
}

// Reload (SIGHUP) and upgrade (SIGUSR2) with a TLS client and a plaintext
// client connected: the plaintext one moves to the new worker at once (as
// before TLS); the TLS one stays with the old worker, which keeps serving
// it (its acknowledged writes are there) while new TLS connections go to the
// new worker; when the TLS client closes, the old worker exits.
class TlsRollTest : public TlsTest, public ::testing::WithParamInterface<int> {};

TEST_P(TlsRollTest, TlsClientsStayWithTheOldWorkerUntilTheyClose) {
  auto server = Start({"--workers", "1", "--drain-timeout", "60"});
  ASSERT_NE(server, nullptr);
  auto tls = Connect(WithCert());
  ASSERT_NE(tls, nullptr);
  ASSERT_EQ(DescribeReply(tls->Command({"SET", "before", "1"}).get()), "+OK");
  const pid_t old_pid = ServingPid(tls->Command({"CLIENT", "INFO"}).get());
  ASSERT_GT(old_pid, 0);
  Socket plain = Socket::Connect(server->port());
  ASSERT_TRUE(plain.valid());
  ASSERT_EQ(ServingPid(SocketCommand(plain, {"CLIENT", "INFO"}).get()), old_pid);

  ASSERT_TRUE(server->Signal(GetParam()));
  // The plaintext connection is handed to the new worker.
  pid_t new_pid = -1;
  EXPECT_TRUE(WaitUntil(
      [&] {
        new_pid = ServingPid(SocketCommand(plain, {"CLIENT", "INFO"}).get());
        return new_pid > 0 && new_pid != old_pid;
      },
      milliseconds(15000)))
      << server->Log();
  EXPECT_TRUE(server->WaitForLogLine("1 TLS connection stays with this worker"));
  // The TLS one is still served by the old worker, which still runs.
  for (int i = 0; i < 100; i++) {
    ASSERT_EQ(DescribeReply(tls->Command({"SET", "during:" + std::to_string(i), "v"}).get()),
              "+OK");
  }
  EXPECT_EQ(ServingPid(tls->Command({"CLIENT", "INFO"}).get()), old_pid);
  EXPECT_TRUE(ProcessExists(old_pid));
  // A new TLS connection goes to the new worker.
  auto fresh = Connect(WithCert());
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(ServingPid(fresh->Command({"CLIENT", "INFO"}).get()), new_pid);
  EXPECT_EQ(DescribeReply(fresh->Command({"GET", "during:99"}).get()), "$1 v");
  EXPECT_EQ(DescribeReply(fresh->Command({"GET", "before"}).get()), "$1 1");
  // The client leaves; so does the old worker, long before the drain timeout.
  tls.reset();
  EXPECT_TRUE(WaitUntil([&] { return !ProcessExists(old_pid); }, milliseconds(5000)));
  EXPECT_EQ(DescribeReply(SocketCommand(plain, {"PING"}).get()), "+PONG");
  // The master kept its TLS listener (an upgrade passes it on): still one
  // socket, not a second one beside a leaked first.
  EXPECT_EQ(ListeningSockets(tls_port_), 1);
}

INSTANTIATE_TEST_SUITE_P(Signals, TlsRollTest, ::testing::Values(SIGHUP, SIGUSR2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == SIGHUP ? "Reload" : "Upgrade");
                         });

// An upgrade whose new image could not load the certificate is refused
// before execve (there would be no way back): the daemon goes on serving
// TLS with the running workers, and upgrades once the files are good.
TEST_F(TlsTest, UpgradeWithACertificateThatDoesNotLoadIsRefused) {
  auto server = Start({"--workers", "1"});
  ASSERT_NE(server, nullptr);
  const std::string good = ReadFile(certs_.server_crt);
  ReplaceFile(certs_.server_crt, "not a certificate\n");
  ASSERT_TRUE(server->Signal(SIGUSR2));
  EXPECT_TRUE(server->WaitForLogLine("Upgrade refused: tls-cert-file: cannot load certificate"));
  auto client = Connect(WithCert());
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(DescribeReply(client->Command({"PING"}).get()), "+PONG");
  ReplaceFile(certs_.server_crt, good);
  ASSERT_TRUE(server->Signal(SIGUSR2));
  EXPECT_TRUE(server->WaitForLogLine("Upgraded in place"));
  EXPECT_TRUE(server->WaitForLogLine("ready, replacing the previous one"));
  auto after = Connect(WithCert());
  ASSERT_NE(after, nullptr);
  EXPECT_EQ(DescribeReply(after->Command({"PING"}).get()), "+PONG");
}

// A TLS client that stays connected through a reload is closed by the old
// worker at the drain timeout, at a request boundary: its last acknowledged
// write is kept, and the old worker exits.
TEST_F(TlsTest, DrainTimeoutClosesTlsClientsThatStay) {
  auto server = Start({"--workers", "1", "--drain-timeout", "1"});
  ASSERT_NE(server, nullptr);
  auto tls = Connect(WithCert());
  ASSERT_NE(tls, nullptr);
  const pid_t old_pid = ServingPid(tls->Command({"CLIENT", "INFO"}).get());
  ASSERT_GT(old_pid, 0);
  ASSERT_TRUE(server->Signal(SIGHUP));
  ASSERT_TRUE(server->WaitForLogLine("1 TLS connection stays with this worker"));
  ASSERT_EQ(DescribeReply(tls->Command({"SET", "last", "kept"}).get()), "+OK");
  // The close: a read ends (close_notify or EOF) within the drain timeout
  // and the drain that follows it.
  EXPECT_EQ(tls->Read(), nullptr);  // within its 5 s timeout, or not cleanly
  EXPECT_TRUE(tls->closed_cleanly()) << "no close_notify before the close";
  EXPECT_TRUE(WaitUntil([&] { return !ProcessExists(old_pid); }));
  Context plain = ConnectHiredis(server->port());
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(DescribeReply(Command(plain.get(), {"GET", "last"}).get()), "$4 kept");
}

// maxclients counts TLS clients as plaintext ones (a handshake in
// progress included); one over it is closed before the handshake (no
// plaintext error it could read, as in Redis) and counted as rejected; a
// place freed is taken again. The idle timeout closes an idle TLS client,
// with close_notify, and counts it.
TEST_F(TlsTest, MaxclientsAndTheIdleTimeoutApplyToTlsClients) {
  auto server = Start({"--workers", "1", "--maxclients", "2"});
  ASSERT_NE(server, nullptr);
  auto a = Connect(WithCert());
  auto b = Connect(WithCert());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(DescribeReply(b->Command({"PING"}).get()), "+PONG");
  auto c = Connect(WithCert());
  EXPECT_TRUE(c == nullptr || c->Command({"PING"}) == nullptr) << "a third client was served";
  c.reset();
  a.reset();
  std::unique_ptr<TlsClient> d;
  EXPECT_TRUE(WaitUntil([&] {
    d = Connect(WithCert());
    return d != nullptr && DescribeReply(d->Command({"PING"}).get()) == "+PONG";
  }));
  d.reset();
  b.reset();
  EXPECT_TRUE(WaitUntil([&] { return Info(*server, "stats", "rejected_connections") >= 1; }));

  tls_port_ = PickFreePort();
  auto idle = Start({"--workers", "1", "--timeout", "1"});
  ASSERT_NE(idle, nullptr);
  auto e = Connect(WithCert());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(DescribeReply(e->Command({"PING"}).get()), "+PONG");
  EXPECT_EQ(e->Read(), nullptr);  // closed within the 5 s read timeout
  EXPECT_TRUE(e->closed_cleanly());
  EXPECT_TRUE(WaitUntil([&] { return Info(*idle, "stats", "idle_timeout_disconnections") == 1; }));
}

// Bytes OpenSSL has taken from the socket but not yet given to the server
// are served without waiting for a readable event that never comes. With
// --read-buffer 512 a connection's empty input buffer has 16 KB of room.
// 16,478 bytes of PINGs written at once (corked: one TCP segment) are two
// TLS records, 16 KB and 94 bytes; OpenSSL's read-ahead takes both from the
// socket, the first alone fills the room, and the second waits inside
// OpenSSL with the socket empty: without the pending list its 7 PINGs
// would never be answered. Big values across many records, and a TLS 1.3
// key update in both directions, go through too.
TEST_F(TlsTest, BytesBufferedInsideOpenSslAreServedWithoutANewEvent) {
  auto server = Start({"--read-buffer", "512", "--workers", "1"});
  ASSERT_NE(server, nullptr);
  const std::string ping = FormatCommand({"PING"});
  std::string pings;
  while (pings.size() + ping.size() <= 16384 + 100) pings += ping;
  const size_t count = pings.size() / ping.size();
  for (int round = 0; round < 10; round++) {
    auto c = Connect(WithCert());
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(DescribeReply(c->Command({"PING"}).get()), "+PONG");
    c->Cork(true);
    ASSERT_TRUE(c->Send(pings));
    c->Cork(false);
    for (size_t i = 0; i < count; i++) {
      ASSERT_EQ(DescribeReply(c->Read().get()), "+PONG") << "round " << round << " reply " << i;
    }
  }
  auto c = Connect(WithCert());
  ASSERT_NE(c, nullptr);
  const std::string value(200000, 'p');
  for (int round = 0; round < 5; round++) {
    std::string batch = FormatCommand({"SET", "pending", value});
    for (int i = 0; i < 20; i++) batch += FormatCommand({"GET", "pending"});
    ASSERT_TRUE(c->Send(batch));
    ASSERT_EQ(DescribeReply(c->Read().get()), "+OK") << "round " << round;
    for (int i = 0; i < 20; i++) {
      Reply r = c->Read();
      ASSERT_NE(r, nullptr) << "round " << round << " reply " << i;
      ASSERT_EQ(r->len, value.size());
    }
  }
  ASSERT_EQ(c->Version(), "TLSv1.3");
  ASSERT_TRUE(c->RequestKeyUpdate());
  EXPECT_EQ(DescribeReply(c->Command({"PING"}).get()), "+PONG");
  EXPECT_EQ(DescribeReply(c->Command({"GET", "missing"}).get()), "(nil)");
}

// A TLS 1.3 key update asked by a client whose unread 16 MB reply fills the
// server's socket (under the soft limit, so the server goes on reading):
// the server takes the client's new keys while its own write waits, answers
// with new keys of its own when it next writes, and every reply comes;
// nothing closes. (A read that must write first, which the loop maps to the
// write watcher, is what TLS 1.2 renegotiation would cause; it is switched
// off, SSL_OP_NO_RENEGOTIATION, and OpenSSL sends a key update's answer
// with the next write, so no test can reach that path.)
TEST_F(TlsTest, KeyUpdateWhileTheServersSocketIsFull) {
  auto server = Start({"--workers", "1", "--output-buffer-soft-limit", "64mb"});
  ASSERT_NE(server, nullptr);
  Context plain = ConnectHiredis(server->port());
  ASSERT_NE(plain, nullptr);
  const std::string value(16 << 20, 'k');
  ASSERT_EQ(DescribeReply(Command(plain.get(), {"SET", "big", value}).get()), "+OK");
  ClientOptions slow = WithCert();
  slow.recv_buffer = 4096;
  for (int round = 0; round < 5; round++) {
    auto c = Connect(slow);
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->Send(FormatCommand({"GET", "big"})));
    // The reply backs up in the server's socket.
    ASSERT_TRUE(WaitUntil(
        [&] { return Info(*server, "clients", "client_buffers_bytes").value_or(0) > (4 << 20); }));
    ASSERT_TRUE(c->RequestKeyUpdate());
    ASSERT_TRUE(c->Send(FormatCommand({"PING"})));
    Reply r = c->Read();
    ASSERT_NE(r, nullptr) << "round " << round;
    EXPECT_EQ(r->len, value.size());
    EXPECT_EQ(DescribeReply(c->Read().get()), "+PONG") << "round " << round;
    EXPECT_EQ(DescribeReply(c->Command({"PING"}).get()), "+PONG") << "round " << round;
  }
}

// A slow TLS reader is held to the output limits as a plaintext one is:
// under the soft limit backpressure pauses it and every reply still comes,
// in order; a batch of replies over the hard limit closes it, counted in
// client_output_buffer_limit_disconnections.
TEST_F(TlsTest, SlowTlsReaderHitsTheOutputLimit) {
  auto server = Start({"--output-buffer-soft-limit", "1mb", "--output-buffer-hard-limit", "32mb"});
  ASSERT_NE(server, nullptr);
  Context plain = ConnectHiredis(server->port());
  ASSERT_NE(plain, nullptr);
  const std::string value(1 << 20, 'v');
  ASSERT_EQ(DescribeReply(Command(plain.get(), {"SET", "big", value}).get()), "+OK");

  // 4 GETs, unread: 4 MB over the soft limit pauses reading; 20 more wait
  // in the socket meanwhile; then all 24 replies come, in order.
  ClientOptions slow = WithCert();
  slow.recv_buffer = 4096;
  auto paced = Connect(slow);
  ASSERT_NE(paced, nullptr);
  std::string four;
  for (int i = 0; i < 4; i++) four += FormatCommand({"GET", "big"});
  ASSERT_TRUE(paced->Send(four));
  EXPECT_TRUE(
      WaitUntil([&] { return Info(*server, "clients", "clients_paused_by_backpressure") == 1; }));
  std::string twenty;
  for (int i = 0; i < 20; i++) twenty += FormatCommand({"GET", "big"});
  ASSERT_TRUE(paced->Send(twenty));
  for (int i = 0; i < 24; i++) {
    Reply r = paced->Read();
    ASSERT_NE(r, nullptr) << "reply " << i;
    ASSERT_EQ(r->len, value.size());
  }
  EXPECT_EQ(DescribeReply(paced->Command({"PING"}).get()), "+PONG");
  EXPECT_EQ(Info(*server, "stats", "client_output_buffer_limit_disconnections"), 0);

  // 40 GETs in one write: one batch of 40 MB of replies, over the hard limit.
  auto greedy = Connect(slow);
  ASSERT_NE(greedy, nullptr);
  std::string batch;
  for (int i = 0; i < 40; i++) batch += FormatCommand({"GET", "big"});
  ASSERT_TRUE(greedy->Send(batch));
  EXPECT_TRUE(WaitUntil(
      [&] { return Info(*server, "stats", "client_output_buffer_limit_disconnections") == 1; }));
  EXPECT_LT(greedy->Drain(64u << 20), 40u << 20);
}

}  // namespace
}  // namespace redhub::integration
