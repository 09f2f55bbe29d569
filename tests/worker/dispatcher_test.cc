// CommandService::Dispatch's checks, one test each, over a real store and
// counter area (segments named with the pid, removed at the end), without
// an event loop: unknown command, arity, MULTI, deny-oom, loading, errors
// counted by the writer's hook, and the flags COMMAND INFO reports.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "counters.h"
#include "detached_conn.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::worker {
namespace {

namespace slots = shm::slots;

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(64ull << 20); }
  void TearDown() override {
    service_.reset();
    store_.reset();
    area_.reset();
    shm::Store::Remove(name_);
    shm::CounterArea::Remove(name_ + "-stats");
  }

  void Open(uint64_t maxmemory) {
    TearDown();
    static int n = 0;
    name_ = "/redhub-dispatcher-test-" + std::to_string(getpid()) + "-" + std::to_string(++n);
    std::string error;
    shm::StoreOptions o;
    o.name = name_;
    o.maxmemory = maxmemory;
    o.stripes = 16;
    o.if_exists = shm::IfExists::kReplace;
    store_ = shm::Store::Create(o, &error);
    ASSERT_NE(store_, nullptr) << error;
    shm::CounterAreaOptions co;
    co.blocks = 4;
    co.counters = slots::kSlots;
    co.gauges = slots::kGauges;
    area_ = shm::CounterArea::Create(name_ + "-stats", co, &error);
    ASSERT_NE(area_, nullptr) << error;
    CommandService::LabelCounters(area_.get());
    service_ = std::make_unique<CommandService>(ServiceInfo{}, store_.get());
    service_->set_counters(area_.get(), area_->Claim(getpid()));
  }

  // The reply's exact bytes.
  std::string Run(std::vector<std::string> argv) {
    std::vector<std::string_view> args(argv.begin(), argv.end());
    resp::Command cmd;
    cmd.args = args;
    std::string out;
    resp::Writer w(out);
    service_->Dispatch(conn_, cmd, w);
    EXPECT_EQ(w.error_observer(), nullptr) << "the hook outlived Dispatch";
    return out;
  }

  // SETs until the store answers OOM, as a full noeviction store does.
  void Fill() {
    for (int i = 0;; i++) {
      std::string r = Run({"SET", "fill:" + std::to_string(i), std::string(1000, 'x')});
      if (r != "+OK\r\n") {
        ASSERT_EQ(r, "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
        return;
      }
    }
  }

  uint64_t Total(uint32_t slot) { return area_->Sum()[slot]; }
  uint64_t Calls(const char* name, uint32_t which) {
    auto c = static_cast<uint32_t>(CommandService::Lookup(name) - CommandService::Table().data());
    return Total(slots::CommandSlot(c, which));
  }

  std::string name_;
  std::unique_ptr<shm::Store> store_;
  std::unique_ptr<shm::CounterArea> area_;
  std::unique_ptr<CommandService> service_;
  DetachedConn conn_;
};

TEST_F(DispatcherTest, UnknownCommandIsRefusedWithRedisText) {
  EXPECT_EQ(Run({"NOSUCH", "a", "b"}),
            "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n");
  EXPECT_EQ(Run({"gett"}), "-ERR unknown command 'gett', with args beginning with: \r\n");
  EXPECT_EQ(Total(slots::kUnknownCommands), 2u);
  EXPECT_EQ(Total(slots::kErrorBase + 0), 2u);  // errorstat_ERR
}

// An HTTP request line or header (cross-protocol scripting) writes nothing,
// is no unknown command or error, and is counted, before any other check:
// even inside MULTI.
TEST_F(DispatcherTest, PostAndHostLinesAreAbortedUnanswered) {
  EXPECT_EQ(Run({"POST", "/", "HTTP/1.1"}), "");
  EXPECT_EQ(Run({"Host:", "127.0.0.1"}), "");
  EXPECT_EQ(Run({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(Run({"post"}), "");
  EXPECT_EQ(Total(slots::kCrossProtocolAborts), 3u);
  EXPECT_EQ(Total(slots::kUnknownCommands), 0u);
  EXPECT_EQ(Total(slots::kErrorReplies), 0u);
  EXPECT_EQ(Run({"postx"}), "-ERR unknown command 'postx', with args beginning with: \r\n");
}

TEST_F(DispatcherTest, WrongArityIsRefusedBeforeTheHandler) {
  EXPECT_EQ(Run({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(Run({"get", "a", "b"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(Run({"SET", "k"}), "-ERR wrong number of arguments for 'set' command\r\n");
  EXPECT_EQ(Run({"EXISTS", "k"}), ":0\r\n");  // -2: at least two
  // A refusal is an error, not a call of the command.
  EXPECT_EQ(Calls("get", slots::kCalls), 0u);
  EXPECT_EQ(Total(slots::kErrorReplies), 3u);
}

// Inside MULTI a command passes its checks and is queued (+QUEUED), not
// run; a refusal by any check (unknown, arity) is answered and flags the
// transaction, which EXEC then discards. MULTI, EXEC, DISCARD, WATCH and
// QUIT run inside (kRunsInMulti).
TEST_F(DispatcherTest, InsideMultiCommandsAreQueuedAndRefusalsFlagTheTransaction) {
  EXPECT_EQ(Run({"MULTI"}), "+OK\r\n");
  EXPECT_NE(conn_.session_flags() & kSessionInMulti, 0u);
  EXPECT_EQ(Run({"SET", "k", "v"}), "+QUEUED\r\n");
  EXPECT_EQ(Run({"NOSUCH"}), "-ERR unknown command 'NOSUCH', with args beginning with: \r\n");
  EXPECT_EQ(Run({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(Run({"multi"}), "-ERR MULTI calls can not be nested\r\n");
  EXPECT_EQ(Run({"WATCH", "k"}), "-ERR WATCH inside MULTI is not allowed\r\n");
  EXPECT_EQ(Run({"exec"}), "-EXECABORT Transaction discarded because of previous errors.\r\n");
  EXPECT_EQ(conn_.session_flags() & kSessionInMulti, 0u);
  EXPECT_EQ(Run({"GET", "k"}), "$-1\r\n");  // nothing ran
  EXPECT_EQ(Calls("set", slots::kCalls), 0u);

  // Without a refusal the queue runs at EXEC, each command counted as a
  // call, an error inside answered in its place and the rest still run.
  EXPECT_EQ(Run({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(Run({"SET", "k", "v"}), "+QUEUED\r\n");
  EXPECT_EQ(Run({"INCR", "k"}), "+QUEUED\r\n");
  EXPECT_EQ(Run({"GET", "k"}), "+QUEUED\r\n");
  EXPECT_EQ(Calls("set", slots::kCalls), 0u);
  EXPECT_EQ(Run({"EXEC"}),
            "*3\r\n+OK\r\n-ERR value is not an integer or out of range\r\n$1\r\nv\r\n");
  EXPECT_EQ(Calls("set", slots::kCalls), 1u);
  EXPECT_EQ(Calls("incr", slots::kFailed), 1u);
  EXPECT_EQ(Run({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(Run({"SET", "k", "w"}), "+QUEUED\r\n");
  EXPECT_EQ(Run({"DISCARD"}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "k"}), "$1\r\nv\r\n");
  Run({"MULTI"});
  EXPECT_EQ(Run({"QUIT"}), "+OK\r\n");  // runs inside MULTI, as in Redis
}

// At the limit the store refuses what does not fit and runs what needs no
// memory (no pre-check fires: replies as before). Over it (maxmemory lowered
// below the use, noeviction) every deny-oom command is refused before it
// runs, as Redis does; other writes and reads run.
TEST_F(DispatcherTest, DenyOomCommandsAreRefusedOverMaxmemory) {
  Open(4ull << 20);
  ASSERT_EQ(Run({"SET", "counter", "10"}), "+OK\r\n");
  Fill();
  const std::string oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
  EXPECT_EQ(Run({"SET", "new", std::string(100000, 'x')}), oom);  // the store's refusal
  EXPECT_EQ(Run({"SETNX", "counter", "1"}), ":0\r\n");            // needs no memory: runs
  EXPECT_FALSE(store_->OverMaxmemory());

  store_->SetMaxmemory(2ull << 20);
  ASSERT_TRUE(store_->OverMaxmemory());
  EXPECT_EQ(Run({"SETNX", "counter", "1"}), oom);  // refused before it runs
  EXPECT_EQ(Run({"INCR", "counter"}), oom);
  EXPECT_EQ(Run({"SET", "counter", "1", "BADOPTION"}), oom);  // before its own syntax check
  EXPECT_EQ(Calls("setnx", slots::kCalls), 1u);               // only the run before
  EXPECT_EQ(Run({"GET", "counter"}), "$2\r\n10\r\n");
  EXPECT_EQ(Run({"EXPIRE", "counter", "100"}), ":1\r\n");  // write, not deny-oom
  EXPECT_EQ(Run({"DEL", "counter"}), ":1\r\n");
  EXPECT_EQ(Total(slots::kErrorBase + 1), 5u);  // errorstat_OOM: the fill's, the SET's, 3 refused
}

TEST_F(DispatcherTest, WhileLoadingOnlyLoadingCommandsRun) {
  service_->set_loading(true);
  const std::string loading = "-LOADING Redis is loading the dataset in memory\r\n";
  EXPECT_EQ(Run({"GET", "k"}), loading);
  EXPECT_EQ(Run({"SET", "k", "v"}), loading);
  EXPECT_EQ(Run({"PING"}), loading);  // as Redis: PING has no loading flag
  EXPECT_EQ(Run({"ECHO", "x"}), "$1\r\nx\r\n");
  EXPECT_EQ(Run({"CLIENT", "ID"}), ":" + std::to_string(conn_.id()) + "\r\n");  // subcommands
  EXPECT_EQ(Run({"INFO", "cluster"}), "$30\r\n# Cluster\r\ncluster_enabled:0\r\n\r\n");
  EXPECT_EQ(Total(slots::kErrorOther), 3u);  // LOADING is not one of the named kinds
  service_->set_loading(false);
  EXPECT_EQ(Run({"GET", "k"}), "$-1\r\n");
}

// Every error reply is counted once, by its first word, whoever writes it
// (a handler or a check), and a command whose reply had an error is a
// failed call; a reply without one is not.
TEST_F(DispatcherTest, ErrorsAreCountedByTheWriterHook) {
  ASSERT_EQ(Run({"SET", "text", "abc"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCR", "text"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"HELLO", "4"}), "-NOPROTO unsupported protocol version\r\n");
  EXPECT_EQ(Run({"HELLO", "2", "AUTH", "x", "y"}),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  EXPECT_EQ(Run({"GET", "text"}), "$3\r\nabc\r\n");
  EXPECT_EQ(Run({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(Total(slots::kErrorReplies), 4u);
  EXPECT_EQ(Total(slots::kErrorBase + 0), 2u);  // ERR
  EXPECT_EQ(Total(slots::kErrorBase + 2), 1u);  // NOPROTO
  EXPECT_EQ(Total(slots::kErrorBase + 3), 1u);  // WRONGPASS
  EXPECT_EQ(Calls("incr", slots::kFailed), 1u);
  EXPECT_EQ(Calls("hello", slots::kFailed), 2u);
  EXPECT_EQ(Calls("get", slots::kCalls), 1u);
  EXPECT_EQ(Calls("get", slots::kFailed), 0u);
  EXPECT_EQ(Calls("set", slots::kFailed), 0u);
  const std::string info = Run({"INFO", "errorstats"});
  EXPECT_NE(info.find("errorstat_ERR:count=2\r\n"), std::string::npos) << info;
  EXPECT_NE(info.find("errorstat_NOPROTO:count=1\r\n"), std::string::npos) << info;
}

// Redis 7.0's flags and ACL categories, in its order; a command with
// subcommands shows no flags and is @slow only.
TEST_F(DispatcherTest, CommandInfoShowsRedisFlags) {
  auto info = [](const char* name, int arity, std::vector<const char*> flags, int first, int last,
                 int step, std::vector<const char*> categories) {
    std::string s = "*10\r\n$" + std::to_string(strlen(name)) + "\r\n" + name +
                    "\r\n:" + std::to_string(arity) + "\r\n*" + std::to_string(flags.size()) +
                    "\r\n";
    for (const char* f : flags) s += std::string("+") + f + "\r\n";
    s += ":" + std::to_string(first) + "\r\n:" + std::to_string(last) +
         "\r\n:" + std::to_string(step) + "\r\n*" + std::to_string(categories.size()) + "\r\n";
    for (const char* c : categories) s += std::string("+") + c + "\r\n";
    return s + "*0\r\n*0\r\n*0\r\n";
  };
  EXPECT_EQ(Run({"COMMAND", "INFO", "set", "get", "client", "exec", "hello", "nosuch"}),
            "*6\r\n" +
                info("set", -3, {"write", "denyoom"}, 1, 1, 1, {"@write", "@string", "@slow"}) +
                info("get", 2, {"readonly", "fast"}, 1, 1, 1, {"@read", "@string", "@fast"}) +
                info("client", -2, {}, 0, 0, 0, {"@slow"}) +
                info("exec", 1, {"noscript", "loading", "stale", "skip_slowlog"}, 0, 0, 0,
                     {"@slow", "@transaction"}) +
                info("hello", -1, {"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"},
                     0, 0, 0, {"@fast", "@connection"}) +
                "$-1\r\n");
}

// Redis's derivation from flags (setImplicitACLCategories), and the lookup
// by name that ACL CAT uses.
TEST(AclCategoryTest, ImplicitCategoriesAndLookup) {
  EXPECT_EQ(ImplicitAclCategories(0, 0), kAclSlow);
  EXPECT_EQ(ImplicitAclCategories(kWrite | kFast, kAclString), kAclWrite | kAclString | kAclFast);
  EXPECT_EQ(ImplicitAclCategories(kReadOnly, kAclKeyspace), kAclKeyspace | kAclRead | kAclSlow);
  // A read-only script command is not @read (Redis 7.0's EVAL_RO).
  EXPECT_EQ(ImplicitAclCategories(kReadOnly, kAclScripting), kAclScripting | kAclSlow);
  EXPECT_EQ(ImplicitAclCategories(kAdmin, 0), kAclAdmin | kAclDangerous | kAclSlow);
  EXPECT_EQ(ImplicitAclCategories(kPubSub, 0), kAclPubSub | kAclSlow);
  // Declared @fast without the flag is not also @slow.
  EXPECT_EQ(ImplicitAclCategories(0, kAclFast), kAclFast);

  EXPECT_EQ(LookupAclCategory("read"), kAclRead);
  EXPECT_EQ(LookupAclCategory("SortedSet"), kAclSortedSet);
  EXPECT_EQ(LookupAclCategory("SCRIPTING"), kAclScripting);
  EXPECT_EQ(LookupAclCategory("@read"), 0u);  // as Redis: "Unknown category"
  EXPECT_EQ(LookupAclCategory("rea"), 0u);
  EXPECT_EQ(LookupAclCategory(""), 0u);
  uint32_t all = 0;
  for (const auto& c : kAclCategoryNames) {
    EXPECT_EQ(LookupAclCategory(c.name), c.category) << c.name;
    EXPECT_EQ(all & c.category, 0u) << c.name;
    all |= c.category;
  }
  EXPECT_EQ(std::size(kAclCategoryNames), 21u);
}

// The table is dense by slot, and each slot keeps its command (a binary
// upgrade keeps the counter blocks): the first and last of each family.
TEST_F(DispatcherTest, TableSlotsAreStable) {
  const auto& table = CommandService::Table();
  // A new command takes the next slot; none moves (the counter blocks'
  // layout across an upgrade).
  ASSERT_EQ(table.size(), 61u);
  const std::pair<uint32_t, const char*> pinned[] = {
      {0, "client"},  {1, "command"}, {2, "config"},  {5, "info"},    {10, "time"},
      {11, "append"}, {31, "substr"}, {32, "dbsize"}, {53, "unlink"}, {54, "discard"},
      {58, "watch"},  {59, "auth"},   {60, "acl"},
  };
  for (const auto& [slot, name] : pinned) {
    EXPECT_STREQ(table[slot].name, name);
    EXPECT_EQ(table[slot].slot, slot);
  }
}

}  // namespace
}  // namespace redhub::worker
