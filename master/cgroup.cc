#include "cgroup.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace redhub::master {

namespace {

std::optional<long long> ParseInt(std::string_view s) {
  long long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return s;
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The parent of a cgroup path ("/a/b" -> "/a", "/a" -> "/"); "" above "/".
std::string Parent(const std::string& path) {
  if (path.empty() || path == "/") return "";
  size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// Calls visit(dir) for the cgroup directory of each level from the
// process's own cgroup up to the root of the mounted hierarchy, for the v2
// hierarchy and for the v1 hierarchy of controller (cpu, memory). A
// container sees its own cgroup as the root.
template <class F>
void ForEachCgroupDir(std::string_view controller, F&& visit) {
  auto self = ReadFile("/proc/self/cgroup");
  if (!self) return;
  std::istringstream lines(*self);
  std::string line;
  while (std::getline(lines, line)) {
    // hierarchy-id:controllers:path
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    std::vector<std::string> mounts;
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      mounts = {"/sys/fs/cgroup"};  // v2
    } else if (("," + controllers + ",").find("," + std::string(controller) + ",") !=
               std::string::npos) {
      mounts = {"/sys/fs/cgroup/" + controllers, "/sys/fs/cgroup/" + std::string(controller)};
    }
    for (const std::string& mount : mounts) {
      for (std::string p = path; !p.empty(); p = Parent(p)) visit(mount + (p == "/" ? "" : p));
    }
  }
}

// The lowest CPU quota on the way from the process's cgroup to the root.
std::optional<int> QuotaCpus() {
  std::optional<int> lowest;
  auto take = [&](std::optional<int> cpus) {
    if (cpus && (!lowest || *cpus < *lowest)) lowest = cpus;
  };
  ForEachCgroupDir("cpu", [&](const std::string& dir) {
    if (auto max = ReadFile(dir + "/cpu.max")) take(CpusFromCpuMax(*max));
    auto quota = ReadFile(dir + "/cpu.cfs_quota_us");
    auto period = ReadFile(dir + "/cpu.cfs_period_us");
    if (quota && period) {
      auto q = ParseInt(Trim(*quota));
      auto per = ParseInt(Trim(*period));
      if (q && per) take(CpusFromCfs(*q, *per));
    }
  });
  return lowest;
}

}  // namespace

std::optional<int> CpusFromCfs(long long quota_us, long long period_us) {
  if (quota_us <= 0 || period_us <= 0) return std::nullopt;
  return static_cast<int>(std::max<long long>(1, (quota_us + period_us - 1) / period_us));
}

std::optional<int> CpusFromCpuMax(std::string_view text) {
  text = Trim(text);
  size_t space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  std::string_view quota = text.substr(0, space);
  if (quota == "max") return std::nullopt;
  auto q = ParseInt(quota);
  auto period = ParseInt(Trim(text.substr(space + 1)));
  if (!q || !period) return std::nullopt;
  return CpusFromCfs(*q, *period);
}

namespace {

// The value of "name N" in a memory.stat file; 0 if absent.
long long StatField(std::string_view stat, std::string_view name) {
  size_t at = 0;
  while (at < stat.size()) {
    size_t eol = stat.find('\n', at);
    std::string_view line = stat.substr(at, eol == std::string_view::npos ? eol : eol - at);
    if (line.size() > name.size() && line.substr(0, name.size()) == name &&
        line[name.size()] == ' ') {
      return ParseInt(Trim(line.substr(name.size() + 1))).value_or(0);
    }
    if (eol == std::string_view::npos) break;
    at = eol + 1;
  }
  return 0;
}

}  // namespace

std::optional<uint64_t> MemoryLeft(std::string_view limit, std::string_view usage,
                                   std::string_view stat) {
  limit = Trim(limit);
  if (limit == "max") return std::nullopt;
  auto l = ParseInt(limit);
  auto u = ParseInt(Trim(usage));
  // v1 writes "no limit" as the largest page-aligned long: anything above an
  // exabyte is that.
  if (!l || !u || *l <= 0 || *l >= (1LL << 60)) return std::nullopt;
  // v1's memory.stat has the hierarchy's total next to the cgroup's own.
  long long inactive =
      std::max(StatField(stat, "inactive_file"), StatField(stat, "total_inactive_file"));
  long long used = std::max(0LL, *u - inactive);
  return *l > used ? static_cast<uint64_t>(*l - used) : 0;
}

std::optional<uint64_t> MemoryAvailable() {
  std::optional<uint64_t> lowest;
  ForEachCgroupDir("memory", [&](const std::string& dir) {
    std::optional<uint64_t> left;
    std::string stat = ReadFile(dir + "/memory.stat").value_or("");
    if (auto max = ReadFile(dir + "/memory.max")) {
      if (auto current = ReadFile(dir + "/memory.current")) left = MemoryLeft(*max, *current, stat);
    } else if (auto limit = ReadFile(dir + "/memory.limit_in_bytes")) {
      if (auto usage = ReadFile(dir + "/memory.usage_in_bytes")) {
        left = MemoryLeft(*limit, *usage, stat);
      }
    }
    if (left && (!lowest || *left < *lowest)) lowest = left;
  });
  return lowest;
}

int UsableCpus() {
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int cpus = online > 0 ? static_cast<int>(online) : 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) {
    cpus = CPU_COUNT(&set);
  }
  if (auto quota = QuotaCpus()) cpus = std::min(cpus, *quota);
  return std::max(cpus, 1);
}

}  // namespace redhub::master
