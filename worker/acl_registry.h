// The users as this worker sees them: parsed from the shared ACL area
// (shm/acl_area.h) when its generation moves, and changed only through the
// area's lock (Modify), so that every worker applies every change, in one
// order, and a change made on one worker is seen by a connection on another
// at its next command.
//
// The shared text, one user a line after a header:
//   redhub-acl 1 <next id>
//   <id> <name> <rules as ACL LIST writes them>
// A user's id is its incarnation: a user deleted and created again, or
// loaded again by ACL LOAD, has a new id, and connections authenticated as
// the old one are closed (as Redis frees them with their user).
//
// ACL files are Redis's format ("user <name> <rules>" lines).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "acl_area.h"
#include "acl_user.h"

namespace redhub::worker::acl {

struct Entry {
  uint64_t id = 0;
  std::shared_ptr<const User> user;
};
// By name, in byte order (ACL USERS and ACL LIST are sorted so).
using Users = std::map<std::string, Entry, std::less<>>;

// Users <-> the shared text. Parse returns "" or what is wrong.
std::string Serialize(const Users& users, uint64_t next_id);
std::string Parse(std::string_view text, Users* users, uint64_t* next_id);

// The default user of a new server: "on nopass ~* &* +@all".
std::shared_ptr<const User> DefaultUser();

// An ACL file's users (Redis's format). "" or Redis's errors, e.g.
// "/etc/users.acl:3: Unknown command or category name in ACL. ".
std::string ParseFile(std::string_view path, std::string_view text,
                      std::map<std::string, std::shared_ptr<const User>>* users);
// Reads the whole file: "" or strerror's text (Redis's ACL LOAD error ends with it).
std::string ReadFile(const std::string& path, std::string* text);
// ACL LOAD and the start with an ACL file (Redis's ACLLoadFromFile): the
// users become `loaded`; the default user keeps its id (its connections
// stay), every other user gets a new one (their connections close, as
// Redis frees them with the old users). A file without a default user
// leaves the default one "on nopass ~* &* +@all".
std::string ReplaceUsers(Users& users, uint64_t& next_id,
                         const std::map<std::string, std::shared_ptr<const User>>& loaded);
// The file's text for ACL SAVE.
std::string FileText(const Users& users);

class Registry {
 public:
  explicit Registry(shm::AclArea* area) : area_(area) {}

  // Re-reads the users if another process changed them: true then (the
  // caller re-checks its connections). One shared load when nothing moved.
  bool Refresh() {
    if (area_ == nullptr || area_->generation() == generation_) [[likely]] {
      return false;
    }
    return Reload();
  }
  uint64_t generation() const { return generation_; }

  const Entry* Find(std::string_view name) const;
  const User& default_user() const { return *default_; }
  const Users& users() const { return users_; }

  // Under the area's lock: fn changes the latest users (ids: next_id gives
  // new ones); "" once published (and read back here), else fn's error,
  // with nothing changed.
  using ModifyFn = std::function<std::string(Users& users, uint64_t& next_id)>;
  // wait_ms: as AclArea::Update (the master passes a bound).
  std::string Modify(const ModifyFn& fn, long wait_ms = -1);

  // The master, at start: the first users (the default user, the ACL file's
  // users, requirepass applied by the caller through fn).
  static std::string Initialize(shm::AclArea* area, const ModifyFn& fn);

 private:
  bool Reload();
  void Load(const std::string& text, uint64_t generation);

  shm::AclArea* area_;
  uint64_t generation_ = UINT64_MAX;  // not read yet
  Users users_;
  std::shared_ptr<const User> default_ = DefaultUser();
};

}  // namespace redhub::worker::acl
