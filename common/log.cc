#include "log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "syserr.h"

namespace redhub::log {
namespace {

Level g_level = Level::kNotice;
char g_role = 'M';
int g_fd = STDERR_FILENO;
std::string g_path;

}  // namespace

void SetLevel(Level level) { g_level = level; }
Level GetLevel() { return g_level; }
void SetRole(char role) { g_role = role; }

bool ParseLevel(const std::string& name, Level* level) {
  static const struct {
    const char* name;
    Level level;
  } kLevels[] = {{"debug", Level::kDebug},
                 {"verbose", Level::kVerbose},
                 {"notice", Level::kNotice},
                 {"warning", Level::kWarning}};
  for (const auto& l : kLevels) {
    if (name == l.name) {
      *level = l.level;
      return true;
    }
  }
  return false;
}

std::string Open(const std::string& path) {
  if (path.empty()) {
    if (g_fd != STDERR_FILENO) close(g_fd);
    g_fd = STDERR_FILENO;
    g_path.clear();
    return "";
  }
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return SysError("open(\"" + path + "\")", errno);
  if (g_fd != STDERR_FILENO) close(g_fd);
  g_fd = fd;
  g_path = path;
  return "";
}

std::string Reopen() { return g_path.empty() ? "" : Open(g_path); }

void Write(Level level, const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);

  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  localtime_r(&tv.tv_sec, &tm);
  char when[64];
  size_t n = strftime(when, sizeof(when), "%d %b %Y %H:%M:%S", &tm);
  snprintf(when + n, sizeof(when) - n, ".%03d", static_cast<int>(tv.tv_usec / 1000));
  static const char kMarks[] = ".-*#";
  char line[1200];
  int len = snprintf(line, sizeof(line), "%d:%c %s %c %s\n", static_cast<int>(getpid()), g_role,
                     when, kMarks[static_cast<int>(level)], msg);
  if (len > static_cast<int>(sizeof(line))) len = sizeof(line);
  // One write(2) per line keeps lines from different processes whole.
  ssize_t ignored = write(g_fd, line, len);
  (void)ignored;
}

}  // namespace redhub::log
