// A worker process of the prefork daemon: one event loop serving the
// listening sockets of its slot, a control channel to the master, and,
// when it replaces a predecessor, the channel its connections arrive on.
#pragma once

#include <redhub/server.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "commands.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace redhub::shm {
class Store;
class CounterArea;
class AclArea;
class ScriptArea;
}  // namespace redhub::shm

namespace redhub::worker {

struct WorkerSpec {
  int slot = 0;
  int master_pid = 0;
  uint64_t seq = 0;             // spawn sequence number, unique per daemon
  std::vector<int> listen_fds;  // this slot's sockets, owned by the master
  // This slot's TLS sockets (tls-port), served with tls_ctx: the master's
  // context, loaded before fork() (tls_context.h), inherited, never freed.
  std::vector<int> tls_listen_fds;
  SSL_CTX* tls_ctx = nullptr;
  double tls_handshake_timeout = 10;
  std::vector<int> close_fds;  // inherited descriptors the worker must not keep
  int control_fd = -1;         // to the master
  int adopt_fd = -1;           // connections from the predecessor, or -1
  Options options;
  ServiceInfo info;
  shm::Store* store = nullptr;           // mapped by the master before fork()
  shm::CounterArea* counters = nullptr;  // likewise; this worker claims a block
  shm::AclArea* acl = nullptr;           // the users, likewise
  shm::ScriptArea* scripts = nullptr;    // the scripts and function libraries, likewise
  double drain_timeout = 30;
  double heartbeat_interval = 1;
};

// Runs in the child after fork(); returns the process exit code.
int RunWorker(const WorkerSpec& spec);

// The settings a running worker can take without a restart, and CONFIG
// GET's parameters after a reload. Decoding replaces *parameters with the
// payload's list if it has one (a payload from an older master has none and
// leaves it alone); parameters may be nullptr.
std::string EncodeLiveConfig(const Options& options, int log_level,
                             const ConfigParameterList& parameters = {});
void DecodeLiveConfig(std::string_view payload, Options* options, int* log_level,
                      ConfigParameterList* parameters = nullptr);

}  // namespace redhub::worker
