// Helpers for a process the master forks and that must not keep what it
// inherited.
#pragma once

namespace redhub {

// Closes every socket descriptor above stderr. A forked helper (the admin
// process, the shm cleanup) that kept a copy of a listening socket would
// hold the port after the master exits, or accept connections that nobody
// serves (after an upgrade, the kernel spreads new connections over every
// SO_REUSEPORT socket, copies included).
void CloseInheritedSockets();

}  // namespace redhub
