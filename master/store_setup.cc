#include "store_setup.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "cgroup.h"
#include "log.h"
#include "segment_cleanup.h"

namespace redhub::master {

shm::Policy PolicyFromName(const std::string& name) {
  shm::Policy p = shm::Policy::kNoEviction;  // the flag parser admits only known names
  shm::ParsePolicy(name, &p);
  return p;
}

int SegmentUser(const std::string& name) {
  // A mapped POSIX segment shows in /proc/<pid>/maps as /dev/shm/<name>.
  // Any process still mapping it (a worker of a running redhubd, or one whose
  // master was killed and is not gone yet) must not have it replaced.
  const std::string needle = " /dev/shm" + name;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return 0;
  int self = getpid();
  int found = 0;
  while (dirent* d = readdir(proc)) {
    char* end;
    long pid = strtol(d->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == self) continue;
    std::ifstream maps("/proc/" + std::string(d->d_name) + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
      if (line.size() >= needle.size() &&
          line.compare(line.size() - needle.size(), needle.size(), needle) == 0) {
        found = static_cast<int>(pid);
        break;
      }
      // A segment unlinked while mapped shows as "... (deleted)": not ours.
    }
    if (found != 0) break;
  }
  closedir(proc);
  return found;
}

std::unique_ptr<shm::Store> OpenStore(const Config& config, bool inherited, int* leftovers_lock,
                                      std::string* error) {
  *leftovers_lock = -1;
  if (inherited) {
    // The previous binary's workers keep serving from this segment while the
    // new ones start: reopen it, never recreate it.
    auto store = shm::Store::OpenExisting(config.shm_name, error);
    if (store) {
      store->SetMaxmemory(config.maxmemory);
      store->SetPolicy(PolicyFromName(config.maxmemory_policy));
    }
    return store;
  }
  if (int pid = SegmentUser(config.shm_name); pid != 0) {
    *error = "shared memory segment " + config.shm_name + " is in use by pid " +
             std::to_string(pid) + " (another redhubd? give it a different --shm-name or --port)";
    return nullptr;
  }
  *leftovers_lock = TakeOverLeftovers(config.shm_name, error);
  if (*leftovers_lock == -2) {
    *leftovers_lock = -1;
    return nullptr;
  }
  shm::StoreOptions o;
  o.name = config.shm_name;
  o.maxmemory = config.maxmemory;
  o.policy = PolicyFromName(config.maxmemory_policy);
  o.if_exists = config.shm_keep ? shm::IfExists::kReuse : shm::IfExists::kReplace;
  o.memory_available = MemoryAvailable;
  // Whether a kept segment is there to reuse, for the error message.
  bool existed = config.shm_keep && access(("/dev/shm" + config.shm_name).c_str(), F_OK) == 0;
  auto store = shm::Store::Create(o, error);
  if (!store && existed) {
    *error += " (--shm-keep reuses only a store a redhubd kept: remove /dev/shm" + config.shm_name +
              ", or start without --shm-keep to replace it)";
  }
  if (store) {
    shm::Stats st = store->stats();
    LOG_NOTICE("Store %s: %llu keys, %.1f MB segment, maxmemory %.1f MB, %u stripes",
               config.shm_name.c_str(), static_cast<unsigned long long>(st.keys),
               st.segment_bytes / 1048576.0, st.maxmemory / 1048576.0, st.stripes);
  }
  return store;
}

}  // namespace redhub::master
