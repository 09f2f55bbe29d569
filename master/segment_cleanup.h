// Removing the segments when the master cannot: it was SIGKILLed (or
// crashed), its workers die with it (PR_SET_PDEATHSIG), and without this the
// store (sized from maxmemory) and the -stats segment would stay in /dev/shm
// until a reboot or the next start on that name.
//
// The instance is whoever holds its -stats file (a new inode at every start,
// kept by an in-place upgrade) flock()ed shared: the master takes the lock on
// one descriptor that every child inherits and that the upgrade's execve
// keeps, so the kernel drops it when the last of them exits, however it
// exits (a worker killed -9 included). A cleanup process ("redhubd: shm
// cleanup", not a child of the master: it must outlive it) waits to lock the
// same file exclusively, which it gets exactly then, and removes what is
// still this instance's: the -stats segment, and the store without
// --shm-keep, each only if the name still refers to the inode it holds open.
// A start that takes the name over (a new instance) locks the previous
// -stats file exclusively first (`TakeOverLeftovers`), so a cleanup never
// removes what a new instance created or adopted.
#pragma once

#include <string>

namespace redhub::master {

// For a start that is about to create or adopt the segments of store_name:
// locks the -stats file a previous instance left, if there is one.
// Returns the descriptor to close once the new segments exist, -1 if there
// was nothing to lock, or -2 with *error if the previous instance, or its
// cleanup, still holds it.
int TakeOverLeftovers(const std::string& store_name, std::string* error);

// Once both segments exist: takes the instance's shared lock (the descriptor
// stays open for the master's life and its children's) and starts the
// cleanup process. After an upgrade, does nothing if the previous binary did
// this for the same -stats file (passed on in the environment), and starts
// afresh otherwise. False, with *error, if it could not; the daemon then runs
// as before this existed (a killed master leaves its segments behind).
bool StartSegmentCleanup(const std::string& store_name, bool keep_store, bool upgraded,
                         std::string* error);

}  // namespace redhub::master
