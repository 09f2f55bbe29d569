#include "daemon_cpu.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace redhub::worker {
namespace {

// The fields of /proc/<pid>/stat this needs, in clock ticks.
struct Stat {
  pid_t ppid = 0;
  uint64_t utime = 0, stime = 0;    // the process (all its threads)
  uint64_t cutime = 0, cstime = 0;  // its reaped children, and theirs
};

// Reads a small /proc file whole; false if it cannot be opened (the process
// is gone) or read.
bool ReadSmallFile(const char* path, std::string* out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out->clear();
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out->append(buf, static_cast<size_t>(n));
  close(fd);
  return n == 0;
}

uint64_t ToU64(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

bool ReadStat(pid_t pid, Stat* st) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  std::string text;
  if (!ReadSmallFile(path, &text)) return false;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
  // the fields start after the last ')'. Field 3 (state) is index 0 here.
  size_t at = text.rfind(')');
  if (at == std::string::npos) return false;
  std::string_view rest = std::string_view(text).substr(at + 1);
  std::string_view fields[15];
  size_t n = 0;
  while (n < std::size(fields)) {
    size_t start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    size_t end = rest.find(' ');
    fields[n++] = rest.substr(0, end);
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end);
  }
  if (n < std::size(fields)) return false;
  st->ppid = static_cast<pid_t>(ToU64(fields[1]));  // field 4
  st->utime = ToU64(fields[11]);                    // field 14
  st->stime = ToU64(fields[12]);                    // field 15
  st->cutime = ToU64(fields[13]);                   // field 16
  st->cstime = ToU64(fields[14]);                   // field 17
  return true;
}

// The live children of `parent` (zombies included: their times are final
// and still in their own stat until the parent reaps them). The kernel
// lists them per thread in /proc/<pid>/task/<tid>/children; without that
// file (a kernel built without CONFIG_PROC_CHILDREN), by scanning /proc.
std::vector<pid_t> Children(pid_t parent) {
  std::vector<pid_t> out;
  char path[96];
  snprintf(path, sizeof(path), "/proc/%d/task", static_cast<int>(parent));
  bool listed = false;
  if (DIR* tasks = opendir(path)) {
    while (dirent* e = readdir(tasks)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      snprintf(path, sizeof(path), "/proc/%d/task/%s/children", static_cast<int>(parent),
               e->d_name);
      std::string text;
      if (!ReadSmallFile(path, &text)) continue;
      listed = true;
      std::string_view rest = text;
      while (!rest.empty()) {
        size_t end = rest.find(' ');
        if (uint64_t pid = ToU64(rest.substr(0, end)); pid > 0)
          out.push_back(static_cast<pid_t>(pid));
        if (end == std::string_view::npos) break;
        rest.remove_prefix(end + 1);
      }
    }
    closedir(tasks);
  }
  if (listed) return out;
  if (DIR* proc = opendir("/proc")) {
    while (dirent* e = readdir(proc)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      Stat st;
      auto pid = static_cast<pid_t>(ToU64(e->d_name));
      if (ReadStat(pid, &st) && st.ppid == parent) out.push_back(pid);
    }
    closedir(proc);
  }
  return out;
}

CpuTimes FromTicks(uint64_t user, uint64_t sys) {
  static const long hz = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
  return {user * 1000000 / static_cast<uint64_t>(hz), sys * 1000000 / static_cast<uint64_t>(hz)};
}

}  // namespace

CpuTimes DaemonCpuTimes(pid_t master) {
  Stat self;
  if (master <= 0 || !ReadStat(master, &self)) {
    if (!ReadStat(getpid(), &self)) return {};
    return FromTicks(self.utime, self.stime);
  }
  uint64_t user = 0, sys = 0;
  // A child reaped between the two reads of the master's stat moves its
  // time into cutime/cstime while we may have counted it already (or not
  // yet): the sum is taken again. A reaped child always changes them unless
  // it used no tick, and then counting it or not makes no difference.
  for (int attempt = 0; attempt < 5; attempt++) {
    Stat before = self;
    user = sys = 0;
    for (pid_t child : Children(master)) {
      Stat st;
      if (!ReadStat(child, &st) || st.ppid != master) continue;  // gone, or not ours any more
      user += st.utime + st.cutime;
      sys += st.stime + st.cstime;
    }
    if (!ReadStat(master, &self)) break;
    if (self.cutime == before.cutime && self.cstime == before.cstime) break;
  }
  return FromTicks(user + self.utime + self.cutime, sys + self.stime + self.cstime);
}

}  // namespace redhub::worker
