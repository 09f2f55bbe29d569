// The transaction family: MULTI, EXEC, DISCARD, WATCH, UNWATCH, refused.
//
// Not supported yet. Running the commands between MULTI and EXEC one by one
// would apply some of them before the client learns that its transaction
// failed; instead MULTI is answered with an error and puts the connection
// in a state where the dispatcher refuses every command unrun
// (kErrNotRunInMulti), until EXEC (EXECABORT, Redis's "discarded" error, so
// client libraries raise) or DISCARD ends it. QUIT still works inside, as in
// Redis (RESET is not supported). WATCH and UNWATCH answer an error, so
// nothing relies on them.
#include "command_util.h"

namespace redhub::worker {
namespace {

constexpr std::string_view kErrMultiUnsupported =
    "ERR MULTI is not supported yet: the commands until EXEC or DISCARD will not be run";
bool InMulti(const Conn& c) { return (c.session_flags() & kSessionInMulti) != 0; }

Action CmdMulti(CommandContext& ctx) {
  if (InMulti(ctx.conn)) {
    ctx.w.Error("ERR MULTI calls can not be nested");
    return Action::kNone;
  }
  ctx.conn.set_session_flags(ctx.conn.session_flags() | kSessionInMulti);
  ctx.w.Error(kErrMultiUnsupported);
  return Action::kNone;
}

// EXEC and DISCARD: outside MULTI `outside`, else the state ends with `ended`.
Action EndMulti(CommandContext& ctx, std::string_view outside, std::string_view ended) {
  if (!InMulti(ctx.conn)) {
    ctx.w.Error(outside);
    return Action::kNone;
  }
  ctx.conn.set_session_flags(ctx.conn.session_flags() & ~kSessionInMulti);
  ctx.w.Error(ended);
  return Action::kNone;
}

Action CmdExec(CommandContext& ctx) {
  return EndMulti(ctx, "ERR EXEC without MULTI",
                  "EXECABORT Transaction discarded because of previous errors.");
}

Action CmdDiscard(CommandContext& ctx) {
  return EndMulti(
      ctx, "ERR DISCARD without MULTI",
      "ERR MULTI is not supported yet: transaction discarded, none of its commands ran");
}

Action CmdWatch(CommandContext& ctx) {
  ctx.w.Error("ERR WATCH is not supported yet");
  return Action::kNone;
}

Action CmdUnwatch(CommandContext& ctx) {
  ctx.w.Error("ERR UNWATCH is not supported yet");
  return Action::kNone;
}

// Last in the table (slots 54 and up): a command's slot is its place in the
// counter blocks, which a binary upgrade keeps, so new rows take new slots.
// kRunsInMulti: the dispatcher lets them run inside MULTI (their handlers
// know the state).
const CommandSpec kTransactionCommands[] = {
    // name, arity, flags, ACL categories, first key, last key, step, handler, slot
    {"discard", 1, kNoScript | kLoading | kStale | kFast | kAllowBusy | kRunsInMulti,
     kAclTransaction, 0, 0, 0, CmdDiscard, 54},
    {"exec", 1, kNoScript | kLoading | kStale | kSkipSlowlog | kRunsInMulti, kAclTransaction, 0, 0,
     0, CmdExec, 55},
    {"multi", 1, kNoScript | kLoading | kStale | kFast | kAllowBusy | kRunsInMulti, kAclTransaction,
     0, 0, 0, CmdMulti, 56},
    {"unwatch", 1, kNoScript | kLoading | kStale | kFast | kAllowBusy, kAclTransaction, 0, 0, 0,
     CmdUnwatch, 57},
    {"watch", -2, kNoScript | kLoading | kStale | kFast | kAllowBusy, kAclTransaction, 1, -1, 1,
     CmdWatch, 58},
};

}  // namespace

std::span<const CommandSpec> TransactionCommands() { return kTransactionCommands; }

}  // namespace redhub::worker
