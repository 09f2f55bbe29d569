// The keyspace and expiry families: DEL, EXISTS, SCAN, EXPIRE, TTL...
#include "command_util.h"
#include "store.h"

namespace redhub::worker {
namespace {

// Multi-key commands lock each key's stripe in turn: atomic per key, as
// Redis documents for DEL and EXISTS across slots.
Action CmdDel(CommandContext& ctx) {
  int64_t n = 0;
  for (size_t i = 1; i < ctx.args.size(); i++) {
    shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[i]);
    if (txn.Erase(ctx.args[i])) n++;
  }
  ctx.w.Int(n);
  return Action::kNone;
}

Action CmdExists(CommandContext& ctx) {
  int64_t n = 0;
  for (size_t i = 1; i < ctx.args.size(); i++) {
    shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[i]);
    if (txn.Peek(ctx.args[i])) n++;
  }
  ctx.w.Int(n);
  return Action::kNone;
}

Action CmdDbsize(CommandContext& ctx) {
  ctx.w.Int(static_cast<int64_t>(ctx.service.store().stats().keys));
  return Action::kNone;
}

Action CmdFlush(CommandContext& ctx) {
  for (size_t i = 1; i < ctx.args.size(); i++) {
    if (!EqualsNoCase(ctx.args[i], "SYNC") && !EqualsNoCase(ctx.args[i], "ASYNC")) {
      ctx.w.Error(kErrSyntax);
      return Action::kNone;
    }
  }
  ctx.service.store().Flush();
  ctx.w.OK();
  return Action::kNone;
}

const CommandSpec kKeyspaceCommands[] = {
    // name, arity, flags, first key, last key, step, handler
    {"dbsize", 1, kReadOnly | kFast, 0, 0, 0, CmdDbsize},
    {"del", -2, kWrite, 1, -1, 1, CmdDel},
    {"exists", -2, kReadOnly | kFast, 1, -1, 1, CmdExists},
    {"flushall", -1, kWrite, 0, 0, 0, CmdFlush},
    {"flushdb", -1, kWrite, 0, 0, 0, CmdFlush},
};

}  // namespace

std::span<const CommandSpec> KeyspaceCommands() { return kKeyspaceCommands; }

}  // namespace redhub::worker
