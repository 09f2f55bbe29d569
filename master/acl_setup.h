// The daemon's users at start, at reload and across an upgrade: the shared
// ACL area (shm/acl_area.h) the master makes before it forks, filled from
// the ACL file or with the default user and requirepass, and the live
// settings that touch it.
#pragma once

#include <memory>
#include <string>

#include "acl_area.h"
#include "config.h"

namespace redhub::master {

// A fresh area with the first users: the ACL file's (Redis's format; any
// error in it refuses the start, as Redis exits), else the default user
// "on nopass ~* &* +@all" with requirepass as its password if one is set.
std::unique_ptr<shm::AclArea> CreateAcl(const Config& config, std::string* error);
// After an upgrade: the area the previous binary handed over (by
// descriptor), users and ACL LOG as they were.
std::unique_ptr<shm::AclArea> AdoptAcl(int fd, const Config& config, std::string* error);

// At reload: ACL LOG's length, and requirepass if it changed (the default
// user's passwords replaced, as Redis's CONFIG SET requirepass). Never
// waits long on a worker that holds the area's lock: "" or what was not
// applied.
std::string ApplyAclSettings(shm::AclArea* area, const Config& before, const Config& after);

}  // namespace redhub::master
