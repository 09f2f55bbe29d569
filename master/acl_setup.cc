#include "acl_setup.h"

#include "acl_registry.h"
#include "log.h"

namespace redhub::master {
namespace {

namespace acl = worker::acl;

// How long the master waits for the area's lock at reload: a worker holds
// it for a parse of the users; one that holds it longer is hung, and the
// master's own loop (its watchdog among others) must go on.
constexpr long kReloadLockMillis = 1000;

std::string SetDefaultPassword(acl::Users& users, const std::string& password) {
  auto it = users.find(worker::kDefaultUser);
  if (it == users.end()) return "no default user";
  auto u = std::make_shared<acl::User>(*it->second.user);
  u->Apply("resetpass");
  u->Apply(password.empty() ? "nopass" : ">" + password);
  it->second.user = std::move(u);
  return "";
}

}  // namespace

std::unique_ptr<shm::AclArea> CreateAcl(const Config& config, std::string* error) {
  std::unique_ptr<shm::AclArea> area = shm::AclArea::Create({}, error);
  if (!area) return nullptr;
  area->SetLogMaxLen(config.acllog_max_len);
  std::map<std::string, std::shared_ptr<const acl::User>> loaded;
  if (!config.aclfile.empty()) {
    std::string text;
    if (std::string e = acl::ReadFile(config.aclfile, &text); !e.empty()) {
      *error = "aclfile " + config.aclfile + ": " + e;
      return nullptr;
    }
    if (std::string e = acl::ParseFile(config.aclfile, text, &loaded); !e.empty()) {
      *error = "aclfile: " + e;
      return nullptr;
    }
    if (!config.requirepass.empty()) {
      LOG_WARNING("requirepass is ignored: the users, the default one included, come from %s",
                  config.aclfile.c_str());
    }
  }
  std::string e = acl::Registry::Initialize(area.get(), [&](acl::Users& users, uint64_t& next_id) {
    if (!config.aclfile.empty()) return acl::ReplaceUsers(users, next_id, loaded);
    if (!config.requirepass.empty()) return SetDefaultPassword(users, config.requirepass);
    return std::string();
  });
  if (!e.empty()) {
    *error = "users: " + e;
    return nullptr;
  }
  return area;
}

std::unique_ptr<shm::AclArea> AdoptAcl(int fd, const Config& config, std::string* error) {
  std::unique_ptr<shm::AclArea> area = shm::AclArea::Adopt(fd, error);
  if (area) area->SetLogMaxLen(config.acllog_max_len);
  return area;
}

std::string ApplyAclSettings(shm::AclArea* area, const Config& before, const Config& after) {
  if (area == nullptr) return "";
  area->SetLogMaxLen(after.acllog_max_len);
  if (before.requirepass == after.requirepass || !after.aclfile.empty()) return "";
  acl::Registry registry(area);
  std::string e = registry.Modify(
      [&](acl::Users& users, uint64_t&) { return SetDefaultPassword(users, after.requirepass); },
      kReloadLockMillis);
  return e.empty() ? "" : "requirepass not applied: " + e;
}

}  // namespace redhub::master
