// CommandService::Dispatch: the one choke point between a parsed request and
// its handler. Everything a command needs checked before it runs is checked
// here, from its row (command_table.h), as one step each of kChecks below,
// in Redis 7.0's processCommand order (src/server.c; Dragonfly's
// VerifyCommandState is the same idea). A step that refuses writes Redis's
// error and the command does not run. Then the handler runs, and its figures
// go into this worker's counter block.
//
// Errors are counted by the reply writer's hook (OnErrorReply, set for the
// length of Dispatch): refusals and handlers' errors alike, by their first
// word, as Redis's afterErrorReply does.
#include <cstring>
#include <ctime>

#include "acl_registry.h"
#include "command_util.h"
#include "counters.h"
#include "log.h"
#include "multi_state.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::worker {

// One request on its way through the checks.
struct Request {
  CommandService& service;
  Conn& conn;
  std::span<const std::string_view> args;
  const CommandSpec* spec;  // nullptr: unknown
  resp::Writer& w;
};

// The steps, each true when it refused the command (its error written).
struct DispatchChecks {
  // An HTTP request sent to the RESP port (a browser page posting to a
  // developer's local daemon: cross-protocol scripting) arrives as inline
  // commands "POST / HTTP/1.1" and "Host: ...". As Redis's processCommand
  // (securityWarningCommand, freeClientAsync), the connection is closed at
  // once and what it was not yet sent is dropped (a GET request line's error
  // reply), nothing after it runs (the body's commands), and it is logged
  // at most once a minute. Neither name is a command, so a known command
  // never gets past the first test.
  static bool CrossProtocol(const Request& r) {
    if (r.spec != nullptr) [[likely]] {
      return false;
    }
    const std::string_view name = r.args[0];
    if (!EqualsNoCase(name, "post") && !EqualsNoCase(name, "host:")) return false;
    static double last_logged = -1e9;
    const double now = r.conn.server().now();
    if (now - last_logged > 60) {
      last_logged = now;
      LOG_WARNING(
          "Possible SECURITY ATTACK detected. It looks like somebody is sending POST or Host: "
          "commands to Redis. This is likely due to an attacker attempting to use Cross "
          "Protocol Scripting to compromise your Redis instance. Connection aborted.");
    }
    if (r.service.block_ != nullptr) r.service.block_->Add(shm::slots::kCrossProtocolAborts, 1);
    r.conn.Abort();
    return true;
  }

  static bool Unknown(const Request& r) {
    if (r.spec != nullptr) [[likely]] {
      return false;
    }
    UnknownCommand(r.w, r.args);
    if (r.service.block_ != nullptr) r.service.block_->Add(shm::slots::kUnknownCommands, 1);
    return true;
  }

  // Redis's convention: arity N exactly N arguments, -N at least N. A
  // command with subcommands checks each subcommand's own in its handler
  // (until subcommand rows exist: CommandSpec::subcommand_flags).
  static bool Arity(const Request& r) {
    if (!ArityAllows(r.spec->arity, r.args.size())) [[unlikely]] {
      WrongArity(r.w, r.spec->name);
      return true;
    }
    return false;
  }

  // Redis's authRequired: while the default user needs a password, a
  // connection that has not authenticated may run only the kNoAuth rows
  // (AUTH, HELLO, QUIT). After Unknown and Arity, as Redis 7.0 answers
  // those first. Also where this worker notices that the users changed
  // (one load of a shared word).
  static bool Auth(const Request& r) {
    if (r.service.acl_ == nullptr) return false;  // an embedded service: no users
    return r.service.RefuseUnauthenticated(r.conn, *r.spec, r.w);
  }

  // The user's command rules, then its key patterns (Redis's
  // ACLCheckAllPerm): -NOPERM, counted and in the ACL LOG. A user that may
  // do everything (the default user, unless changed) costs a test of one
  // cached word.
  static bool Acl(const Request& r) {
    if (r.service.acl_ == nullptr) return false;
    return r.service.RefuseByAcl(r.conn, *r.spec, r.args, r.w);
  }

  // Redis refuses a deny-oom command before it runs while used memory is
  // over maxmemory and nothing can be evicted. The store refuses a write
  // that does not fit when it makes room (Store::Txn::Put, kOom), so its use
  // reaches maxmemory but never passes it, unless maxmemory is lowered below
  // it (a reload): then, under noeviction, this refuses every deny-oom
  // command, with Redis's error, as Redis does, even those that would need
  // no new memory (SETNX of an existing key). Below the limit nothing is
  // refused here, so a full store answers exactly as before: the write that
  // does not fit gets the error from its handler, and one that needs no
  // memory runs. Reads one word of the segment's header.
  static bool DenyOom(const Request& r) {
    if ((r.spec->check_flags() & kDenyOom) == 0) return false;
    if (!r.service.store_->OverMaxmemory()) [[likely]] {
      return false;
    }
    r.w.Error(kErrOom);
    return true;
  }

  static bool Loading(const Request& r) {
    if (!r.service.loading_ || (r.spec->check_flags() & kLoading) != 0) [[likely]] {
      return false;
    }
    r.w.Error(kErrLoading);
    return true;
  }
};

namespace {

using Check = bool (*)(const Request&);

// The checks, in order; the first that refuses ends the request. Where the
// checks still to come belong, as processCommand orders them:
template <Check... kSteps>
bool Refused(const Request& r) {
  return (kSteps(r) || ...);
}
constexpr auto kChecks = Refused<DispatchChecks::CrossProtocol,
                                 DispatchChecks::Unknown,  //
                                 DispatchChecks::Arity,
                                 DispatchChecks::Auth,  // -NOAUTH unless the row is kNoAuth
                                 DispatchChecks::Acl,   // -NOPERM
                                 // kNoMulti commands inside MULTI
                                 DispatchChecks::DenyOom,
                                 // a RESP2 connection in pub/sub context: only kPubSub
                                 // rows (and PING, QUIT, RESET) run
                                 DispatchChecks::Loading
                                 // a script running too long: -BUSY unless kAllowBusy
                                 >;
// Then, inside MULTI, the command is queued (+QUEUED) instead of run,
// unless kRunsInMulti (Dispatch): Redis's queueMultiCommand. A refusal by
// any check inside MULTI flags the transaction (Redis's flagTransaction),
// so that EXEC discards it with EXECABORT.

// Commands that ran this long are logged (and are in SLOWLOG).
constexpr uint64_t kLongCommandMicros = 1000000;

// Sets the writer's error hook for the length of a Dispatch, and restores
// what was there (none: the event loop's own errors, a protocol error, are
// not counted, as before).
class ErrorHookScope {
 public:
  ErrorHookScope(resp::Writer& w, resp::Writer::ErrorObserver fn, void* ctx)
      : w_(w), fn_(w.error_observer()), ctx_(w.error_context()) {
    w.set_error_observer(fn, ctx);
  }
  ~ErrorHookScope() { w_.set_error_observer(fn_, ctx_); }

 private:
  resp::Writer& w_;
  resp::Writer::ErrorObserver fn_;
  void* ctx_;
};

}  // namespace

Action CommandService::Dispatch(Conn& conn, const resp::Command& cmd, resp::Writer& w) {
  ErrorHookScope hook(w, block_ != nullptr ? &OnErrorReply : nullptr, this);
  // Pipelines mostly repeat one command: the name as last received (any
  // case) maps to the same row without hashing it again.
  std::string_view name = cmd.args[0];
  const CommandSpec* spec;
  if (last_spec_ != nullptr && name.size() == last_name_len_ &&
      memcmp(name.data(), last_name_, name.size()) == 0) {
    spec = last_spec_;
  } else {
    spec = Lookup(name);
    if (spec != nullptr && name.size() <= sizeof(last_name_)) {
      memcpy(last_name_, name.data(), name.size());
      last_name_len_ = name.size();
      last_spec_ = spec;
    }
  }
  if (kChecks(Request{*this, conn, cmd.args, spec, w})) [[unlikely]] {
    clock_batch_ = 0;  // the next command reads the clock itself
    if (InMulti(conn)) MultiOf(conn).dirty = true;
    return Action::kNone;
  }
  // Outside MULTI: one well-predicted branch on a word of the connection.
  if (InMulti(conn) && (spec->flags & kRunsInMulti) == 0) [[unlikely]] {
    MultiOf(conn).Queue(spec, cmd.args);
    w.String("QUEUED");
    clock_batch_ = 0;
    return Action::kNone;
  }

  CommandContext ctx{conn, cmd.args, w, *this};
  // Expiry is judged by the time this request's batch was read, and reset
  // after so nothing else sees a stale time. In a batch (the event loop's
  // handlers) the batch set it once.
  struct NowScope {
    shm::Store* store;
    bool active;
    ~NowScope() {
      if (active) store->set_now_ms(0);
    }
  } now_scope{store_, !store_->in_batch()};
  if (now_scope.active) SetStoreClock(conn.server());
  if (block_ == nullptr) return spec->handler(ctx);
  // In a pipelined batch the clock read that ends one command starts the
  // next (a read costs ~10 ns on a VM, a GET ~100), so a command's time
  // includes parsing it; the first command of a batch starts its own.
  const uint64_t errors_before = error_replies_;
  const uint64_t batch = conn.server().batch();
  uint64_t t0 = batch != 0 && batch == clock_batch_ ? clock_mark_ : clock_.Now();
  Action action = spec->handler(ctx);
  uint64_t t1 = clock_.Now();
  clock_mark_ = t1;
  clock_batch_ = batch;
  prefetcher_.AddCommand(t1 - t0);
  RecordCall(conn, *spec, cmd.args, t0, t1, error_replies_ != errors_before);
  return action;
}

void CommandService::RunQueued(Conn& conn, const CommandSpec& spec,
                               std::span<const std::string_view> args, resp::Writer& w) {
  if (acl_ != nullptr && !StillAllowed(conn, spec, args, w)) return;
  RunFromScript(conn, spec, args, w);
}

void CommandService::RunFromScript(Conn& conn, const CommandSpec& spec,
                                   std::span<const std::string_view> args, resp::Writer& w) {
  CommandContext ctx{conn, args, w, *this};
  if (block_ == nullptr) {
    spec.handler(ctx);
    return;
  }
  const uint64_t errors_before = error_replies_;
  const uint64_t t0 = clock_.Now();
  spec.handler(ctx);
  const uint64_t t1 = clock_.Now();
  RecordCall(conn, spec, args, t0, t1, error_replies_ != errors_before);
}

// Per-command figures for INFO commandstats and the metrics, written
// straight into this worker's block.
void CommandService::RecordCall(Conn& conn, const CommandSpec& spec,
                                std::span<const std::string_view> args, uint64_t t0, uint64_t t1,
                                bool failed) {
  namespace s = shm::slots;
  const auto c = static_cast<uint32_t>(&spec - table_);
  if (c >= s::kMaxCommands) return;
  const uint64_t us = clock_.Nanos(t1 - t0) / 1000;
  block_->Add(s::CommandSlot(c, s::kCalls), 1);
  block_->Add(s::CommandSlot(c, s::kMicros), us);
  if (int64_t slower = area_->SlowLogThreshold();
      slower >= 0 && static_cast<int64_t>(us) >= slower) {
    LogSlow(conn, args, static_cast<int64_t>(us));
  }
  // A command this long kept every other client of this worker waiting
  // (the watchdog lets it run: it made progress). Operators see it here as
  // well as in SLOWLOG.
  if (us >= kLongCommandMicros) {
    LOG_WARNING("Long command: %s ran for %.2f s (client id=%llu addr=%s)", spec.name,
                static_cast<double>(us) / 1e6, static_cast<unsigned long long>(conn.id()),
                conn.remote_addr().c_str());
  }
  uint32_t b = 0;
  while (b < s::kBuckets && us > s::kBucketMicros[b]) b++;
  if (b < s::kBuckets) block_->Add(s::HistogramSlot(c, b), 1);
  if (failed) block_->Add(s::CommandSlot(c, s::kFailed), 1);
}

void CommandService::LogSlow(Conn& conn, std::span<const std::string_view> args, int64_t us) {
  // As Redis's slowlogCreateEntry: at most 32 arguments (the last one says
  // how many more), each cut at 128 bytes.
  shm::SlowLogEntry e;
  e.unix_time = time(nullptr);
  e.micros = us;
  e.client_addr = conn.remote_addr();
  e.client_name = conn.name();
  size_t argc = std::min<size_t>(args.size(), 32);
  for (size_t i = 0; i < argc; i++) {
    if (argc != args.size() && i == argc - 1) {
      e.args.push_back("... (" + std::to_string(args.size() - argc + 1) + " more arguments)");
    } else if (args[i].size() > 128) {
      e.args.push_back(std::string(args[i].substr(0, 128)) + "... (" +
                       std::to_string(args[i].size() - 128) + " more bytes)");
    } else {
      e.args.emplace_back(args[i]);
    }
  }
  area_->SlowLogAdd(e);
}

void CommandService::OnErrorReply(void* self, std::string_view error) {
  namespace s = shm::slots;
  auto* service = static_cast<CommandService*>(self);
  shm::CounterBlock* block = service->block_;
  service->error_replies_++;
  block->Add(s::kErrorReplies, 1);
  std::string_view word = error.substr(0, error.find_first_of(" \r\n"));
  for (uint32_t i = 0; i < s::kErrorKinds; i++) {
    if (word == s::kErrorNames[i]) {
      block->Add(s::kErrorBase + i, 1);
      return;
    }
  }
  block->Add(s::kErrorOther, 1);
}

void CommandService::SetStoreClock(const ServerView& server) {
  store_->set_now_ms(static_cast<int64_t>(server.now() * 1000));
}

}  // namespace redhub::worker
