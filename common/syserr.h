// System-call errors, spelled one way everywhere: the call with the
// arguments that identify its object, then the error's text and its errno
// name, so that a log line can be searched for by either:
//   open(/var/log/redhubd.log) failed: Permission denied (EACCES)
#pragma once

#include <string>
#include <string_view>

namespace redhub {

// "Permission denied (EACCES)": strerror(err) and the errno name.
std::string ErrnoText(int err);

// "<call> failed: <ErrnoText(err)>". Pass errno's value, read before
// anything else can change it.
std::string SysError(std::string_view call, int err);

}  // namespace redhub
