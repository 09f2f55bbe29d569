// Creating or reopening the shared store at start-up, before any worker is
// forked, and removing it at a clean stop.
#pragma once

#include <memory>
#include <string>

#include "config.h"
#include "store.h"

namespace redhub::master {

// At a normal start: refuses a segment that a live process still maps
// (another redhubd on the same name); with --shm-keep reuses a compatible
// kept segment and its data; otherwise replaces what a dead run left behind
// and creates a new one, reserving all of its memory. After a binary upgrade
// (inherited = true) it reopens the segment the previous binary created.
// At a normal start *leftovers_lock is what TakeOverLeftovers returned (a
// descriptor to close once the counter segment is made too, or -1): a
// cleanup of the instance that used the name before cannot run meanwhile.
// Returns nullptr and a message on failure.
std::unique_ptr<shm::Store> OpenStore(const Config& config, bool inherited, int* leftovers_lock,
                                      std::string* error);

// pid of a process other than ours that maps the segment, or 0.
int SegmentUser(const std::string& name);

shm::Policy PolicyFromName(const std::string& name);

}  // namespace redhub::master
