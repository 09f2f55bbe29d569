// systemd's sd_notify protocol (Type=notify), without libsystemd: one
// datagram to $NOTIFY_SOCKET per state change. A no-op when not under systemd.
#pragma once

#include <string>

namespace redhub::master {

// e.g. "READY=1\nMAINPID=1234". Returns false only if sending failed.
bool Notify(const std::string& state);

}  // namespace redhub::master
