#include "proctitle.h"

#include <sys/prctl.h>

#include <cstring>

extern char** environ;

namespace redhub {
namespace {

char* g_area = nullptr;
size_t g_area_size = 0;

}  // namespace

std::vector<std::string> InitProcTitle(int argc, char** argv) {
  std::vector<std::string> saved(argv, argv + argc);
  if (argc == 0) return saved;
  // The argv strings and then the environment strings sit back to back;
  // the title may use all of that space once environ is copied elsewhere.
  char* end = argv[0];
  for (int i = 0; i < argc; i++) {
    if (argv[i] == end) end = argv[i] + strlen(argv[i]) + 1;
  }
  size_t envc = 0;
  while (environ[envc] != nullptr) envc++;
  char** env_copy = new char*[envc + 1];
  for (size_t i = 0; i < envc; i++) {
    if (environ[i] == end) end = environ[i] + strlen(environ[i]) + 1;
    env_copy[i] = strdup(environ[i]);
  }
  env_copy[envc] = nullptr;
  environ = env_copy;
  // Keep argv[i] pointers valid for code that looked at them already.
  for (int i = 1; i < argc; i++) argv[i] = strdup(argv[i]);
  g_area = argv[0];
  g_area_size = end - argv[0];
  return saved;
}

void SetProcTitle(const std::string& title) {
  prctl(PR_SET_NAME, title.c_str(), 0, 0, 0);  // what top and /proc/PID/comm show
  if (g_area == nullptr || g_area_size < 2) return;
  size_t n = std::min(title.size(), g_area_size - 1);
  memcpy(g_area, title.data(), n);
  memset(g_area + n, 0, g_area_size - n);
}

}  // namespace redhub
