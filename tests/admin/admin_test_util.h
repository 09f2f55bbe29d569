// Helpers for the admin tests: a plain blocking HTTP/1.0 GET, the exposition
// text parsed into a map, and running a tool with its output captured.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace redhub::admin::testing {

struct HttpReply {
  int status = 0;       // 0: no connection or no reply
  std::string headers;  // the header lines, each ending in "\r\n"
  std::string body;
};

// extra_headers: whole lines, each ending in "\r\n" ("Authorization: ...\r\n").
inline HttpReply HttpGet(uint16_t port, const std::string& path,
                         const std::string& extra_headers = "") {
  HttpReply reply;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return reply;
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return reply;
  }
  const std::string request =
      "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n" + extra_headers + "\r\n";
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return reply;
  }
  std::string raw;
  char buf[16384];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  // "HTTP/1.x NNN reason\r\n...headers...\r\n\r\nbody"
  size_t space = raw.find(' ');
  size_t end = raw.find("\r\n\r\n");
  if (raw.compare(0, 5, "HTTP/") != 0 || space == std::string::npos || end == std::string::npos) {
    return reply;
  }
  reply.status = atoi(raw.c_str() + space + 1);
  const size_t first_line_end = raw.find("\r\n");
  reply.headers = raw.substr(first_line_end + 2, end + 2 - (first_line_end + 2));
  reply.body = raw.substr(end + 4);
  return reply;
}

// A port that was free a moment ago (the admin process cannot report the
// port it bound, so the caller retries on another if this one is taken).
inline uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// Samples by a canonical key: the name, then the labels sorted by name as
// {a=x,b=y} without quotes; `le` bounds re-printed with %g ("1e-05"), so
// that a test does not depend on how the library prints doubles.
inline std::map<std::string, double> ParseSamples(const std::string& text) {
  std::map<std::string, double> samples;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#') continue;
    size_t brace = line.find('{');
    size_t value_at = line.rfind(' ');
    std::string name = line.substr(0, std::min(brace, line.find(' ')));
    std::map<std::string, std::string> labels;
    if (brace != std::string::npos) {
      size_t i = brace + 1;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        size_t close_quote = line.find('"', eq + 2);
        std::string key = line.substr(i, eq - i);
        std::string value = line.substr(eq + 2, close_quote - eq - 2);
        if (key == "le" && value != "+Inf") {
          char num[64];
          snprintf(num, sizeof(num), "%g", strtod(value.c_str(), nullptr));
          value = num;
        }
        labels[key] = value;
        i = close_quote + 1;
        if (i < line.size() && line[i] == ',') i++;
      }
    }
    std::string key = name;
    if (!labels.empty()) {
      key += '{';
      const char* sep = "";
      for (const auto& [k, v] : labels) {
        key += sep + k + "=" + v;
        sep = ",";
      }
      key += '}';
    }
    samples[key] = strtod(line.c_str() + value_at + 1, nullptr);
  }
  return samples;
}

struct CommandResult {
  int exit_code = -1;  // -1: did not run or did not exit normally
  std::string output;  // stdout and stderr
};

// Runs argv (no shell) in `dir`, with `input` on its stdin.
inline CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& dir,
                                const std::string& input = "") {
  CommandResult result;
  char in_path[] = "/tmp/admin_test_in_XXXXXX";
  char out_path[] = "/tmp/admin_test_out_XXXXXX";
  int in_fd = mkstemp(in_path);
  int out_fd = mkstemp(out_path);
  if (in_fd < 0 || out_fd < 0) return result;
  if (write(in_fd, input.data(), input.size()) != static_cast<ssize_t>(input.size())) {
    return result;
  }
  lseek(in_fd, 0, SEEK_SET);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in_fd, 0);
    dup2(out_fd, 1);
    dup2(out_fd, 2);
    if (!dir.empty() && chdir(dir.c_str()) != 0) _exit(126);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  lseek(out_fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t n;
  while ((n = read(out_fd, buf, sizeof(buf))) > 0)
    result.output.append(buf, static_cast<size_t>(n));
  close(in_fd);
  close(out_fd);
  unlink(in_path);
  unlink(out_path);
  return result;
}

}  // namespace redhub::admin::testing
