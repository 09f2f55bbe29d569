// The command table and the dispatcher against a real redis-server (7.0):
// every command's COMMAND INFO flags and ACL categories (subcommands' too),
// and the replies of SET, APPEND, INCR, GET and DEL at a full noeviction
// store, byte for byte. The daemon's side
// runs in process (CommandService::Dispatch over a real store).
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "detached_conn.h"
#include "server_process.h"
#include "store.h"

namespace redhub::worker {
namespace {

using redhub::integration::Command;
using redhub::integration::ConnectHiredis;
using redhub::integration::RawCommand;
using redhub::integration::Socket;
using redhub::integration::StartRedisServer;

// Our COMMAND INFO flags of a command, as "a b c".
std::string OurFlags(uint32_t flags) {
  std::string s;
  for (const auto& f : kCommandFlagNames) {
    if (flags & f.flag) s += (s.empty() ? "" : " ") + std::string(f.name);
  }
  return s;
}
std::string OurFlags(const CommandSpec& spec) { return OurFlags(spec.flags); }

// Our full ACL category set, as COMMAND INFO shows it: "@a @b".
std::string OurCategories(uint32_t categories) {
  std::string s;
  for (const auto& c : kAclCategoryNames) {
    if (categories & c.category) s += (s.empty() ? "@" : " @") + std::string(c.name);
  }
  return s;
}

// The strings of a reply's array element, as "a b c".
std::string Joined(const redisReply* array) {
  std::string s;
  for (size_t i = 0; i < array->elements; i++) {
    s += (s.empty() ? "" : " ") + std::string(array->element[i]->str, array->element[i]->len);
  }
  return s;
}

TEST(RedisParityTest, CommandFlagsAreRedisFlags) {
  auto redis = StartRedisServer();
  ASSERT_NE(redis, nullptr);
  auto c = ConnectHiredis(redis->port());
  ASSERT_NE(c, nullptr);
  for (const CommandSpec& spec : CommandService::Table()) {
    auto r = Command(c.get(), {"COMMAND", "INFO", spec.name});
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(r->elements, 1u) << spec.name;
    const redisReply* info = r->element[0];
    ASSERT_GE(info->elements, 6u) << spec.name;
    std::string theirs;
    for (size_t i = 0; i < info->element[2]->elements; i++) {
      theirs += (theirs.empty() ? "" : " ") + std::string(info->element[2]->element[i]->str);
    }
    EXPECT_EQ(OurFlags(spec), theirs) << spec.name;
    EXPECT_EQ(spec.arity, info->element[1]->integer) << spec.name;
  }
}

// Every row's full category set (declared plus derived from its flags), and
// every subcommand a row lists, flags and categories, against redis-server's
// COMMAND INFO: the command's 7th element, its subcommands' in the 10th.
TEST(RedisParityTest, AclCategoriesAreRedisCategories) {
  auto redis = StartRedisServer();
  ASSERT_NE(redis, nullptr);
  auto c = ConnectHiredis(redis->port());
  ASSERT_NE(c, nullptr);
  size_t subcommands_checked = 0;
  for (const CommandSpec& spec : CommandService::Table()) {
    auto r = Command(c.get(), {"COMMAND", "INFO", spec.name});
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(r->elements, 1u) << spec.name;
    const redisReply* info = r->element[0];
    ASSERT_EQ(info->elements, 10u) << spec.name;
    EXPECT_EQ(OurCategories(AclCategories(spec)), Joined(info->element[6])) << spec.name;
    const redisReply* subs = info->element[9];
    for (const SubcommandSpec& sub : spec.subcommands) {
      const std::string full = std::string(spec.name) + "|" + sub.name;
      const redisReply* theirs = nullptr;
      for (size_t i = 0; i < subs->elements; i++) {
        if (full == subs->element[i]->element[0]->str) theirs = subs->element[i];
      }
      ASSERT_NE(theirs, nullptr) << full << ": no such subcommand in redis-server";
      EXPECT_EQ(OurFlags(sub.flags), Joined(theirs->element[2])) << full;
      EXPECT_EQ(OurCategories(AclCategories(sub)), Joined(theirs->element[6])) << full;
      subcommands_checked++;
    }
  }
  EXPECT_GE(subcommands_checked, 13u);
}

// Both stores filled until SET answers OOM (noeviction), then the same
// commands: the same bytes back. Reads and DEL run; deny-oom writes that
// need memory are refused with Redis's error. Not compared: a deny-oom write
// that needs a few bytes (INCR): Redis refuses it before it runs, here it
// runs when its stripe still has room under the limit (sometimes).
TEST(RedisParityTest, FullStoreRepliesAsRedis) {
  auto redis = StartRedisServer();
  ASSERT_NE(redis, nullptr);
  Socket s = Socket::Connect(redis->port());
  ASSERT_TRUE(s.valid());
  const std::string name = "/redhub-parity-test-" + std::to_string(getpid());
  shm::StoreOptions o;
  o.name = name;
  o.maxmemory = 4ull << 20;
  o.stripes = 16;
  o.if_exists = shm::IfExists::kReplace;
  std::string error;
  auto store = shm::Store::Create(o, &error);
  ASSERT_NE(store, nullptr) << error;
  CommandService service(ServiceInfo{}, store.get());
  DetachedConn conn;
  auto ours = [&](const std::vector<std::string>& argv) {
    std::vector<std::string_view> args(argv.begin(), argv.end());
    resp::Command cmd;
    cmd.args = args;
    std::string out;
    resp::Writer w(out);
    service.Dispatch(conn, cmd, w);
    return out;
  };
  auto theirs = [&](const std::vector<std::string>& argv) { return RawCommand(s, argv); };

  // Redis's own use counts against its limit: a limit 4 MB above it.
  auto used = redhub::integration::InfoField(RawCommand(s, {"INFO", "memory"}), "used_memory");
  ASSERT_TRUE(used.has_value());
  const std::string limit = std::to_string(std::stoull(*used) + (4ull << 20));
  ASSERT_EQ(theirs({"CONFIG", "SET", "maxmemory", limit}), "+OK\r\n");
  ASSERT_EQ(theirs({"CONFIG", "SET", "maxmemory-policy", "noeviction"}), "+OK\r\n");

  const std::string oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
  for (const auto& run : {std::function<std::string(const std::vector<std::string>&)>(ours),
                          std::function<std::string(const std::vector<std::string>&)>(theirs)}) {
    ASSERT_EQ(run({"SET", "counter", "10"}), "+OK\r\n");
    ASSERT_EQ(run({"SET", "text", "abc"}), "+OK\r\n");
    // Large values, then smaller ones down to the smallest: then no write
    // that needs memory fits in the daemon's store either.
    for (size_t size : {1000, 100, 0}) {
      int i = 0;
      for (; i < 200000; i++) {
        std::string r = run({"SET", "fill:" + std::to_string(size) + ":" + std::to_string(i),
                             std::string(size, 'x')});
        if (r != "+OK\r\n") {
          ASSERT_EQ(r, oom);
          break;
        }
      }
      ASSERT_LT(i, 200000);
    }
  }
  const std::vector<std::vector<std::string>> same = {
      {"SET", "new", std::string(100000, 'n')},
      {"APPEND", "text", std::string(100000, 'a')},
      {"GET", "counter"},
      {"GET", "text"},
      {"GET", "nokey"},
      {"DEL", "fill:1000:0"},
  };
  for (const auto& argv : same) {
    EXPECT_EQ(ours(argv), theirs(argv)) << argv[0] << " " << argv[1];
  }
  store.reset();
  shm::Store::Remove(name);
}

}  // namespace
}  // namespace redhub::worker
