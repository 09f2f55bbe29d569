// CommandService: runs the command table (command_table.h) for one worker's
// event loop over the shared store. Its Dispatch (dispatcher.cc) is the one
// choke point every request passes: the checks a command's row asks for, in
// Redis's processCommand order, then the handler, then the per-command
// figures; every error reply on the way is counted by the reply writer's
// error hook (resp::Writer::set_error_observer), not by reading the reply.
#pragma once

#include <redhub/server.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "acl_registry.h"
#include "command_table.h"
#include "cycle_clock.h"
#include "prefetch.h"
#include "version.h"

namespace redhub::shm {
class Store;
class CounterArea;
class CounterBlock;
class AclArea;
class ScriptArea;
}  // namespace redhub::shm

namespace redhub::worker {

struct Session;  // auth.cc
class MultiState;

// Conn::user(), or "default" while it is empty.
const std::string& UserName(const Conn& conn);

// Identity and settings the commands report (INFO, HELLO, CONFIG GET).
// CONFIG GET's parameters, names and values, in reply order. The master
// renders them from its settings table (master/settings.h ConfigParameters);
// the worker only reports them.
using ConfigParameterList = std::vector<std::pair<std::string, std::string>>;

struct ServiceInfo {
  std::string version = kVersion;
  std::string bind;
  uint16_t port = 0;
  int worker_slot = 0;
  int master_pid = 0;  // 0 outside redhubd: INFO's CPU is then this process's
  std::string config_file;
  std::string executable;
  // As the master's configuration stood at fork(), replaced at each reload
  // (CommandService::set_config_parameters).
  ConfigParameterList config_parameters;
};

// Counters of this worker that INFO reports next to the event loop's.
struct CommandStats {
  uint64_t keyspace_hits = 0;
  uint64_t keyspace_misses = 0;
};

class CommandService {
 public:
  // store: the shared-memory store every worker serves (the master created
  // it before forking); it must outlive the service.
  CommandService(ServiceInfo info, shm::Store* store);
  ~CommandService();

  // The handlers to give the event loop.
  Handlers MakeHandlers();
  const ServiceInfo& info() const { return info_; }
  // Also where protected-mode is read from (a live setting).
  void set_config_parameters(ConfigParameterList p);

  // nullptr for an unknown command.
  static const CommandSpec* Lookup(std::string_view name) { return LookupCommand(name); }
  static const std::vector<CommandSpec>& Table() { return CommandTable(); }

  // Checks, runs and accounts one request (dispatcher.cc).
  Action Dispatch(Conn& conn, const resp::Command& cmd, resp::Writer& w);
  // One command of an EXEC: its checks ran when it was queued, except the
  // user's rules, checked again as Redis does (they may have changed
  // since); then the handler, counted as a call of its own.
  void RunQueued(Conn& conn, const CommandSpec& spec, std::span<const std::string_view> args,
                 resp::Writer& w);
  // The connection's transaction state (multi_state.h), made at first use.
  MultiState& MultiOf(Conn& conn);
  // One command of a script's redis.call, after the script host's checks
  // (script_host.cc): the handler, counted as a call of its own.
  void RunFromScript(Conn& conn, const CommandSpec& spec, std::span<const std::string_view> args,
                     resp::Writer& w);
  // The user's rules for a command a script calls: false if allowed, else
  // the refusal is logged (context "lua"), counted and written in Redis
  // 7.0's scriptVerifyACL words (auth.cc).
  bool RefuseInScript(Conn& conn, const CommandSpec& spec, std::span<const std::string_view> args,
                      resp::Writer& w);
  // The shared scripts and function libraries (shm/script_area.h), which
  // the scripting commands will read through a ScriptCache.
  void set_script_area(shm::ScriptArea* area) { script_area_ = area; }
  shm::ScriptArea* script_area() const { return script_area_; }
  // While a script runs (nesting depth): the ACL LOG's context is "lua".
  int script_depth_ = 0;

  shm::Store& store() { return *store_; }
  CommandStats stats;

  // While the dataset loads, commands without the loading flag are refused
  // with Redis's -LOADING error (processCommand). Nothing loads yet: the
  // setter is where a loader will say so.
  void set_loading(bool loading) { loading_ = loading; }
  bool loading() const { return loading_; }

  // The daemon's counter blocks (shm/counters.h): this worker writes its
  // own block; INFO sums all of them. Without them (an embedded service)
  // INFO reports this process only, and no error or call is counted.
  void set_counters(shm::CounterArea* area, shm::CounterBlock* block) {
    area_ = area;
    block_ = block;
  }
  // Copies the event loop's figures into this worker's block (per-command
  // figures are written as commands run). Called every tick and before INFO.
  void PublishLoopStats();
  shm::CounterArea* counter_area() const { return area_; }
  // Every slot of shm/worker_counters.h summed over all workers (this
  // worker's own figures first published).
  std::vector<uint64_t> Totals();
  // The master labels the per-command slots with the table's names.
  static void LabelCounters(shm::CounterArea* area);

  double started_at = 0;

  // Access control (auth.cc). The shared users (shm/acl_area.h): without
  // them (an embedded service) every connection may run everything.
  void set_acl_area(shm::AclArea* area);
  acl::Registry* acl() { return acl_.get(); }
  shm::AclArea* acl_area() const { return acl_area_; }
  // Protected mode (Redis's): while the default user has no password, only
  // loopback and unix-socket clients are served.
  void set_protected_mode(bool on) { protected_mode_ = on; }
  // AUTH and HELLO AUTH: "" once `conn` is authenticated as `user`, else
  // the error reply (WRONGPASS), counted and in the ACL LOG. `command` is
  // the command's name as typed (the log's object).
  std::string Authenticate(Conn& conn, std::string_view user, std::string_view password,
                           std::string_view command);
  // Redis's c->authenticated (always, without users).
  bool Authenticated(const Conn& conn) const;
  bool DefaultUserHasNoPassword() const;
  // An ACL LOG entry for `conn` (reason "command", "key", "channel", "auth").
  void LogAclDenial(Conn& conn, const char* reason, std::string_view object, std::string_view user,
                    std::string_view command);
  // A change of the users (ACL SETUSER, DELUSER, LOAD) through the shared
  // area; then this worker's connections are re-checked at once (the other
  // workers' at their next command or tick). "" or the error reply.
  std::string ModifyUsers(const acl::Registry::ModifyFn& fn);
  // Re-reads the users if any process changed them, and closes the
  // connections of users removed or disabled (every command and tick).
  void RefreshUsers();

 private:
  friend struct DispatchChecks;  // dispatcher.cc
  friend struct Session;

  Action OnOpen(Conn& conn, resp::Writer& w);
  Session* SessionOf(Conn& conn);
  bool Resolve(Session* s);
  void CheckSessions();
  // The dispatcher's steps (auth.cc): true when they refused the command.
  bool RefuseUnauthenticated(Conn& conn, const CommandSpec& spec, resp::Writer& w);
  bool RefuseByAcl(Conn& conn, const CommandSpec& spec, std::span<const std::string_view> args,
                   resp::Writer& w);
  // The user's rules allow the command as of now (RunQueued); if not, the
  // refusal is logged, counted and written (Redis's execCommand text).
  bool StillAllowed(Conn& conn, const CommandSpec& spec, std::span<const std::string_view> args,
                    resp::Writer& w);

  // The writer's error hook while Dispatch runs: counts `error` (the text
  // after '-') by its first word (INFO errorstats, total_error_replies).
  static void OnErrorReply(void* self, std::string_view error);
  // Per-command figures of a command that ran from t0 to t1 (clock ticks).
  void RecordCall(Conn& conn, const CommandSpec& spec, std::span<const std::string_view> args,
                  uint64_t t0, uint64_t t1, bool failed);
  void LogSlow(Conn& conn, std::span<const std::string_view> args, int64_t micros);
  // The time the store judges expiry by (Store::set_now_ms): when the loop
  // read the request's batch.
  void SetStoreClock(const ServerView& server);

  ServiceInfo info_;
  const ServerView* server_ = nullptr;  // Handlers::on_start
  shm::Store* store_;
  shm::CounterArea* area_ = nullptr;
  shm::CounterBlock* block_ = nullptr;
  bool loading_ = false;
  uint64_t error_replies_ = 0;  // counted by OnErrorReply
  CycleClock clock_;
  uint64_t clock_mark_ = 0;   // when the last command ended
  uint64_t clock_batch_ = 0;  // in which of the loop's batches
  const CommandSpec* table_;  // Table().data()
  GetPrefetcher prefetcher_;
  // The last command name looked up, as received, and its row.
  char last_name_[24];
  size_t last_name_len_ = 0;
  const CommandSpec* last_spec_ = nullptr;
  std::unique_ptr<acl::Registry> acl_;
  shm::AclArea* acl_area_ = nullptr;
  bool protected_mode_ = false;
  shm::ScriptArea* script_area_ = nullptr;
  Session* sessions_ = nullptr;  // every connection's, newest first
  Conn* last_conn_ = nullptr;    // SessionOf's last answer (cleared by ~Session)
  Session* last_session_ = nullptr;
};

}  // namespace redhub::worker
