// The open file limit, as Redis's adjustOpenFilesLimit: every client is a
// descriptor, so maxclients only means something if RLIMIT_NOFILE has room
// for it. Without room, accept4 fails with EMFILE and the clients beyond it
// wait in the listen queue instead of getting Redis's max-clients error.
#pragma once

#include <sys/resource.h>

#include <cstdint>

#include "config.h"

namespace redhub::master {

// Descriptors a process of the daemon needs besides its clients: Redis's 32
// (CONFIG_MIN_RESERVED_FDS: stdio, the log, epoll and libev's eventfd, the
// shared-memory segments, ...) plus what only redhubd has: every listening
// socket (the master holds all of them: workers x TCP addresses, plus the
// unix socket), one control channel per worker, and a successor's control
// and handoff channels while a reload replaces a worker. The limit is per
// process and one worker may hold every client of the daemon (maxclients is
// daemon-wide), so each process gets maxclients + this.
uint64_t ReservedFds(const Config& config);

// Makes RLIMIT_NOFILE fit config->server.max_clients + ReservedFds: raises
// the soft limit, up to the hard limit (never the hard limit itself: that is
// the operator's, e.g. systemd's LimitNOFILE=, and once lowered an
// unprivileged process could not raise it again at a later reload). If it
// cannot, lowers max_clients to what fits, with Redis's warnings. Returns
// false, after logging, if not even one client fits (Redis refuses to start;
// a reload is refused). at_start picks Redis's "Exiting." wording. Workers
// forked afterwards inherit the limit.
bool AdjustOpenFilesLimit(Config* config, bool at_start);

}  // namespace redhub::master
