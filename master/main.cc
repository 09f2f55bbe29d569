// redhubd: start-up in dependency order, tear-down in reverse.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "config.h"
#include "event_loop.h"
#include "log.h"
#include "net.h"

int main(int argc, char** argv) {
  using namespace redhub;
  master::Config config;
  if (int rc = master::ParseArgs(argc, argv, &config); rc != 0) return rc < 0 ? 0 : rc;

  log::Level level;
  log::ParseLevel(config.log_level, &level);
  log::SetLevel(level);
  if (std::string err = log::Open(config.log_file); !err.empty()) {
    fprintf(stderr, "redhubd: %s\n", err.c_str());
    return 1;
  }

  std::vector<int> listeners;
  std::vector<std::string> addresses;
  for (const std::string& host : config.bind) {
    if (config.port != 0) addresses.push_back("tcp://" + host + ":" + std::to_string(config.port));
  }
  if (!config.unix_socket.empty()) addresses.push_back("unix://" + config.unix_socket);
  if (addresses.empty()) {
    LOG_WARNING("Nothing to listen on: give --port or --unixsocket");
    return 1;
  }
  uint16_t port = 0;
  for (const std::string& a : addresses) {
    worker::Address addr;
    std::string err = worker::ParseAddress(a, &addr);
    int fd = -1;
    if (err.empty()) {
      worker::ListenOptions lo;
      lo.backlog = config.server.listen_backlog;
      fd = worker::Listen(addr, lo, &err);
    }
    if (fd < 0) {
      LOG_WARNING("Could not listen on %s: %s", a.c_str(), err.c_str());
      return 1;
    }
    if (port == 0) port = worker::BoundPort(fd);
    listeners.push_back(fd);
  }

  worker::ServiceInfo info;
  info.bind = config.bind.empty() ? "" : config.bind.front();
  info.port = port;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) info.executable.assign(exe, n);
  worker::CommandService service(info);
  worker::EventLoop loop(config.server, service.MakeHandlers());
  service.set_loop(&loop);
  service.started_at = ev_now(loop.loop());
  for (int fd : listeners) loop.AddListener(fd);

  LOG_NOTICE("redhubd %s ready to accept connections on %s (port %u), pid %d", info.version.c_str(),
             addresses.front().c_str(), port, static_cast<int>(getpid()));
  loop.Run();
  LOG_NOTICE("redhubd is now ready to exit, bye bye...");
  for (int fd : listeners) close(fd);
  if (!config.unix_socket.empty()) unlink(config.unix_socket.c_str());
  return 0;
}
