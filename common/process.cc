#include "process.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

namespace redhub {

void CloseInheritedSockets() {
  // Collect first: closing while readdir walks /proc/self/fd would change
  // the directory being read.
  std::vector<int> sockets;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(dir)) {
      int fd = atoi(e->d_name);
      struct stat st;
      if (fd > 2 && fd != dirfd(dir) && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
        sockets.push_back(fd);
      }
    }
    closedir(dir);
  }
  for (int fd : sockets) close(fd);
}

}  // namespace redhub
