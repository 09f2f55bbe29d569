// The daemon's command layer, in one include: the command table
// (command_table.h: rows, flags, lookup) and the service that runs it for a
// worker's event loop (command_service.h: the dispatcher, its checks, the
// counters). worker/README.md has the file map.
#pragma once

#include "command_service.h"
#include "command_table.h"
