// The connection family: PING, ECHO, QUIT, SELECT, HELLO and CLIENT (ID,
// GETNAME, SETNAME, INFO, LIST), with Redis 7.0's replies.
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "command_util.h"

namespace redhub::worker {
namespace {

Action CmdPing(CommandContext& ctx) {
  if (ctx.args.size() > 2) {
    WrongArity(ctx.w, "ping");
  } else if (ctx.args.size() == 2) {
    ctx.w.Bulk(ctx.args[1]);
  } else {
    ctx.w.String("PONG");
  }
  return Action::kNone;
}

// AUTH [username] password, as Redis 7.0's authCommand: the one-argument
// form is the default user's, and says so when that user has no password.
Action CmdAuth(CommandContext& ctx) {
  if (ctx.args.size() > 3) {
    ctx.w.Error(kErrSyntax);
    return Action::kNone;
  }
  std::string_view user = kDefaultUser;
  std::string_view password = ctx.args[1];
  if (ctx.args.size() == 2) {
    if (ctx.service.DefaultUserHasNoPassword()) {
      ctx.w.Error(
          "ERR AUTH <password> called without any password configured for the default user. "
          "Are you sure your configuration is correct?");
      return Action::kNone;
    }
  } else {
    user = ctx.args[1];
    password = ctx.args[2];
  }
  if (std::string e = ctx.service.Authenticate(ctx.conn, user, password, ctx.args[0]); !e.empty()) {
    ctx.w.Error(e);
  } else {
    ctx.w.OK();
  }
  return Action::kNone;
}

Action CmdEcho(CommandContext& ctx) {
  ctx.w.Bulk(ctx.args[1]);
  return Action::kNone;
}

Action CmdQuit(CommandContext& ctx) {
  ctx.w.OK();
  return Action::kClose;
}

Action CmdSelect(CommandContext& ctx) {
  int64_t db;
  if (!ParseInt64(ctx.args[1], &db)) {
    ctx.w.Error("ERR value is not an integer or out of range");
  } else if (db != 0) {
    ctx.w.Error("ERR DB index is out of range");
  } else {
    ctx.w.OK();
  }
  return Action::kNone;
}

void WriteHello(CommandContext& ctx) {
  ctx.w.Map(7);
  ctx.w.Bulk("server");
  ctx.w.Bulk("redhub");
  ctx.w.Bulk("version");
  ctx.w.Bulk(ctx.service.info().version);
  ctx.w.Bulk("proto");
  ctx.w.Int(ctx.conn.protocol());
  ctx.w.Bulk("id");
  ctx.w.Int(static_cast<int64_t>(ctx.conn.id()));
  ctx.w.Bulk("mode");
  ctx.w.Bulk("standalone");
  ctx.w.Bulk("role");
  ctx.w.Bulk("master");
  ctx.w.Bulk("modules");
  ctx.w.Array(0);
}

// CLIENT LIST prints one client per line, fields separated by spaces: a
// name with a space, a newline or a control byte could forge fields or
// whole lines. Redis's validateClientName, for CLIENT SETNAME and HELLO
// SETNAME alike.
constexpr std::string_view kErrClientName =
    "ERR Client names cannot contain spaces, newlines or special characters.";

bool ValidClientName(std::string_view name) {
  for (char ch : name) {
    if (ch < '!' || ch > '~') return false;
  }
  return true;
}

// As Redis 7.0.15's helloCommand: the options are checked in order, AUTH
// authenticated and SETNAME's name validated and set as each is met (so a
// valid name stays set when a later option or the NOAUTH check fails), and
// only when all pass is the protocol set. An invalid name sets nothing.
Action CmdHello(CommandContext& ctx) {
  int64_t proto = ctx.conn.protocol();
  size_t i = 1;
  if (ctx.args.size() >= 2) {
    if (!ParseInt64(ctx.args[1], &proto)) {
      ctx.w.Error("ERR Protocol version is not an integer or out of range");
      return Action::kNone;
    }
    if (proto < 2 || proto > 3) {
      ctx.w.Error("NOPROTO unsupported protocol version");
      return Action::kNone;
    }
    i = 2;
  }
  std::string_view name;
  for (; i < ctx.args.size(); i++) {
    bool more = i + 1 < ctx.args.size();
    if (EqualsNoCase(ctx.args[i], "AUTH") && i + 2 < ctx.args.size()) {
      if (std::string e =
              ctx.service.Authenticate(ctx.conn, ctx.args[i + 1], ctx.args[i + 2], ctx.args[0]);
          !e.empty()) {
        ctx.w.Error(e);
        return Action::kNone;
      }
      i += 2;
    } else if (EqualsNoCase(ctx.args[i], "SETNAME") && more) {
      name = ctx.args[++i];
      if (!ValidClientName(name)) {
        ctx.w.Error(kErrClientName);
        return Action::kNone;
      }
      // Redis 7.0 sets it here (clientSetNameOrReply), so a later failure
      // of the same HELLO (NOAUTH, a bad option) leaves the name set.
      ctx.conn.set_name(std::string(name));
    } else {
      ctx.w.Error("ERR Syntax error in HELLO option '" + std::string(ctx.args[i]) + "'");
      return Action::kNone;
    }
  }
  if (!ctx.service.Authenticated(ctx.conn)) {
    ctx.w.Error(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
        "AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
        "protocol version at the same time");
    return Action::kNone;
  }
  ctx.conn.set_protocol(static_cast<int>(proto));
  WriteHello(ctx);
  return Action::kNone;
}

Action CmdClient(CommandContext& ctx) {
  std::string_view sub = ctx.args[1];
  Conn& conn = ctx.conn;
  if (EqualsNoCase(sub, "ID") && ctx.args.size() == 2) {
    ctx.w.Int(static_cast<int64_t>(conn.id()));
  } else if (EqualsNoCase(sub, "GETNAME") && ctx.args.size() == 2) {
    if (conn.name().empty()) {
      ctx.w.Null();
    } else {
      ctx.w.Bulk(conn.name());
    }
  } else if (EqualsNoCase(sub, "SETNAME") && ctx.args.size() == 3) {
    std::string_view name = ctx.args[2];
    if (!ValidClientName(name)) {
      ctx.w.Error(kErrClientName);
      return Action::kNone;
    }
    conn.set_name(std::string(name));
    ctx.w.OK();
  } else if (EqualsNoCase(sub, "INFO") && ctx.args.size() == 2) {
    std::string line;
    WriteClientInfo(line, conn.server().Describe(conn), ctx.service, "client|info");
    ctx.w.Verbatim("txt", line);
  } else if (EqualsNoCase(sub, "LIST") && ctx.args.size() == 2) {
    std::string text;
    conn.server().ForEachClient([&](const ClientInfo& c) {
      WriteClientInfo(text, c, ctx.service, c.conn == &conn ? "client|list" : "NULL");
    });
    ctx.w.Verbatim("txt", text);
  } else if (EqualsNoCase(sub, "ID") || EqualsNoCase(sub, "GETNAME") ||
             EqualsNoCase(sub, "SETNAME") || EqualsNoCase(sub, "INFO") ||
             EqualsNoCase(sub, "LIST")) {
    std::string name = "client|" + std::string(sub);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    WrongArity(ctx.w, name);
  } else {
    UnknownSubcommand(ctx.w, sub, "CLIENT");
  }
  return Action::kNone;
}

// The CLIENT subcommands CmdClient serves, as Redis 7.0 reports them.
const SubcommandSpec kClientSubcommands[] = {
    // name, flags, ACL categories
    {"getname", kNoScript | kLoading | kStale, kAclConnection},
    {"id", kNoScript | kLoading | kStale, kAclConnection},
    {"info", kNoScript | kLoading | kStale, kAclConnection},
    {"list", kAdmin | kNoScript | kLoading | kStale, kAclConnection},
    {"setname", kNoScript | kLoading | kStale, kAclConnection},
};

// CLIENT's subcommands all run while loading (Redis: loading, stale).
const CommandSpec kConnectionCommands[] = {
    // name, arity, flags, ACL categories, first key, last key, step, handler, slot
    {"auth", -2, kNoScript | kLoading | kStale | kFast | kNoAuth | kAllowBusy, kAclConnection, 0, 0,
     0, CmdAuth, 59},
    {"client", -2, 0, 0, 0, 0, 0, CmdClient, 0, kLoading | kStale, kClientSubcommands},
    {"echo", 2, kLoading | kStale | kFast, kAclConnection, 0, 0, 0, CmdEcho, 3},
    {"hello", -1, kNoScript | kLoading | kStale | kFast | kNoAuth | kAllowBusy, kAclConnection, 0,
     0, 0, CmdHello, 4},
    {"ping", -1, kFast, kAclConnection, 0, 0, 0, CmdPing, 6},
    {"quit", -1, kNoScript | kLoading | kStale | kFast | kNoAuth | kAllowBusy | kRunsInMulti,
     kAclConnection, 0, 0, 0, CmdQuit, 7},
    {"select", 2, kLoading | kStale | kFast, kAclConnection, 0, 0, 0, CmdSelect, 8},
};

}  // namespace

// One CLIENT LIST line (also the ACL LOG's client-info).
void WriteClientInfo(std::string& out, const ClientInfo& info, const CommandService& svc,
                     std::string_view current_cmd) {
  const Conn& c = *info.conn;
  out += "id=" + std::to_string(c.id());
  out += " addr=" + c.remote_addr();
  out += " laddr=" + c.local_addr();
  out += " fd=" + std::to_string(c.fd());
  out += " name=" + c.name();
  out += " age=" + std::to_string(c.age_seconds());
  out += " idle=" + std::to_string(c.idle_seconds());
  out += " flags=N db=0 sub=0 psub=0 ssub=0 multi=-1";
  out += " qbuf=" + std::to_string(info.query_buffer);
  out += " qbuf-free=" + std::to_string(info.query_buffer_free);
  out += " obl=0 oll=0 omem=" + std::to_string(info.output_pending);
  out += " tot-mem=" + std::to_string(info.memory);
  out += " events=r";
  if (info.output_pending > 0) out += 'w';
  out += " cmd=" + std::string(current_cmd);
  out += " user=" + UserName(c) + " redir=-1 resp=" + std::to_string(c.protocol());
  out += " worker=" + std::to_string(svc.info().worker_slot);
  out += " pid=" + std::to_string(getpid());
  out += '\n';
}

std::span<const CommandSpec> ConnectionCommands() { return kConnectionCommands; }

}  // namespace redhub::worker
