#include "acl_user.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <bit>
#include <climits>
#include <cstring>

#include "command_util.h"
#include "glob.h"

namespace redhub::worker::acl {
namespace {

// The table's categories (command_table.h), bit i named kCategoryNames[i].
constexpr size_t kCategories = std::size(kAclCategoryNames);
constexpr std::array<const char*, kCategories> kCategoryNames = [] {
  std::array<const char*, kCategories> names{};
  for (size_t i = 0; i < kCategories; i++) names[i] = kAclCategoryNames[i].name;
  return names;
}();
static_assert(
    [] {
      for (size_t i = 0; i < kCategories; i++) {
        if (kAclCategoryNames[i].category != (uint32_t{1} << i)) return false;
      }
      return true;
    }(),
    "kAclCategoryNames must list the categories in bit order");

// Redis's ACLSetUserStringErrno texts, by the errno its ACLSetUser sets.
constexpr char kSyntaxError[] = "Syntax error";                             // EINVAL
constexpr char kUnknownName[] = "Unknown command or category name in ACL";  // ENOENT
constexpr char kKeyAfterAll[] =
    "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have "
    "any effect. Try 'resetkeys' to start with an empty list of patterns";  // EEXIST
constexpr char kChannelAfterAll[] =
    "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not "
    "have any effect. Try 'resetchannels' to start with an empty list of channels";  // EISDIR
constexpr char kNoSuchPassword[] =
    "The password you are trying to remove from the user does not exist";  // ENODEV
constexpr char kBadHash[] =
    "The password hash must be exactly 64 characters and contain only lowercase hexadecimal "
    "characters";  // EBADMSG
constexpr char kNoSelectors[] =
    "Selectors are not supported by this server (use one set of permissions per user)";

bool HasSpaces(std::string_view s) {
  for (char c : s) {
    if (c == ' ' || c == '\0' || c == '\t' || c == '\r' || c == '\n') return true;
  }
  return false;
}

bool ValidHash(std::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// A command with subcommands (CLIENT, CONFIG, ...): its row declares what
// they share in subcommand_flags, and ACL names them "config|get".
bool IsContainer(const CommandSpec& spec) { return spec.subcommand_flags != 0; }

template <typename T>
void Erase(std::vector<T>& v, const T& x) {
  std::erase(v, x);
}

// The key permissions a command needs on its key number `i` (from 0), from
// Redis 7.0's key specs (COMMAND INFO): "access" needs read, "insert",
// "update" and "delete" need write; "RO" alone (EXISTS, TYPE, STRLEN,
// TOUCH) needs neither, so any pattern that matches will do.
uint8_t KeyPermsOf(const CommandSpec& spec, size_t i, std::span<const std::string_view> args) {
  using acl::kKeyRead;
  using acl::kKeyReadWrite;
  using acl::kKeyWrite;
  struct Row {
    const char* name;
    uint8_t first;  // key 0
    uint8_t rest;   // keys after it
  };
  static constexpr Row kRows[] = {
      {"del", kKeyWrite, kKeyWrite},
      {"unlink", kKeyWrite, kKeyWrite},
      {"exists", 0, 0},
      {"touch", 0, 0},
      {"type", 0, 0},
      {"strlen", 0, 0},
      {"expire", kKeyWrite, 0},
      {"expireat", kKeyWrite, 0},
      {"pexpire", kKeyWrite, 0},
      {"pexpireat", kKeyWrite, 0},
      {"persist", kKeyWrite, 0},
      {"expiretime", kKeyRead, 0},
      {"pexpiretime", kKeyRead, 0},
      {"ttl", kKeyRead, 0},
      {"pttl", kKeyRead, 0},
      {"rename", kKeyReadWrite, kKeyWrite},
      {"renamenx", kKeyReadWrite, kKeyWrite},
      {"append", kKeyWrite, 0},
      {"setrange", kKeyWrite, 0},
      {"get", kKeyRead, 0},
      {"getrange", kKeyRead, 0},
      {"substr", kKeyRead, 0},
      {"mget", kKeyRead, kKeyRead},
      {"mset", kKeyWrite, kKeyWrite},
      {"msetnx", kKeyWrite, kKeyWrite},
      {"psetex", kKeyWrite, 0},
      {"setex", kKeyWrite, 0},
      {"setnx", kKeyWrite, 0},
  };
  for (const Row& r : kRows) {
    if (strcmp(r.name, spec.name) == 0) return i == 0 ? r.first : r.rest;
  }
  if (strcmp(spec.name, "set") == 0) {
    // SET's key spec has variable flags: with GET it reads the old value.
    for (size_t a = 3; a < args.size(); a++) {
      if (EqualsNoCase(args[a], "GET")) return kKeyReadWrite;
    }
    return kKeyWrite;
  }
  // Read-modify-write commands (INCR, DECRBY, GETSET, GETDEL, GETEX, ...)
  // and any row not listed: both, the strictest reading.
  return kKeyReadWrite;
}

}  // namespace

std::span<const char* const> CategoryNames() { return kCategoryNames; }

int CategoryIndex(std::string_view name) {
  const uint32_t bit = LookupAclCategory(name);
  return bit == 0 ? -1 : std::countr_zero(bit);
}

bool CategoryHasCommands(int category) {
  for (uint64_t c : Ids().categories) {
    if (c & (uint64_t{1} << category)) return true;
  }
  return false;
}

const CommandIds& Ids() {
  static const CommandIds ids = [] {
    CommandIds t;
    const auto& table = CommandTable();
    for (size_t r = 0; r < table.size(); r++) {
      t.names.emplace_back(table[r].name);
      t.categories.push_back(AclCategories(table[r]));
      t.row.push_back(r);
    }
    t.sub_base.resize(table.size());
    for (size_t r = 0; r < table.size(); r++) {
      t.sub_base[r] = t.names.size();
      for (const SubcommandSpec& sub : table[r].subcommands) {
        t.names.push_back(std::string(table[r].name) + "|" + sub.name);
        t.categories.push_back(AclCategories(sub));
        t.row.push_back(r);
      }
    }
    return t;
  }();
  return ids;
}

User::User(std::string name) : name_(std::move(name)) {
  const size_t rows = CommandTable().size();
  allowed_.assign(Ids().names.size(), false);
  allowed_subs_.assign(rows, {});
  denied_subs_.assign(rows, {});
}

bool User::ValidName(std::string_view name) { return !HasSpaces(name); }

std::string User::HashPassword(std::string_view password) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(password.data(), password.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned i = 0; i < len; i++) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 15]);
  }
  return hex;
}

bool User::CheckPassword(std::string_view password) const {
  if (nopass_) return true;
  const std::string hash = HashPassword(password);
  bool found = false;
  // Every stored hash is compared, in constant time each (Redis's
  // time_independent_strcmp): how long it takes says nothing of which.
  for (const std::string& p : passwords_) {
    if (p.size() == hash.size() && CRYPTO_memcmp(p.data(), hash.data(), hash.size()) == 0) {
      found = true;
    }
  }
  return found;
}

// A row's bit and those of its subcommands, as Redis's ACLChangeSelectorPerm
// (which also forgets the row's first-argument exceptions).
void User::SetCommand(size_t slot, bool allow) {
  allowed_[slot] = allow;
  const auto& subs = CommandTable()[slot].subcommands;
  for (size_t j = 0; j < subs.size(); j++) allowed_[Ids().sub_base[slot] + j] = allow;
  allowed_subs_[slot].clear();
  denied_subs_[slot].clear();
}

// Every id in the category: a container's own bit by its own categories,
// its subcommands' by theirs, as Redis walks commands and subcommands.
void User::SetCategory(int category, bool allow) {
  const CommandIds& ids = Ids();
  for (size_t i = 0; i < ids.names.size(); i++) {
    if ((ids.categories[i] & (uint64_t{1} << category)) == 0) continue;
    allowed_[i] = allow;
    allowed_subs_[ids.row[i]].clear();
    denied_subs_[ids.row[i]].clear();
  }
}

void User::SetAll(bool allow) {
  foreign_categories_.clear();
  allowed_.assign(allowed_.size(), allow);
  for (auto& v : allowed_subs_) v.clear();
  for (auto& v : denied_subs_) v.clear();
  future_commands_ = allow;
}

std::string User::ApplyCommandRule(std::string_view rule) {
  const bool allow = rule[0] == '+';
  std::string_view what = rule.substr(1);
  if (!what.empty() && what[0] == '@') {
    if (EqualsNoCase(what, "@all")) {
      SetAll(allow);
      return "";
    }
    const int c = CategoryIndex(what.substr(1));
    if (c < 0) return kUnknownName;
    SetCategory(c, allow);
    if (!CategoryHasCommands(c)) {
      // No command here is in it (@hash, @list...): the rule changes
      // nothing today, but it is kept, so that ACL LIST and ACL SAVE give
      // Redis (and a later binary with those commands) the same rights.
      const std::string rule_text = std::string(allow ? "+@" : "-@") + kCategoryNames[c];
      std::erase_if(foreign_categories_,
                    [&](const std::string& r) { return r.substr(2) == kCategoryNames[c]; });
      foreign_categories_.push_back(rule_text);
    }
    return "";
  }
  const size_t bar = what.find('|');
  const CommandSpec* spec = LookupCommand(what.substr(0, bar));
  if (spec == nullptr) return kUnknownName;
  const size_t slot = static_cast<size_t>(spec - CommandTable().data());
  if (bar == std::string_view::npos) {
    SetCommand(slot, allow);
    return "";
  }
  const std::string sub = AsciiLower(what.substr(bar + 1));
  // Redis 7.0 looks "-a|b|c" up whole (no such command), and splits
  // "+a|b|c" at its last bar: "+config|get|x" names a first argument of a
  // subcommand, which it refuses; anything else is no command it knows.
  if (!allow && (sub.empty() || sub.find('|') != std::string::npos)) return kUnknownName;
  if (const size_t last = sub.rfind('|'); last != std::string::npos) {
    const std::string_view head = std::string_view(sub).substr(0, last);
    if (IsContainer(*spec)) {
      for (const auto& listed : spec->subcommands) {
        if (head == listed.name) return "Allowing first-arg of a subcommand is not supported";
      }
    }
    return kUnknownName;
  }
  if (sub.empty()) return kSyntaxError;
  if (!IsContainer(*spec)) {
    // Redis 7.0 still takes "+select|0" (a first argument) for a command
    // without subcommands, and nothing can take it away but "-select".
    if (!allow) return kUnknownName;
    if (!allowed_[slot] && std::find(allowed_subs_[slot].begin(), allowed_subs_[slot].end(), sub) ==
                               allowed_subs_[slot].end()) {
      allowed_subs_[slot].push_back(sub);
    }
    return "";
  }
  const auto& subs = spec->subcommands;
  for (size_t j = 0; j < subs.size(); j++) {
    if (sub == subs[j].name) {
      allowed_[Ids().sub_base[slot] + j] = allow;
      return "";
    }
  }
  // A subcommand Redis has and this server does not serve ("client|kill"):
  // kept by name, relative to the container's own bit, so files written for
  // Redis still load.
  auto& add = allowed_[slot] ? denied_subs_[slot] : allowed_subs_[slot];
  if (allow == allowed_[slot]) {
    Erase(add, sub);
  } else if (std::find(add.begin(), add.end(), sub) == add.end()) {
    add.push_back(sub);
  }
  return "";
}

std::string User::Apply(std::string_view rule) {
  if (rule.empty()) return kSyntaxError;
  const std::string lower = AsciiLower(rule);
  if (lower == "on") {
    enabled_ = true;
  } else if (lower == "off") {
    enabled_ = false;
  } else if (lower == "skip-sanitize-payload") {
    skip_sanitize_payload_ = true;
    sanitize_payload_ = false;
  } else if (lower == "sanitize-payload") {
    sanitize_payload_ = true;
    skip_sanitize_payload_ = false;
  } else if (lower == "nopass") {
    nopass_ = true;
    passwords_.clear();
  } else if (lower == "resetpass") {
    nopass_ = false;
    passwords_.clear();
  } else if (lower == "allkeys") {
    all_keys_ = true;
    keys_.clear();
  } else if (lower == "resetkeys") {
    all_keys_ = false;
    keys_.clear();
  } else if (lower == "allchannels") {
    all_channels_ = true;
    channels_.clear();
  } else if (lower == "resetchannels") {
    all_channels_ = false;
    channels_.clear();
  } else if (lower == "allcommands") {
    SetAll(true);
  } else if (lower == "nocommands") {
    SetAll(false);
  } else if (lower == "reset") {
    // As Redis 7.0 with acl-pubsub-default resetchannels.
    for (const char* r :
         {"resetpass", "resetkeys", "resetchannels", "off", "sanitize-payload", "-@all"}) {
      Apply(r);
    }
  } else if (rule[0] == '>' || rule[0] == '#') {
    std::string hash;
    if (rule[0] == '#') {
      if (!ValidHash(rule.substr(1))) return kBadHash;
      hash = rule.substr(1);
    } else {
      hash = HashPassword(rule.substr(1));
    }
    if (std::find(passwords_.begin(), passwords_.end(), hash) == passwords_.end()) {
      passwords_.push_back(hash);
    }
    nopass_ = false;
  } else if (rule[0] == '<' || rule[0] == '!') {
    std::string hash;
    if (rule[0] == '!') {
      if (!ValidHash(rule.substr(1))) return kBadHash;
      hash = rule.substr(1);
    } else {
      hash = HashPassword(rule.substr(1));
    }
    auto it = std::find(passwords_.begin(), passwords_.end(), hash);
    if (it == passwords_.end()) return kNoSuchPassword;
    passwords_.erase(it);
  } else if (rule[0] == '~' || rule[0] == '%') {
    // Redis 7.0's order: allkeys first, then the permission letters (each
    // once; "%R" without a '~' is the empty pattern), then spaces.
    if (all_keys_) return kKeyAfterAll;
    uint8_t perms = kKeyReadWrite;
    size_t at = 1;
    if (rule[0] == '%') {
      perms = 0;
      for (; at < rule.size(); at++) {
        char c = rule[at];
        if ((c == 'R' || c == 'r') && !(perms & kKeyRead)) {
          perms |= kKeyRead;
        } else if ((c == 'W' || c == 'w') && !(perms & kKeyWrite)) {
          perms |= kKeyWrite;
        } else if (c == '~') {
          at++;
          break;
        } else {
          return kSyntaxError;
        }
      }
      if (perms == 0) return kSyntaxError;
    }
    std::string_view pattern = rule.substr(std::min(at, rule.size()));
    if (HasSpaces(pattern)) return kSyntaxError;
    // "%RW~*" is allkeys here too (Redis keeps it a pattern, but describes
    // it as "~*", which would not read back through the shared text).
    auto same = [&](const KeyPattern& k) { return k.pattern == pattern; };
    if (pattern == "*" && perms == kKeyReadWrite) {
      all_keys_ = true;
      keys_.clear();
    } else if (auto k = std::find_if(keys_.begin(), keys_.end(), same); k != keys_.end()) {
      k->perms |= perms;
    } else {
      keys_.push_back({perms, std::string(pattern)});
    }
  } else if (rule[0] == '&') {
    std::string_view pattern = rule.substr(1);
    if (HasSpaces(pattern)) return kSyntaxError;
    if (all_channels_) return kChannelAfterAll;
    if (pattern == "*") {
      all_channels_ = true;
      channels_.clear();
    } else if (std::find(channels_.begin(), channels_.end(), pattern) == channels_.end()) {
      channels_.emplace_back(pattern);
    }
  } else if (rule[0] == '+' || rule[0] == '-') {
    if (std::string e = ApplyCommandRule(rule); !e.empty()) return e;
  } else if (rule[0] == '(' || lower == "clearselectors") {
    return kNoSelectors;
  } else {
    return kSyntaxError;
  }
  Recompute();
  return "";
}

std::string User::ApplyAll(std::string_view rules) {
  size_t at = 0;
  while (at < rules.size()) {
    size_t end = rules.find(' ', at);
    if (end == std::string_view::npos) end = rules.size();
    if (end > at) {
      if (std::string e = Apply(rules.substr(at, end - at)); !e.empty()) {
        return "'" + std::string(rules.substr(at, end - at)) + "': " + e;
      }
    }
    at = end + 1;
  }
  return "";
}

void User::Recompute() {
  bool all = future_commands_;
  for (size_t i = 0; all && i < allowed_.size(); i++) all = allowed_[i];
  for (size_t i = 0; all && i < denied_subs_.size(); i++) all = denied_subs_[i].empty();
  unrestricted_ = all && all_keys_ && all_channels_;
}

bool User::CanRun(const CommandSpec& spec, std::string_view sub) const {
  const size_t slot = static_cast<size_t>(&spec - CommandTable().data());
  if (IsContainer(spec) && !sub.empty()) {
    for (size_t j = 0; j < spec.subcommands.size(); j++) {
      if (EqualsNoCase(sub, spec.subcommands[j].name)) return allowed_[Ids().sub_base[slot] + j];
    }
  }
  if (allowed_[slot]) {
    if (denied_subs_[slot].empty()) return true;
    const std::string s = AsciiLower(sub);
    return std::find(denied_subs_[slot].begin(), denied_subs_[slot].end(), s) ==
           denied_subs_[slot].end();
  }
  if (allowed_subs_[slot].empty() || sub.empty()) return false;
  const std::string s = AsciiLower(sub);
  return std::find(allowed_subs_[slot].begin(), allowed_subs_[slot].end(), s) !=
         allowed_subs_[slot].end();
}

bool User::CanAccessKey(std::string_view key, uint8_t perms) const {
  if (all_keys_) return true;
  for (const KeyPattern& k : keys_) {
    if ((k.perms & perms) != perms) continue;
    if (GlobMatch(k.pattern, key)) return true;
  }
  return false;
}

bool User::CanAccessChannel(std::string_view channel) const {
  if (all_channels_) return true;
  for (const std::string& c : channels_) {
    if (GlobMatch(c, channel)) return true;
  }
  return false;
}

std::vector<std::string> User::FlagNames() const {
  std::vector<std::string> f;
  f.push_back(enabled_ ? "on" : "off");
  if (nopass_) f.push_back("nopass");
  if (skip_sanitize_payload_) f.push_back("skip-sanitize-payload");
  if (sanitize_payload_) f.push_back("sanitize-payload");
  return f;
}

std::string User::DescribeKeys() const {
  if (all_keys_) return "~*";
  std::string out;
  for (const KeyPattern& k : keys_) {
    if (!out.empty()) out += ' ';
    out += k.perms == kKeyReadWrite ? "~" : k.perms == kKeyRead ? "%R~" : "%W~";
    out += k.pattern;
  }
  return out;
}

std::string User::DescribeChannels() const {
  if (all_channels_) return "&*";
  std::string out;
  for (const std::string& c : channels_) {
    if (!out.empty()) out += ' ';
    out += "&" + c;
  }
  return out;
}

// Redis 7.0's ACLDescribeSelectorCommandRules: start from +@all (if the user
// may run future commands) or -@all, add or remove the category that best
// fits what is left to explain while it explains more than it breaks, then
// name single commands and subcommands for the remaining differences. The
// rules, applied to a new user, give back exactly this user's commands.
std::string User::DescribeCommands() const {
  const auto& table = CommandTable();
  const CommandIds& ids = Ids();
  const bool additive = !future_commands_;
  User fake("");
  fake.Apply(additive ? "-@all" : "+@all");
  std::string rules = additive ? "-@all" : "+@all";
  // What is left to explain: the user's bits, with the categories applied
  // so far undone.
  std::vector<bool> temp = allowed_;
  std::array<bool, kCategories> applied{};
  while (true) {
    int best = -1;
    size_t min_diff = SIZE_MAX, max_same = 0;
    for (size_t c = 0; c < kCategories; c++) {
      if (applied[c]) continue;
      size_t on = 0, off = 0;
      for (size_t i = 0; i < ids.names.size(); i++) {
        if (ids.categories[i] & (uint64_t{1} << c)) (temp[i] ? on : off)++;
      }
      const size_t diff = additive ? off : on;
      const size_t same = additive ? on : off;
      if (same > diff && (diff < min_diff || (diff == min_diff && same > max_same))) {
        best = static_cast<int>(c);
        min_diff = diff;
        max_same = same;
      }
    }
    if (best < 0) break;
    applied[best] = true;
    fake.SetCategory(best, additive);
    for (size_t i = 0; i < ids.names.size(); i++) {
      if (ids.categories[i] & (uint64_t{1} << best)) temp[i] = !additive;
    }
    rules += std::string(additive ? " +@" : " -@") + kCategoryNames[best];
  }
  for (const std::string& r : foreign_categories_) rules += " " + r;
  // Single commands, then subcommands, for what the categories left.
  for (size_t r = 0; r < table.size(); r++) {
    if (fake.allowed_[r] != allowed_[r]) {
      rules += std::string(allowed_[r] ? " +" : " -") + table[r].name;
      fake.SetCommand(r, allowed_[r]);
    }
    for (size_t j = 0; j < table[r].subcommands.size(); j++) {
      const size_t id = ids.sub_base[r] + j;
      if (fake.allowed_[id] != allowed_[id]) {
        rules += std::string(allowed_[id] ? " +" : " -") + ids.names[id];
      }
    }
    for (const std::string& s : allowed_subs_[r])
      rules += std::string(" +") + table[r].name + "|" + s;
    for (const std::string& s : denied_subs_[r])
      rules += std::string(" -") + table[r].name + "|" + s;
  }
  return rules;
}

std::string User::Describe() const {
  std::string out;
  for (const std::string& f : FlagNames()) out += f + " ";
  for (const std::string& p : passwords_) out += "#" + p + " ";
  if (std::string k = DescribeKeys(); !k.empty()) out += k + " ";
  out += all_channels_ ? std::string("&* ") : "resetchannels " + [&] {
    std::string c = DescribeChannels();
    return c.empty() ? c : c + " ";
  }();
  out += DescribeCommands();
  return out;
}

std::string FullName(const CommandSpec& spec, std::span<const std::string_view> args) {
  std::string name = spec.name;
  if (IsContainer(spec) && args.size() > 1) name += "|" + AsciiLower(args[1]);
  return name;
}

Denial Check(const User& user, const CommandSpec& spec, std::span<const std::string_view> args) {
  Denial d;
  if (user.unrestricted()) return d;
  // Commands that run before authentication are never refused by the
  // command rules (AUTH, HELLO, QUIT), as Redis.
  const std::string_view first = args.size() > 1 ? args[1] : std::string_view();
  if ((spec.check_flags() & kNoAuth) == 0 && !user.CanRun(spec, first)) {
    d.kind = Denial::kCommand;
    d.object = FullName(spec, args);
    return d;
  }
  ForEachKeyArg(spec, args, [&](size_t n, std::string_view key) {
    if (d.kind == Denial::kNone && !user.CanAccessKey(key, KeyPermsOf(spec, n, args))) {
      d.kind = Denial::kKey;
      d.object = std::string(key);
    }
  });
  return d;
}

std::string DenialOf(const User& user, const CommandSpec& spec,
                     std::span<const std::string_view> args) {
  const Denial d = Check(user, spec, args);
  if (d.kind == Denial::kCommand) {
    return "This user has no permissions to run the '" + d.object + "' command";
  }
  if (d.kind == Denial::kKey)
    return "This user has no permissions to access the '" + d.object + "' key";
  return "";
}

}  // namespace redhub::worker::acl
