// The command table: the families' rows gathered by slot, and the name
// index. Also the error replies of the table itself (unknown command, wrong
// arity, unknown subcommand).
#include "command_table.h"

#include <array>
#include <cstdlib>
#include <cstring>

#include "command_util.h"
#include "log.h"

namespace redhub::worker {
namespace {

const std::vector<CommandSpec>& AllCommands() {
  static const std::vector<CommandSpec> table = [] {
    std::vector<CommandSpec> t;
    for (auto family :
         {ConnectionCommands(), ServerCommands(), InfoCommands(), ConfigCommands(),
          TransactionCommands(), StringCommands(), KeyspaceCommands(), AclCommands()}) {
      for (const CommandSpec& spec : family) {
        if (spec.slot >= t.size()) t.resize(spec.slot + 1);
        if (t[spec.slot].name != nullptr) {
          LOG_WARNING("command table: %s and %s both have slot %u", t[spec.slot].name, spec.name,
                      spec.slot);
          abort();
        }
        t[spec.slot] = spec;
      }
    }
    for (size_t i = 0; i < t.size(); i++) {
      if (t[i].name == nullptr) {
        LOG_WARNING("command table: no command has slot %zu", i);
        abort();
      }
    }
    return t;
  }();
  return table;
}

// Command lookup runs once per request, so it is an open-addressing table
// keyed by an FNV-1a hash of the ASCII-lower-cased name, computed while
// lower-casing (no locale-aware tolower, no std::string, no allocation). A
// slot holds the name zero-padded to 24 bytes, so a probe compares three
// words instead of calling strncmp.
constexpr size_t kIndexSize = 512;  // a power of two, well above the table's size
constexpr size_t kMaxNameLen = 23;  // Redis's longest command name has 20 bytes

struct IndexSlot {
  uint64_t name[3];  // lower-case, zero-padded
  const CommandSpec* spec;
};

uint32_t NameHash(const char* lower, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ static_cast<unsigned char>(lower[i])) * 16777619u;
  return h;
}

const std::array<IndexSlot, kIndexSize>& Index() {
  static const auto* index = [] {
    auto* t = new std::array<IndexSlot, kIndexSize>{};
    for (const auto& spec : AllCommands()) {
      size_t n = strlen(spec.name);
      if (n > kMaxNameLen) abort();  // a table entry no lookup could find
      for (uint32_t i = NameHash(spec.name, n);; i++) {
        IndexSlot& slot = (*t)[i % kIndexSize];
        if (slot.spec == nullptr) {
          memcpy(slot.name, spec.name, n);
          slot.spec = &spec;
          break;
        }
      }
    }
    return t;
  }();
  return *index;
}

}  // namespace

const std::vector<CommandSpec>& CommandTable() { return AllCommands(); }

const CommandSpec* LookupCommand(std::string_view name) {
  uint64_t words[3] = {0, 0, 0};
  if (name.size() > kMaxNameLen) return nullptr;
  auto* lower = reinterpret_cast<char*>(words);
  for (size_t i = 0; i < name.size(); i++) {
    char c = name[i];
    // A NUL byte would match a shorter name's padding.
    if (c == '\0') return nullptr;
    lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  }
  const auto& index = Index();
  for (uint32_t i = NameHash(lower, name.size());; i++) {
    const IndexSlot& slot = index[i % kIndexSize];
    if (slot.spec == nullptr) return nullptr;
    if (slot.name[0] == words[0] && slot.name[1] == words[1] && slot.name[2] == words[2]) {
      return slot.spec;
    }
  }
}

uint32_t LookupAclCategory(std::string_view name) {
  for (const auto& c : kAclCategoryNames) {
    if (EqualsNoCase(name, c.name)) return c.category;
  }
  return 0;
}

void UnknownCommand(resp::Writer& w, std::span<const std::string_view> args) {
  std::string msg = "ERR unknown command '";
  msg.append(args[0].substr(0, 128));
  msg += "', with args beginning with: ";
  for (size_t i = 1; i < args.size() && msg.size() < 256; i++) {
    msg += '\'';
    msg.append(args[i].substr(0, 128));
    msg += "' ";
  }
  w.Error(msg);
}

void WrongArity(resp::Writer& w, std::string_view name) {
  w.Error("ERR wrong number of arguments for '" + std::string(name) + "' command");
}

void UnknownSubcommand(resp::Writer& w, std::string_view sub, std::string_view cmd) {
  w.Error("ERR unknown subcommand '" + std::string(sub.substr(0, 128)) + "'. Try " +
          std::string(cmd) + " HELP.");
}

}  // namespace redhub::worker
