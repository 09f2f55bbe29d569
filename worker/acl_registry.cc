#include "acl_registry.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "acl_area.h"

namespace redhub::worker::acl {
namespace {

constexpr std::string_view kHeader = "redhub-acl 1 ";

std::vector<std::string_view> Words(std::string_view line) {
  std::vector<std::string_view> w;
  size_t at = 0;
  while (at < line.size()) {
    while (at < line.size() && (line[at] == ' ' || line[at] == '\t' || line[at] == '\r')) at++;
    size_t end = at;
    while (end < line.size() && line[end] != ' ' && line[end] != '\t' && line[end] != '\r') end++;
    if (end > at) w.push_back(line.substr(at, end - at));
    at = end;
  }
  return w;
}

bool ParseU64(std::string_view s, uint64_t* v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::shared_ptr<const User> DefaultUser() {
  auto u = std::make_shared<User>("default");
  u->ApplyAll("on nopass ~* &* +@all");
  return u;
}

std::string Serialize(const Users& users, uint64_t next_id) {
  std::string out(kHeader);
  out += std::to_string(next_id) + "\n";
  for (const auto& [name, e] : users) {
    out += std::to_string(e.id) + " " + name + " " + e.user->Describe() + "\n";
  }
  return out;
}

std::string Parse(std::string_view text, Users* users, uint64_t* next_id) {
  users->clear();
  size_t nl = text.find('\n');
  if (text.substr(0, kHeader.size()) != kHeader || nl == std::string_view::npos ||
      !ParseU64(text.substr(kHeader.size(), nl - kHeader.size()), next_id)) {
    return "the shared users do not start with \"redhub-acl 1 <next id>\"";
  }
  text.remove_prefix(nl + 1);
  while (!text.empty()) {
    nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    size_t a = line.find(' ');
    size_t b = a == std::string_view::npos ? a : line.find(' ', a + 1);
    uint64_t id;
    if (b == std::string_view::npos || !ParseU64(line.substr(0, a), &id)) {
      return "a shared user line is not \"<id> <name> <rules>\"";
    }
    std::string name(line.substr(a + 1, b - a - 1));
    auto u = std::make_shared<User>(name);
    if (std::string e = u->ApplyAll(line.substr(b + 1)); !e.empty()) {
      // A later binary's rule this one does not know: refuse the text
      // rather than run with a user that has other rights than it should.
      return "shared user " + name + ": " + e;
    }
    (*users)[name] = Entry{id, std::move(u)};
  }
  return "";
}

std::string ParseFile(std::string_view path, std::string_view text,
                      std::map<std::string, std::shared_ptr<const User>>* users) {
  // Redis's ACLLoadFromFile: every error of the file is reported, and then
  // nothing is applied.
  std::string errors;
  int line_no = 0;
  const std::string where(path);
  while (!text.empty() || line_no == 0) {
    line_no++;
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    std::vector<std::string_view> w = Words(line);
    if (w.empty()) {
      if (text.empty()) break;
      continue;
    }
    const std::string at = where + ":" + std::to_string(line_no);
    if (w[0] != "user" || w.size() < 2) {
      errors += at + " should start with user keyword followed by the username. ";
      continue;
    }
    const std::string name(w[1]);
    if (!User::ValidName(name)) {
      errors += at + ": username '" + name + "' contains invalid characters. ";
      continue;
    }
    if (users->count(name) != 0) {
      errors +=
          "WARNING: Duplicate user '" + name + "' found on line " + std::to_string(line_no) + ". ";
      continue;
    }
    auto u = std::make_shared<User>(name);
    bool ok = true;
    for (size_t i = 2; i < w.size(); i++) {
      if (std::string e = u->Apply(w[i]); !e.empty()) {
        errors += at + ": ";
        if (w[i][0] == '+' || w[i][0] == '-') {
          errors += "Error in applying operation '" + std::string(w[i]) + "': ";
        }
        errors += e + ". ";
        ok = false;
        break;
      }
    }
    if (ok) (*users)[name] = std::move(u);
    if (text.empty()) break;
  }
  if (!errors.empty()) {
    errors +=
        "WARNING: ACL errors detected, no change to the previously active ACL rules was "
        "performed";
  }
  return errors;
}

std::string ReadFile(const std::string& path, std::string* text) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return strerror(errno);
  text->clear();
  char buf[65536];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return strerror(err);
    }
    if (n == 0) break;
    text->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return "";
}

std::string ReplaceUsers(Users& users, uint64_t& next_id,
                         const std::map<std::string, std::shared_ptr<const User>>& loaded) {
  const auto old_default = users.find("default");
  const uint64_t default_id = old_default != users.end() ? old_default->second.id : next_id++;
  Users next;
  for (const auto& [name, u] : loaded) {
    next[name] = Entry{name == "default" ? default_id : next_id++, u};
  }
  if (next.find("default") == next.end()) next["default"] = Entry{default_id, DefaultUser()};
  users = std::move(next);
  return "";
}

std::string FileText(const Users& users) {
  std::string out;
  for (const auto& [name, e] : users) out += "user " + name + " " + e.user->Describe() + "\n";
  return out;
}

bool Registry::Reload() {
  std::string text;
  uint64_t g = area_->Read(&text);
  Load(text, g);
  return true;
}

void Registry::Load(const std::string& text, uint64_t generation) {
  Users users;
  uint64_t next_id;
  if (std::string e = Parse(text, &users, &next_id); !e.empty()) {
    // Only the master writes the first text, and every writer writes what
    // Serialize makes: this is a bug or another binary's format. Keep the
    // users as they were (not "everyone may do anything").
    return;
  }
  users_ = std::move(users);
  generation_ = generation;
  const Entry* d = Find("default");
  default_ = d != nullptr ? d->user : DefaultUser();
}

const Entry* Registry::Find(std::string_view name) const {
  auto it = users_.find(name);
  return it == users_.end() ? nullptr : &it->second;
}

std::string Registry::Modify(const ModifyFn& fn, long wait_ms) {
  if (area_ == nullptr) return "ERR no ACL area";
  std::string fn_error;
  std::string error;
  std::string published;
  uint64_t generation = 0;
  bool ok = area_->Update(
      [&](const std::string& current, std::string* next, std::string* err) {
        Users users;
        uint64_t next_id = 1;
        if (std::string e = Parse(current, &users, &next_id); !e.empty() && !current.empty()) {
          *err = "ERR " + e;
          return false;
        }
        fn_error = fn(users, next_id);
        if (!fn_error.empty()) return false;
        *next = Serialize(users, next_id);
        published = *next;
        return true;
      },
      &error, wait_ms, &generation);
  if (!ok) return !fn_error.empty() ? fn_error : "ERR " + error;
  // What was just published, without taking the lock again.
  Load(published, generation);
  return "";
}

std::string Registry::Initialize(shm::AclArea* area, const ModifyFn& fn) {
  Registry r(area);
  return r.Modify([&](Users& users, uint64_t& next_id) {
    users.clear();
    users["default"] = Entry{next_id++, DefaultUser()};
    return fn(users, next_id);
  });
}

}  // namespace redhub::worker::acl
