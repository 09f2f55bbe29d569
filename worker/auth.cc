// Who a connection is and what it may do: the per-connection session (its
// user, bound to that user's incarnation), protected mode at accept, AUTH,
// the dispatcher's NOAUTH and NOPERM steps, the ACL LOG, and closing the
// connections of users removed or disabled on any worker.
//
// The users live in the shared ACL area (acl_registry.h); this worker sees a
// change at its next command or tick (the registry's generation moved), and
// then re-checks every connection it serves (CheckSessions).
#include <unistd.h>

#include <cstring>

#include "acl_area.h"
#include "acl_registry.h"
#include "command_util.h"
#include "counters.h"
#include "log.h"
#include "multi_state.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::worker {

namespace {

// Redis 7.0's text, as redis-server 7.0.15 sends it (networking.c,
// clientAcceptHandler), typo included: clients and tests match on it.
constexpr std::string_view kDenied =
    "DENIED Redis is running in protected mode because protected mode is enabled and no "
    "password is set for the default user. In this mode connections are only accepted from the "
    "loopback interface. If you want to connect from external computers to Redis you may adopt "
    "one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG "
    "SET protected-mode no' from the loopback interface by connecting to Redis from the same "
    "host the server is running, however MAKE SURE Redis is not publicly accessible from "
    "internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively "
    "you can just disable the protected mode by editing the Redis configuration file, and "
    "setting the protected mode option to 'no', and then restarting the server. 3) If you "
    "started the server manually just for testing, restart it with the '--protected-mode no' "
    "option. 4) Setup a an authentication password for the default user. NOTE: You only need "
    "to do one of the above things in order for the server to start accepting connections from "
    "the outside.";

// As Redis 7.0 compares the peer's address text: exactly the loopback
// addresses, so 127.0.0.2 is not one; a unix socket always is (its local
// address is the socket's path; the peer's is usually unnamed, ":0").
bool IsLocal(const Conn& conn) {
  const std::string& local = conn.local_addr();
  if (!local.empty() && local[0] == '/') return true;
  const std::string& addr = conn.remote_addr();
  return addr.rfind("127.0.0.1:", 0) == 0 || addr.rfind("[::1]:", 0) == 0;
}

}  // namespace

// What a connection's commands are checked against: its user's entry as of
// the registry's generation, re-resolved when the generation moves. Kept in
// Conn::context(), linked into the service's list so that a change of the
// users reaches every connection, idle ones too.
struct Session {
  Session(CommandService* s, Conn* c) : service(s), conn(c) {
    next = s->sessions_;
    if (next != nullptr) next->prev = this;
    s->sessions_ = this;
  }
  ~Session() {
    if (service == nullptr) return;  // the service went first
    if (service->last_session_ == this) {
      service->last_conn_ = nullptr;
      service->last_session_ = nullptr;
    }
    if (prev != nullptr) prev->next = next;
    if (next != nullptr) next->prev = prev;
    if (service->sessions_ == this) service->sessions_ = next;
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  CommandService* service;
  Conn* conn;
  uint64_t generation = UINT64_MAX;  // of `user`
  const acl::User* user = nullptr;
  uint64_t user_id = 0;               // the incarnation it authenticated as; 0: not bound yet
  std::unique_ptr<MultiState> multi;  // at the first MULTI or WATCH
  Session* prev = nullptr;
  Session* next = nullptr;
};

const std::string& UserName(const Conn& conn) {
  static const std::string kDefault = kDefaultUser;
  return conn.user().empty() ? kDefault : conn.user();
}

CommandService::~CommandService() {
  for (Session* s = sessions_; s != nullptr; s = s->next) s->service = nullptr;
}

void CommandService::set_config_parameters(ConfigParameterList p) {
  info_.config_parameters = std::move(p);
  for (const auto& [name, value] : info_.config_parameters) {
    if (name == "protected-mode") protected_mode_ = value == "yes";
  }
}

bool CommandService::Authenticated(const Conn& conn) const {
  return !acl_ || (conn.session_flags() & kSessionAuthenticated) != 0;
}

bool CommandService::DefaultUserHasNoPassword() const {
  return !acl_ || acl_->default_user().nopass();
}

void CommandService::set_acl_area(shm::AclArea* area) {
  acl_area_ = area;
  acl_ = area != nullptr ? std::make_unique<acl::Registry>(area) : nullptr;
  if (acl_) acl_->Refresh();
}

Session* CommandService::SessionOf(Conn& conn) {
  // A pipeline asks for the same connection's session command after
  // command.
  if (&conn == last_conn_) [[likely]] {
    return last_session_;
  }
  auto* held = conn.context_as<std::shared_ptr<Session>>();
  if (held != nullptr) [[likely]] {
    last_conn_ = &conn;
    last_session_ = held->get();
    return last_session_;
  }
  // A connection adopted from a predecessor worker, or opened before the
  // service had users: its session starts here.
  auto s = std::make_shared<Session>(this, &conn);
  conn.context() = s;
  return s.get();
}

bool CommandService::StillAllowed(Conn& conn, const CommandSpec& spec,
                                  std::span<const std::string_view> args, resp::Writer& w) {
  Session* s = SessionOf(conn);
  acl::Denial d;
  if (!Resolve(s)) {
    d.kind = acl::Denial::kCommand;
  } else if (s->user != nullptr) {
    d = acl::Check(*s->user, spec, args);
  }
  if (d.kind == acl::Denial::kNone) return true;
  // Redis 7.0's execCommand: logged (context "multi") and answered in the
  // command's place.
  const bool command = d.kind == acl::Denial::kCommand;
  LogAclDenial(conn, command ? "command" : "key", d.object, UserName(conn),
               command ? d.object : acl::FullName(spec, args));
  if (block_ != nullptr) {
    block_->Add(command ? shm::slots::kAclDeniedCommand : shm::slots::kAclDeniedKey, 1);
  }
  w.Error(std::string("NOPERM ACLs rules changed between the moment the transaction was "
                      "accumulated and the EXEC call. This command is no longer allowed for the "
                      "following reason: ") +
          (command ? "no permission to execute the command or subcommand"
                   : "no permission to touch the specified keys"));
  return false;
}

MultiState& CommandService::MultiOf(Conn& conn) {
  Session* s = SessionOf(conn);
  if (!s->multi) s->multi = std::make_unique<MultiState>();
  return *s->multi;
}

// Binds the session to its user as the registry now has it. False if the
// connection must be closed: its user is gone, is another incarnation (ACL
// DELUSER then SETUSER, ACL LOAD), or was disabled while authenticated.
bool CommandService::Resolve(Session* s) {
  const uint64_t g = acl_->generation();
  if (s->generation == g) [[likely]] {
    return true;
  }
  const std::string& name = UserName(*s->conn);
  const acl::Entry* e = acl_->Find(name);
  const bool authenticated = (s->conn->session_flags() & kSessionAuthenticated) != 0;
  if (e == nullptr || (s->user_id != 0 && e->id != s->user_id) ||
      (authenticated && !e->user->enabled())) {
    s->user = nullptr;
    return false;
  }
  s->user_id = e->id;
  s->user = e->user.get();
  s->generation = g;
  return true;
}

void CommandService::CheckSessions() {
  std::vector<Conn*> gone;
  for (Session* s = sessions_; s != nullptr; s = s->next) {
    if (!Resolve(s)) gone.push_back(s->conn);
  }
  for (Conn* c : gone) {
    LOG_NOTICE("Closing client id=%llu addr=%s: its user %s was removed or disabled",
               static_cast<unsigned long long>(c->id()), c->remote_addr().c_str(),
               UserName(*c).c_str());
    c->Close();
  }
}

std::string CommandService::ModifyUsers(const acl::Registry::ModifyFn& fn) {
  if (!acl_) return "ERR this server has no users";
  std::string e = acl_->Modify(fn);
  CheckSessions();
  return e;
}

void CommandService::RefreshUsers() {
  if (acl_ && acl_->Refresh()) CheckSessions();
}

Action CommandService::OnOpen(Conn& conn, resp::Writer& w) {
  if (!acl_) return Action::kNone;
  RefreshUsers();
  const acl::User& d = acl_->default_user();
  if (protected_mode_ && d.nopass() && !IsLocal(conn)) {
    if (block_ != nullptr) block_->Add(shm::slots::kProtectedModeRejections, 1);
    w.Error(kDenied);
    conn.Close();
    return Action::kNone;
  }
  // Redis: a new client is authenticated when the default user needs no
  // password (and is on).
  if (d.nopass() && d.enabled()) {
    conn.set_session_flags(conn.session_flags() | kSessionAuthenticated);
  }
  Session* s = SessionOf(conn);
  Resolve(s);
  return Action::kNone;
}

bool CommandService::RefuseUnauthenticated(Conn& conn, const CommandSpec& spec, resp::Writer& w) {
  // The event loop's handlers re-read the users once a batch (on_command);
  // a caller outside a batch (tests, embedding) gets them per command.
  if (store_ == nullptr || !store_->in_batch()) RefreshUsers();
  if ((conn.session_flags() & kSessionAuthenticated) != 0) [[likely]] {
    return false;
  }
  // Redis's authRequired: the default user needs a password (or is off).
  const acl::User& d = acl_->default_user();
  if (d.nopass() && d.enabled()) return false;
  if ((spec.check_flags() & kNoAuth) != 0) return false;
  w.Error("NOAUTH Authentication required.");
  return true;
}

bool CommandService::RefuseInScript(Conn& conn, const CommandSpec& spec,
                                    std::span<const std::string_view> args, resp::Writer& w) {
  if (acl_ == nullptr) return false;
  Session* s = SessionOf(conn);
  acl::Denial d;
  if (!Resolve(s)) {
    d.kind = acl::Denial::kCommand;
    d.object = acl::FullName(spec, args);
  } else if (s->user->unrestricted()) [[likely]] {
    return false;
  } else {
    d = acl::Check(*s->user, spec, args);
  }
  if (d.kind == acl::Denial::kNone) return false;
  // Redis 7.0's scriptVerifyACL: logged (context "lua"), and the script
  // sees an error of its own wording.
  const bool command = d.kind == acl::Denial::kCommand;
  LogAclDenial(conn, command ? "command" : "key", d.object, UserName(conn),
               command ? d.object : acl::FullName(spec, args));
  if (block_ != nullptr) {
    block_->Add(command ? shm::slots::kAclDeniedCommand : shm::slots::kAclDeniedKey, 1);
  }
  w.Error(command ? "ERR The user executing the script can't run this command or subcommand"
                  : "ERR The user executing the script can't access at least one of the keys "
                    "mentioned in the command");
  return true;
}

bool CommandService::RefuseByAcl(Conn& conn, const CommandSpec& spec,
                                 std::span<const std::string_view> args, resp::Writer& w) {
  Session* s = SessionOf(conn);
  if (!Resolve(s)) {
    // Its user went away since the last sweep (this worker learnt it at
    // this command): closed with no reply, as Redis frees the clients of a
    // removed user at once (freeClientAsync) and they never see an answer.
    conn.Abort();
    return true;
  }
  if (s->user->unrestricted()) [[likely]] {
    return false;
  }
  const acl::Denial d = acl::Check(*s->user, spec, args);
  if (d.kind == acl::Denial::kNone) return false;
  if (d.kind == acl::Denial::kCommand) {
    LogAclDenial(conn, "command", d.object, UserName(conn), d.object);
    if (block_ != nullptr) block_->Add(shm::slots::kAclDeniedCommand, 1);
    w.Error("NOPERM this user has no permissions to run the '" + d.object + "' command");
  } else {
    LogAclDenial(conn, "key", d.object, UserName(conn), acl::FullName(spec, args));
    if (block_ != nullptr) block_->Add(shm::slots::kAclDeniedKey, 1);
    w.Error("NOPERM this user has no permissions to access one of the keys used as arguments");
  }
  return true;
}

std::string CommandService::Authenticate(Conn& conn, std::string_view user,
                                         std::string_view password, std::string_view command) {
  static constexpr char kWrongPass[] =
      "WRONGPASS invalid username-password pair or user is disabled.";
  if (!acl_) return user == kDefaultUser ? "" : kWrongPass;
  RefreshUsers();
  const acl::Entry* e = acl_->Find(user);
  if (e == nullptr || !e->user->enabled() || !e->user->CheckPassword(password)) {
    if (block_ != nullptr) block_->Add(shm::slots::kAclDeniedAuth, 1);
    // Redis logs the user named by the client, known or not, and the
    // command as it was typed.
    LogAclDenial(conn, "auth", command, user, AsciiLower(command));
    return kWrongPass;
  }
  conn.set_user(std::string(user));
  conn.set_session_flags(conn.session_flags() | kSessionAuthenticated);
  Session* s = SessionOf(conn);
  s->user_id = e->id;
  s->user = e->user.get();
  s->generation = acl_->generation();
  return "";
}

void CommandService::LogAclDenial(Conn& conn, const char* reason, std::string_view object,
                                  std::string_view user, std::string_view command) {
  if (acl_area_ == nullptr) return;
  shm::AclLogEntry e;
  e.reason = reason;
  e.context = script_depth_ > 0 ? "lua" : InMulti(conn) ? "multi" : "toplevel";
  e.object = std::string(object);
  e.username = std::string(user);
  std::string info;
  WriteClientInfo(info, conn.server().Describe(conn), *this, command);
  while (!info.empty() && info.back() == '\n') info.pop_back();
  e.client_info = std::move(info);
  acl_area_->LogAdd(e);
}

}  // namespace redhub::worker
