// The string family: SET, GET and friends over the shared store.
#include "command_util.h"
#include "store.h"

namespace redhub::worker {
namespace {

Action CmdGet(CommandContext& ctx) {
  shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[1]);
  if (auto e = txn.Find(ctx.args[1])) {
    ctx.service.stats.keyspace_hits++;
    ctx.w.Bulk(e->value);
  } else {
    ctx.service.stats.keyspace_misses++;
    ctx.w.Null();
  }
  return Action::kNone;
}

Action CmdSet(CommandContext& ctx) {
  if (ctx.args.size() != 3) {
    ctx.w.Error(kErrSyntax);
    return Action::kNone;
  }
  shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[1]);
  if (txn.Put(ctx.args[1], ctx.args[2], 0) != shm::Status::kOk) {
    ctx.w.Error(kErrOom);
  } else {
    ctx.w.OK();
  }
  return Action::kNone;
}

const CommandSpec kStringCommands[] = {
    // name, arity, flags, first key, last key, step, handler
    {"get", 2, kReadOnly | kFast, 1, 1, 1, CmdGet},
    {"set", -3, kWrite, 1, 1, 1, CmdSet},
};

}  // namespace

std::span<const CommandSpec> StringCommands() { return kStringCommands; }

}  // namespace redhub::worker
