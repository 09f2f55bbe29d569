#include "syserr.h"

#include <cstring>

namespace redhub {

std::string ErrnoText(int err) {
  std::string s = strerror(err);
  // strerrorname_np (glibc 2.32) gives "EACCES"; null for an unknown code.
  if (const char* name = strerrorname_np(err)) {
    s += " (";
    s += name;
    s += ")";
  }
  return s;
}

std::string SysError(std::string_view call, int err) {
  std::string s(call);
  s += " failed: ";
  s += ErrnoText(err);
  return s;
}

}  // namespace redhub
