// What a binary upgrade (SIGUSR2) hands from the old master image to the
// new one across execve: the spawn sequence, the bound port, the listening
// sockets and the running workers (their pids and control channels). It
// travels in the environment variable REDHUB_UPGRADE_STATE as
//   "2:" <hex of FieldWriter fields (common/channel.h)>
// with the fields of StateField below; a slot and a worker are nested field
// lists. A reader skips tags it does not know (a later binary may add
// fields) and refuses, with the reason, a value that is not hex, a
// truncated state (a cut field, or no kEnd last), a number of the wrong
// width or out of range, or a missing required field: it never guesses.
//
// Format 1, the previous binaries' text grammar, in REDHUB_INHERIT:
//   "1;seq;port;fd,fd,;slot:fd,fd,|...;slot:pid:ctl:seq[:r]|..."
// is written too, so that SIGUSR2 to a previous binary (a rollback) still
// works: it reads only REDHUB_INHERIT, and refused anything else and exited,
// taking the daemon down. This binary reads REDHUB_UPGRADE_STATE first and
// format 1 (strictly) only without it, from a previous binary. Format 1 can
// stop being written once no binary without format 2 is deployed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace redhub::master {

inline constexpr char kUpgradeStateEnv[] = "REDHUB_UPGRADE_STATE";  // format 2
inline constexpr char kLegacyUpgradeStateEnv[] = "REDHUB_INHERIT";  // format 1

struct UpgradeState {
  struct Slot {
    int index = 0;
    std::vector<int> fds;      // its SO_REUSEPORT listeners
    std::vector<int> tls_fds;  // and its TLS ones (tls-port); format 2 only
    bool operator==(const Slot&) const = default;
  };
  struct Worker {
    int slot = 0;
    pid_t pid = 0;
    int control_fd = -1;
    uint64_t seq = 0;
    bool retiring = false;  // handing its connections to its successor
    bool operator==(const Worker&) const = default;
  };
  uint64_t seq = 0;             // the last spawn sequence number
  uint16_t port = 0;            // the TCP port bound (for --port 0)
  std::vector<int> shared_fds;  // listeners every slot serves (unix socket)
  int acl_fd = -1;              // the users' shared area (acl_setup.h); -1: none
  int script_fd = -1;           // the scripts' shared area (shm/script_area.h); -1: none
  std::vector<Slot> slots;
  std::vector<Worker> workers;
  bool operator==(const UpgradeState&) const = default;
};

// The tags of the encoding. Numbers are FieldWriter::PutU64 (8 bytes, little
// endian). New tags go at the end; a tag's meaning never changes.
enum class StateField : uint16_t {
  kSeq = 1,       // required
  kPort = 2,      // required
  kSharedFd = 3,  // one per descriptor
  kSlot = 4,      // one per slot: SlotField list
  kWorker = 5,    // one per worker: WorkerField list
  // Required and last (value 0): a state cut short anywhere, even between
  // two fields, lacks it. A later binary's fields go before it.
  kEnd = 6,
  kAclFd = 7,     // optional: the users' area; a binary without it starts users afresh
  kScriptFd = 8,  // optional: the scripts' area; a binary without it starts scripts afresh
};
enum class SlotField : uint16_t { kIndex = 1, kFd = 2, kTlsFd = 3 };
enum class WorkerField : uint16_t { kSlot = 1, kPid = 2, kControlFd = 3, kSeq = 4, kRetiring = 5 };

// kUpgradeStateEnv's value (format 2).
std::string EncodeUpgradeState(const UpgradeState& state);
// kLegacyUpgradeStateEnv's value (format 1), for a previous binary.
std::string EncodeUpgradeStateFormat1(const UpgradeState& state);
// Reads format 2 or 1. Returns false with *error saying what is wrong.
bool DecodeUpgradeState(std::string_view text, UpgradeState* state, std::string* error);

}  // namespace redhub::master
