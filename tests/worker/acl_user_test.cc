// The ACL core of worker/: acl::User (every rule kind and Redis's error
// texts, passwords, key permissions, Describe round trips fuzzed over the
// real command table), acl::Check on real rows, ACL files (Redis's error
// texts), and acl::Registry over a real shared AclArea, two registries
// standing for two workers.
#include "acl_user.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "acl_area.h"
#include "acl_registry.h"
#include "command_table.h"

namespace redhub::worker::acl {
namespace {

const CommandSpec& Row(const char* name) {
  const CommandSpec* s = LookupCommand(name);
  EXPECT_NE(s, nullptr) << name;
  return *s;
}

User Make(std::string_view rules, std::string name = "u") {
  User u(std::move(name));
  EXPECT_EQ(u.ApplyAll(rules), "") << rules;
  return u;
}

Denial CheckArgs(const User& u, std::vector<std::string_view> args) {
  return Check(u, Row(std::string(args[0]).c_str()), args);
}

constexpr char kSyntax[] = "Syntax error";
constexpr char kUnknown[] = "Unknown command or category name in ACL";

TEST(AclUserTest, EveryRuleKindAndRedisErrorTexts) {
  User u("alice");
  EXPECT_FALSE(u.enabled());
  // Flags.
  for (const char* r : {"on", "OFF", "on", "nopass", "resetpass", "allkeys", "resetkeys",
                        "allchannels", "resetchannels", "allcommands", "nocommands",
                        "sanitize-payload", "skip-sanitize-payload", "reset", "on"}) {
    EXPECT_EQ(u.Apply(r), "") << r;
  }
  EXPECT_TRUE(u.enabled());
  // Errors, with Redis's ACLSetUserStringErrno texts.
  const std::string hash64(64, 'a');
  const std::pair<const char*, const char*> errors[] = {
      {"", kSyntax},
      {"bogus", kSyntax},
      {"%X~k", kSyntax},
      {"%~k", kSyntax},
      {"%R", ""},  // as redis-server 7.0.15: %R with no "~" is taken (AclParityTest)
      {"~a b", kSyntax},
      {"&a\tb", kSyntax},
      {"+nosuch", kUnknown},
      {"-nosuch", kUnknown},
      {"+@nosuch", kUnknown},
      {"+@", kUnknown},
      {"-select|0", kUnknown},  // a first argument can only be added
      {"+client|", kSyntax},
      {"+client|list|x", "Allowing first-arg of a subcommand is not supported"},
      {"<never-set", "The password you are trying to remove from the user does not exist"},
      {"#abc",
       "The password hash must be exactly 64 characters and contain only lowercase hexadecimal "
       "characters"},
      {"!abc",
       "The password hash must be exactly 64 characters and contain only lowercase hexadecimal "
       "characters"},
      {"(~k +get)",
       "Selectors are not supported by this server (use one set of permissions per user)"},
      {"clearselectors",
       "Selectors are not supported by this server (use one set of permissions per user)"},
  };
  for (const auto& [rule, error] : errors) EXPECT_EQ(u.Apply(rule), error) << "'" << rule << "'";
  EXPECT_EQ(u.Apply("#" + std::string(64, 'A')),
            "The password hash must be exactly 64 characters and contain only lowercase "
            "hexadecimal characters");
  EXPECT_EQ(u.Apply("#" + hash64), "");
  EXPECT_EQ(u.Apply("!" + hash64), "");
  EXPECT_EQ(u.Apply("!" + hash64),
            "The password you are trying to remove from the user does not exist");
  // Patterns after "everything".
  EXPECT_EQ(u.Apply("allkeys"), "");
  EXPECT_EQ(u.Apply("~k*"),
            "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does "
            "not have any effect. Try 'resetkeys' to start with an empty list of patterns");
  EXPECT_EQ(u.Apply("%R~k*"), u.Apply("~x"));
  EXPECT_EQ(u.Apply("&*"), "");
  EXPECT_EQ(u.Apply("&c*"),
            "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and "
            "does not have any effect. Try 'resetchannels' to start with an empty list of "
            "channels");
  // Command rules of each form.
  for (const char* r :
       {"+get", "-GET", "+@read", "-@Read", "+@all", "-@all", "+client|list", "-client|list",
        "+client|kill", "-client|kill", "+select|0", "+CONFIG|GET"}) {
    EXPECT_EQ(u.Apply(r), "") << r;
  }
  // ApplyAll names the rule that failed and stops there.
  User v("v");
  EXPECT_EQ(v.ApplyAll("on  +get   +nosuch +set"), "'+nosuch': " + std::string(kUnknown));
  EXPECT_TRUE(v.enabled());
  EXPECT_TRUE(v.CanRun(Row("get"), ""));
  EXPECT_FALSE(v.CanRun(Row("set"), ""));
  // Names.
  EXPECT_TRUE(User::ValidName("a-b_c.d"));
  EXPECT_FALSE(User::ValidName("a b"));
  EXPECT_FALSE(User::ValidName(std::string("a\0b", 3)));
}

TEST(AclUserTest, ResetIsRedis70Reset) {
  User u = Make("on nopass allkeys allchannels +@all skip-sanitize-payload");
  EXPECT_TRUE(u.unrestricted());
  ASSERT_EQ(u.Apply("reset"), "");
  EXPECT_EQ(u.Describe(), "off sanitize-payload resetchannels -@all");
  EXPECT_EQ(u.FlagNames(), (std::vector<std::string>{"off", "sanitize-payload"}));
  EXPECT_FALSE(u.unrestricted());
  EXPECT_FALSE(u.CheckPassword(""));
}

TEST(AclUserTest, PasswordsInEveryForm) {
  EXPECT_EQ(User::HashPassword("foo"),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae");
  User u = Make("on >pw1 >pw2 #" + User::HashPassword("hashed"));
  EXPECT_TRUE(u.CheckPassword("pw1"));
  EXPECT_TRUE(u.CheckPassword("pw2"));
  EXPECT_TRUE(u.CheckPassword("hashed"));
  EXPECT_FALSE(u.CheckPassword("PW1"));
  EXPECT_FALSE(u.CheckPassword(""));
  EXPECT_FALSE(u.nopass());
  EXPECT_EQ(u.password_hashes().size(), 3u);
  ASSERT_EQ(u.Apply(">pw1"), "");  // again: not twice
  EXPECT_EQ(u.password_hashes().size(), 3u);
  ASSERT_EQ(u.Apply("<pw1"), "");
  EXPECT_FALSE(u.CheckPassword("pw1"));
  ASSERT_EQ(u.Apply("!" + User::HashPassword("pw2")), "");
  EXPECT_FALSE(u.CheckPassword("pw2"));
  EXPECT_TRUE(u.CheckPassword("hashed"));
  // nopass: any password, and it forgets the others; a password ends it.
  ASSERT_EQ(u.Apply("nopass"), "");
  EXPECT_TRUE(u.CheckPassword("anything"));
  EXPECT_TRUE(u.password_hashes().empty());
  ASSERT_EQ(u.Apply(">new"), "");
  EXPECT_FALSE(u.nopass());
  EXPECT_FALSE(u.CheckPassword("anything"));
  EXPECT_TRUE(u.CheckPassword("new"));
  ASSERT_EQ(u.Apply("resetpass"), "");
  EXPECT_FALSE(u.CheckPassword("new"));
  EXPECT_FALSE(u.CheckPassword(""));
  // Binary passwords hash their bytes.
  User b("b");
  ASSERT_EQ(b.Apply(std::string(">a\0b", 4)), "");
  EXPECT_TRUE(b.CheckPassword(std::string("a\0b", 3)));
  EXPECT_FALSE(b.CheckPassword("a"));
}

TEST(AclUserTest, KeyPermissions) {
  User u = Make("on %R~r:* %W~w:* ~rw:* %RW~both %R~m %W~m");
  EXPECT_TRUE(u.CanAccessKey("r:1", kKeyRead));
  EXPECT_FALSE(u.CanAccessKey("r:1", kKeyWrite));
  EXPECT_FALSE(u.CanAccessKey("r:1", kKeyReadWrite));
  EXPECT_TRUE(u.CanAccessKey("w:1", kKeyWrite));
  EXPECT_FALSE(u.CanAccessKey("w:1", kKeyRead));
  EXPECT_TRUE(u.CanAccessKey("rw:1", kKeyReadWrite));
  EXPECT_TRUE(u.CanAccessKey("both", kKeyReadWrite));
  EXPECT_TRUE(u.CanAccessKey("m", kKeyReadWrite));  // %R~m then %W~m: both
  EXPECT_FALSE(u.CanAccessKey("other", kKeyRead));
  // EXISTS-style use (no permission needed): any pattern that matches.
  EXPECT_TRUE(u.CanAccessKey("r:1", 0));
  EXPECT_TRUE(u.CanAccessKey("w:1", 0));
  EXPECT_FALSE(u.CanAccessKey("other", 0));
  EXPECT_EQ(u.DescribeKeys(), "%R~r:* %W~w:* ~rw:* ~both ~m");
  // A read-write * is allkeys; a read-only one is a pattern.
  EXPECT_EQ(Make("%R~*").DescribeKeys(), "%R~*");
  EXPECT_EQ(Make("%RW~*").DescribeKeys(), "~*");
  EXPECT_TRUE(Make("~*").CanAccessKey("anything", kKeyReadWrite));
  EXPECT_FALSE(Make("%R~*").CanAccessKey("anything", kKeyWrite));
  EXPECT_FALSE(Make("").CanAccessKey("anything", 0));
  // Channels.
  User c = Make("&news.* &alerts");
  EXPECT_TRUE(c.CanAccessChannel("news.sport"));
  EXPECT_TRUE(c.CanAccessChannel("alerts"));
  EXPECT_FALSE(c.CanAccessChannel("alerts2"));
  EXPECT_EQ(c.DescribeChannels(), "&news.* &alerts");
}

TEST(AclUserTest, CommandRulesAndSubcommands) {
  User u = Make("on -@all +@read +client|list +config|get +client|kill +select|0");
  EXPECT_TRUE(u.CanRun(Row("get"), ""));
  EXPECT_FALSE(u.CanRun(Row("set"), ""));
  EXPECT_TRUE(u.CanRun(Row("client"), "LIST"));
  EXPECT_FALSE(u.CanRun(Row("client"), "setname"));
  EXPECT_FALSE(u.CanRun(Row("client"), ""));
  EXPECT_TRUE(u.CanRun(Row("client"), "kill"));  // one this server does not serve, by name
  EXPECT_TRUE(u.CanRun(Row("config"), "get"));
  EXPECT_FALSE(u.CanRun(Row("config"), "set"));
  EXPECT_TRUE(u.CanRun(Row("select"), "0"));
  EXPECT_FALSE(u.CanRun(Row("select"), "1"));
  // A category after the exceptions resets them (as Redis).
  ASSERT_EQ(u.Apply("-@slow"), "");
  EXPECT_FALSE(u.CanRun(Row("client"), "kill"));
  // The container's bit on, one served and one unserved subcommand off.
  User v = Make("on +@all -client|list -client|kill -config");
  EXPECT_FALSE(v.CanRun(Row("client"), "list"));
  EXPECT_FALSE(v.CanRun(Row("client"), "KILL"));
  EXPECT_TRUE(v.CanRun(Row("client"), "setname"));
  EXPECT_TRUE(v.CanRun(Row("client"), "nosuchsub"));
  EXPECT_FALSE(v.CanRun(Row("config"), "get"));
  EXPECT_FALSE(v.unrestricted());
  // Whichever rule comes last (each rule recomputes it).
  EXPECT_TRUE(Make("+@all ~* &*").unrestricted());
  EXPECT_TRUE(Make("&* ~* +@all").unrestricted());
  EXPECT_TRUE(Make("+@all &* %R~* %W~*").unrestricted() ||
              Make("+@all &* %R~* %W~*").CanAccessKey("any", kKeyReadWrite));
  EXPECT_FALSE(Make("+@all ~*").unrestricted());
  EXPECT_FALSE(Make("+@all ~* &* -client|kill").unrestricted());
  // The categories cover every row: -@all +@<each> gives every command.
  User all = Make("-@all");
  for (const char* c : CategoryNames()) ASSERT_EQ(all.Apply(std::string("+@") + c), "") << c;
  for (const CommandSpec& s : CommandTable()) EXPECT_TRUE(all.CanRun(s, "")) << s.name;
}

TEST(AclUserTest, CheckOnRealRows) {
  User u = Make("on +@all %R~r:* %W~w:* ~rw:*");
  auto ok = [&](std::vector<std::string_view> args) {
    Denial d = CheckArgs(u, args);
    EXPECT_EQ(d.kind, Denial::kNone) << args[0] << " " << args[1] << ": " << d.object;
  };
  auto key = [&](std::vector<std::string_view> args, const char* object) {
    Denial d = CheckArgs(u, args);
    EXPECT_EQ(d.kind, Denial::kKey) << args[0];
    EXPECT_EQ(d.object, object) << args[0];
  };
  ok({"GET", "r:1"});
  ok({"GET", "rw:1"});
  key({"GET", "w:1"}, "w:1");
  ok({"SET", "w:1", "v"});
  ok({"SET", "w:1", "v", "EX", "10"});
  key({"SET", "w:1", "v", "GET"}, "w:1");  // GET reads the old value
  key({"SET", "w:1", "v", "NX", "get"}, "w:1");
  ok({"SET", "rw:1", "v", "GET"});
  key({"SET", "r:1", "v"}, "r:1");
  ok({"MSET", "w:1", "a", "w:2", "b"});
  key({"MSET", "w:1", "a", "r:1", "b"}, "r:1");
  ok({"MGET", "r:1", "rw:2"});
  key({"MGET", "r:1", "w:2"}, "w:2");
  ok({"RENAME", "rw:a", "w:b"});  // source read and written, destination written
  key({"RENAME", "r:a", "w:b"}, "r:a");
  key({"RENAME", "w:a", "w:b"}, "w:a");
  key({"RENAME", "rw:a", "r:b"}, "r:b");
  ok({"DEL", "w:1", "rw:2"});
  key({"DEL", "w:1", "r:2"}, "r:2");
  ok({"EXISTS", "r:1", "w:1", "rw:1"});  // no permission needed, a pattern must match
  key({"EXISTS", "r:1", "other"}, "other");
  ok({"EXPIRE", "w:1", "10"});
  key({"INCR", "w:1"}, "w:1");  // read-modify-write
  ok({"INCR", "rw:1"});
  ok({"PING"});  // no keys
  EXPECT_EQ(DenialOf(u, Row("get"), std::vector<std::string_view>{"GET", "w:1"}),
            "This user has no permissions to access the 'w:1' key");

  User c = Make("on -@all +get +config|get ~*");
  Denial d = CheckArgs(c, {"SET", "k", "v"});
  EXPECT_EQ(d.kind, Denial::kCommand);
  EXPECT_EQ(d.object, "set");
  EXPECT_EQ(CheckArgs(c, {"CONFIG", "GET", "x"}).kind, Denial::kNone);
  d = CheckArgs(c, {"CONFIG", "SET", "x", "y"});
  EXPECT_EQ(d.kind, Denial::kCommand);
  EXPECT_EQ(d.object, "config|set");
  EXPECT_EQ(DenialOf(c, Row("config"), std::vector<std::string_view>{"CONFIG", "Set", "a", "b"}),
            "This user has no permissions to run the 'config|set' command");
  // AUTH, HELLO and QUIT are never refused by the command rules.
  EXPECT_EQ(CheckArgs(c, {"AUTH", "pw"}).kind, Denial::kNone);
  EXPECT_EQ(CheckArgs(c, {"HELLO", "3"}).kind, Denial::kNone);
  EXPECT_EQ(CheckArgs(c, {"QUIT"}).kind, Denial::kNone);
  EXPECT_EQ(FullName(Row("client"), std::vector<std::string_view>{"CLIENT", "LIST"}),
            "client|list");
  EXPECT_EQ(FullName(Row("get"), std::vector<std::string_view>{"GET", "k"}), "get");
}

// ---- Describe() round trip, fuzzed.

// Rules over the real table: every category and row, every listed
// subcommand, unserved subcommands and first arguments, and the other kinds.
std::vector<std::string> RulePool() {
  std::vector<std::string> pool;
  for (const char* c : CategoryNames()) {
    pool.push_back(std::string("+@") + c);
    pool.push_back(std::string("-@") + c);
  }
  for (const CommandSpec& s : CommandTable()) {
    pool.push_back(std::string("+") + s.name);
    pool.push_back(std::string("-") + s.name);
    for (const SubcommandSpec& sub : s.subcommands) {
      pool.push_back(std::string("+") + s.name + "|" + sub.name);
      pool.push_back(std::string("-") + s.name + "|" + sub.name);
    }
    if (!s.subcommands.empty()) {
      pool.push_back(std::string("+") + s.name + "|nosuchsub");
      pool.push_back(std::string("-") + s.name + "|nosuchsub");
    }
  }
  for (const char* r : {"+client|kill",
                        "-client|kill",
                        "+config|rewrite",
                        "-config|rewrite",
                        "+select|0",
                        "+select|1",
                        "+get|x",
                        "+@all",
                        "-@all",
                        "allcommands",
                        "nocommands",
                        "on",
                        "off",
                        "nopass",
                        "resetpass",
                        ">p1",
                        ">p2",
                        "<p1",
                        "<p2",
                        "allkeys",
                        "resetkeys",
                        "~k*",
                        "%R~r*",
                        "%W~w*",
                        "%W~k*",
                        "~exact",
                        "%R~*",
                        "allchannels",
                        "resetchannels",
                        "&ch*",
                        "&x",
                        "reset",
                        "sanitize-payload",
                        "skip-sanitize-payload"}) {
    pool.emplace_back(r);
  }
  return pool;
}

// Every way the two users could differ that the server looks at.
std::string Differences(const User& a, const User& b) {
  const CommandIds& ids = Ids();
  const auto& table = CommandTable();
  std::string out;
  auto sub_names = [](const CommandSpec& s) {
    std::vector<std::string> v = {"", "nosuchsub", "kill", "rewrite", "0", "1", "x"};
    for (const SubcommandSpec& sub : s.subcommands) v.emplace_back(sub.name);
    return v;
  };
  for (const CommandSpec& s : table) {
    for (const std::string& sub : sub_names(s)) {
      if (a.CanRun(s, sub) != b.CanRun(s, sub)) {
        out += std::string(" CanRun(") + s.name + " " + sub + ")";
      }
    }
  }
  (void)ids;
  for (const char* k : {"k1", "r1", "w1", "exact", "other", ""}) {
    for (uint8_t p : {0, 1, 2, 3}) {
      if (a.CanAccessKey(k, p) != b.CanAccessKey(k, p)) {
        out += std::string(" key(") + k + "," + std::to_string(p) + ")";
      }
    }
  }
  for (const char* c : {"ch1", "x", "y"}) {
    if (a.CanAccessChannel(c) != b.CanAccessChannel(c)) out += std::string(" channel ") + c;
  }
  for (const char* p : {"p1", "p2", "p3", ""}) {
    if (a.CheckPassword(p) != b.CheckPassword(p)) out += std::string(" password ") + p;
  }
  if (a.FlagNames() != b.FlagNames()) out += " flags";
  if (a.password_hashes() != b.password_hashes()) out += " hashes";
  return out;
}

TEST(AclUserTest, DescribeRoundTripsForRandomRuleSequences) {
  const std::vector<std::string> pool = RulePool();
  std::mt19937 rng(4242);
  int with_exceptions = 0;
  for (int n = 0; n < 5000; n++) {
    User u("fuzz");
    std::string applied;
    const int len = 1 + static_cast<int>(rng() % 14);
    for (int i = 0; i < len; i++) {
      const std::string& r = pool[rng() % pool.size()];
      if (u.Apply(r).empty()) applied += r + " ";
    }
    const std::string d = u.Describe();
    if (d.find('|') != std::string::npos) with_exceptions++;
    User v("fuzz");
    ASSERT_EQ(v.ApplyAll(d), "") << "rules: " << applied << "\ndescribed: " << d;
    const std::string diff = Differences(u, v);
    ASSERT_EQ(diff, "") << "rules: " << applied << "\ndescribed: " << d;
    // Describing is a fixed point.
    ASSERT_EQ(v.Describe(), d) << "rules: " << applied;
  }
  EXPECT_GT(with_exceptions, 500) << "too few sequences exercised subcommand rules";
}

// The describe pass at work on known cases: the shortest rule set Redis 7.0
// writes for them.
TEST(AclUserTest, DescribeKnownCases) {
  EXPECT_EQ(Make("on nopass ~* &* +@all").Describe(), "on nopass ~* &* +@all");
  EXPECT_EQ(Make("+@all -get").DescribeCommands(), "+@all -get");
  EXPECT_EQ(Make("-@all +get").DescribeCommands(), "-@all +get");
  EXPECT_EQ(Make("-@all +client|list").DescribeCommands(), "-@all +client|list");
  EXPECT_EQ(Make("-@all +client|kill").DescribeCommands(), "-@all +client|kill");
  EXPECT_EQ(Make("+@all -client|kill").DescribeCommands(), "+@all -client|kill");
  EXPECT_EQ(Make("on >x").Describe(), "on #" + User::HashPassword("x") + " resetchannels -@all");
}

// ---- ACL files.

using FileUsers = std::map<std::string, std::shared_ptr<const User>>;
constexpr char kNoChange[] =
    "WARNING: ACL errors detected, no change to the previously active ACL rules was performed";

TEST(AclFileTest, ParsesRedisFormat) {
  FileUsers users;
  EXPECT_EQ(ParseFile("/etc/u.acl",
                      "user alice on >pw ~* &* +@all\n\n  user   bob off -@all +get\r\n"
                      "user default on nopass ~* &* +@all",
                      &users),
            "");
  ASSERT_EQ(users.size(), 3u);
  EXPECT_TRUE(users["alice"]->CheckPassword("pw"));
  EXPECT_FALSE(users["bob"]->enabled());
  EXPECT_TRUE(users["bob"]->CanRun(Row("get"), ""));
  EXPECT_FALSE(users["bob"]->CanRun(Row("set"), ""));
  FileUsers none;
  EXPECT_EQ(ParseFile("/e", "", &none), "");
  EXPECT_TRUE(none.empty());
}

TEST(AclFileTest, RedisErrorTexts) {
  FileUsers users;
  EXPECT_EQ(ParseFile("/etc/u.acl", "user alice on\nfoo bar\n", &users),
            std::string("/etc/u.acl:2 should start with user keyword followed by the username. ") +
                kNoChange);
  users.clear();
  EXPECT_EQ(
      ParseFile("/p", "user\n", &users),
      std::string("/p:1 should start with user keyword followed by the username. ") + kNoChange);
  users.clear();
  EXPECT_EQ(ParseFile("/p", "user a on\nuser b on\nuser a off\n", &users),
            std::string("WARNING: Duplicate user 'a' found on line 3. ") + kNoChange);
  users.clear();
  EXPECT_EQ(
      ParseFile("/p", "user a on +nosuch\n", &users),
      std::string("/p:1: Error in applying operation '+nosuch': ") + kUnknown + ". " + kNoChange);
  users.clear();
  EXPECT_EQ(ParseFile("/p", "user a on bogus\n", &users),
            std::string("/p:1: ") + kSyntax + ". " + kNoChange);
  // Every line's error, in order, then the warning.
  users.clear();
  EXPECT_EQ(ParseFile("/p", "x\nuser a on\n\nuser b <nope\nuser a\n", &users),
            std::string("/p:1 should start with user keyword followed by the username. ") +
                "/p:4: The password you are trying to remove from the user does not exist. " +
                "WARNING: Duplicate user 'a' found on line 5. " + kNoChange);
}

// ---- The shared text and the registry over a real area.

std::unique_ptr<shm::AclArea> MakeArea() {
  std::string error;
  auto area = shm::AclArea::Create({.text_capacity = 1 << 16, .log_capacity = 16}, &error);
  EXPECT_NE(area, nullptr) << error;
  return area;
}

std::shared_ptr<const User> Shared(std::string name, std::string_view rules) {
  auto u = std::make_shared<User>(std::move(name));
  EXPECT_EQ(u->ApplyAll(rules), "") << rules;
  return u;
}

// A registry change standing for ACL SETUSER (a new user gets the next id).
std::string SetUser(Registry& r, const std::string& name, std::string_view rules) {
  return r.Modify([&](Users& users, uint64_t& next_id) -> std::string {
    auto it = users.find(name);
    auto u =
        it != users.end() ? std::make_shared<User>(*it->second.user) : std::make_shared<User>(name);
    if (std::string e = u->ApplyAll(rules); !e.empty()) return "ERR " + e;
    if (it != users.end()) {
      it->second.user = u;
    } else {
      users[name] = Entry{next_id++, u};
    }
    return "";
  });
}

TEST(AclRegistryTest, SerializeParseRoundTrip) {
  Users users;
  users["default"] = Entry{1, DefaultUser()};
  users["alice"] = Entry{7, Shared("alice", "on >pw %R~r:* +@read -get +client|list")};
  const std::string text = Serialize(users, 9);
  EXPECT_EQ(text.substr(0, text.find('\n')), "redhub-acl 1 9");
  Users back;
  uint64_t next = 0;
  ASSERT_EQ(Parse(text, &back, &next), "");
  EXPECT_EQ(next, 9u);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back["alice"].id, 7u);
  EXPECT_EQ(back["alice"].user->Describe(), users["alice"].user->Describe());
  EXPECT_EQ(Serialize(back, next), text);
  EXPECT_EQ(Parse("garbage", &back, &next),
            "the shared users do not start with \"redhub-acl 1 <next id>\"");
  EXPECT_EQ(Parse("redhub-acl 1 3\nnot-a-line\n", &back, &next),
            "a shared user line is not \"<id> <name> <rules>\"");
  EXPECT_EQ(Parse("redhub-acl 1 3\n2 bob on +futurecmd\n", &back, &next),
            "shared user bob: '+futurecmd': " + std::string(kUnknown));
  EXPECT_EQ(FileText(users).substr(0, 13), "user alice on");
}

TEST(AclRegistryTest, ChangesOnOneWorkerAreSeenByAnother) {
  auto area = MakeArea();
  ASSERT_EQ(Registry::Initialize(area.get(),
                                 [](Users& users, uint64_t&) {
                                   auto d = std::make_shared<User>(*users["default"].user);
                                   d->ApplyAll("resetpass >pw");
                                   users["default"].user = d;
                                   return std::string();
                                 }),
            "");
  Registry w1(area.get()), w2(area.get());
  EXPECT_TRUE(w1.Refresh());
  EXPECT_FALSE(w1.Refresh());  // nothing moved: one load
  EXPECT_TRUE(w2.Refresh());
  EXPECT_TRUE(w1.default_user().CheckPassword("pw"));
  EXPECT_FALSE(w1.default_user().nopass());
  const uint64_t default_id = w1.Find("default")->id;

  ASSERT_EQ(SetUser(w1, "alice", "on >a +@all ~*"), "");
  ASSERT_NE(w1.Find("alice"), nullptr);  // the writer sees it at once
  EXPECT_EQ(w2.Find("alice"), nullptr);  // the other at its next Refresh
  EXPECT_TRUE(w2.Refresh());
  ASSERT_NE(w2.Find("alice"), nullptr);
  EXPECT_EQ(w2.Find("alice")->id, w1.Find("alice")->id);
  EXPECT_TRUE(w2.Find("alice")->user->CheckPassword("a"));
  EXPECT_EQ(w2.generation(), w1.generation());

  // w1 is stale now that w2 changes things, and its own Modify still works
  // on the latest users, never on its old view.
  ASSERT_EQ(SetUser(w2, "bob", "on >b"), "");
  ASSERT_EQ(SetUser(w1, "carol", "on >c"), "");
  ASSERT_NE(w1.Find("bob"), nullptr);
  EXPECT_TRUE(w2.Refresh());
  EXPECT_EQ(w2.users().size(), 4u);
  // Ids are distinct and the default user's never changes.
  EXPECT_NE(w2.Find("bob")->id, w2.Find("carol")->id);
  EXPECT_NE(w2.Find("alice")->id, w2.Find("bob")->id);
  EXPECT_EQ(w2.Find("default")->id, default_id);

  // A refusal changes nothing anywhere.
  const uint64_t g = area->generation();
  EXPECT_EQ(SetUser(w1, "alice", "+nosuch"), "ERR '+nosuch': " + std::string(kUnknown));
  EXPECT_EQ(area->generation(), g);
  EXPECT_FALSE(w2.Refresh());
  EXPECT_TRUE(w2.Find("alice")->user->CanRun(Row("set"), ""));

  // Delete and create again: a new incarnation, a new id.
  const uint64_t old_id = w1.Find("alice")->id;
  ASSERT_EQ(w1.Modify([](Users& users, uint64_t&) {
    users.erase("alice");
    return std::string();
  }),
            "");
  EXPECT_TRUE(w2.Refresh());
  EXPECT_EQ(w2.Find("alice"), nullptr);
  ASSERT_EQ(SetUser(w2, "alice", "on >a2"), "");
  EXPECT_TRUE(w1.Refresh());
  ASSERT_NE(w1.Find("alice"), nullptr);
  EXPECT_NE(w1.Find("alice")->id, old_id);
  EXPECT_GT(w1.Find("alice")->id, old_id);
}

TEST(AclRegistryTest, ReplaceUsersKeepsDefaultsIdAndRenewsOthers) {
  Users users;
  uint64_t next_id = 1;
  users["default"] = Entry{next_id++, DefaultUser()};
  users["alice"] = Entry{next_id++, Shared("alice", "on")};
  const uint64_t default_id = users["default"].id, alice_id = users["alice"].id;
  FileUsers loaded = {{"default", Shared("default", "on >pw ~* &* +@all")},
                      {"alice", Shared("alice", "on >a")},
                      {"bob", Shared("bob", "on >b")}};
  ASSERT_EQ(ReplaceUsers(users, next_id, loaded), "");
  EXPECT_EQ(users["default"].id, default_id);
  EXPECT_TRUE(users["default"].user->CheckPassword("pw"));
  EXPECT_NE(users["alice"].id, alice_id);
  EXPECT_NE(users["bob"].id, users["alice"].id);
  EXPECT_GE(users["bob"].id, 3u);
  // A file without a default user: the default one, its id kept.
  ASSERT_EQ(ReplaceUsers(users, next_id, {{"carol", Shared("carol", "on")}}), "");
  ASSERT_EQ(users.size(), 2u);
  EXPECT_EQ(users["default"].id, default_id);
  EXPECT_EQ(users["default"].user->Describe(), DefaultUser()->Describe());
  EXPECT_EQ(users.count("alice"), 0u);
}

// A text this binary cannot read (another format) leaves a worker's users
// as they were, not "everyone may do anything".
TEST(AclRegistryTest, UnreadableSharedTextKeepsTheUsers) {
  auto area = MakeArea();
  ASSERT_EQ(Registry::Initialize(area.get(),
                                 [](Users& users, uint64_t&) {
                                   users["default"].user = Shared("default", "on >pw +@all ~*");
                                   return std::string();
                                 }),
            "");
  Registry w(area.get());
  ASSERT_TRUE(w.Refresh());
  std::string error;
  ASSERT_TRUE(area->Update(
      [](const std::string&, std::string* next, std::string*) {
        *next = "redhub-acl 9 garbage";
        return true;
      },
      &error));
  w.Refresh();
  EXPECT_FALSE(w.default_user().nopass());
  EXPECT_TRUE(w.default_user().CheckPassword("pw"));
  // Modify refuses to build on it.
  EXPECT_NE(SetUser(w, "x", "on"), "");
}

}  // namespace
}  // namespace redhub::worker::acl
