// The transaction family: MULTI, EXEC, DISCARD, WATCH, UNWATCH, with Redis
// 7.0's replies and errors (src/multi.c).
//
// Between MULTI and EXEC the dispatcher queues each command (+QUEUED) after
// its checks; a refusal flags the transaction, and EXEC then discards it
// (EXECABORT). EXEC runs the queue as one transaction of the shared store,
// atomic against every other worker and across a death:
//  - it takes, once and in the store's lock order, the stripes of every key
//    the queued commands name (their rows' key positions) and of every
//    watched key: Store::LockKeys with staged writes; or, if a command
//    reads or writes the whole keyspace (kWholeStore: KEYS, SCAN, DBSIZE,
//    FLUSHALL, RANDOMKEY), every stripe (Store::LockAll);
//  - under those locks it compares the watched keys with what they held at
//    WATCH; any difference aborts (a null reply, nothing run);
//  - the commands run one after the other through a Store::Scope, so their
//    handlers, unchanged, borrow the one Txn and see each other's writes;
//    a command's error is its reply in the array, and the others still run
//    (no rollback, as Redis);
//  - the Txn ends: every write becomes visible at once (the store's commit
//    store), before the reply leaves. A worker killed before that store
//    leaves none of them; after it, the next locker rolls all forward.
// Nobody else can see a transaction half done: they would need its locks.
//
// WATCH keeps, per key, its presence, expire time, length and a digest of
// its value (MultiState's KeyState), and EXEC aborts if any differs: a
// change by any worker, by expiry, eviction, FLUSHALL or RENAME is seen, and
// nothing else aborts (a change of another key of the same stripe does
// not). Unlike Redis, a write that puts back exactly what was there (SET of
// the same value and expire time) does not abort: it changes nothing the
// transaction could have read. WATCH costs a read of each key (the value is
// hashed, O(length)), and EXEC the same again.
#include "command_util.h"
#include "hash.h"
#include "multi_state.h"
#include "store.h"

namespace redhub::worker {
namespace {

// A fixed seed: digests are compared only within this process.
constexpr uint64_t kDigestSeed = 0x5bd1e9955bd1e995ULL;

KeyState StateOf(shm::Store::Txn& txn, std::string_view key) {
  KeyState s;
  if (std::optional<shm::EntryView> e = txn.Peek(key)) {
    s.exists = true;
    s.expire_ms = e->expire_ms;
    s.length = e->value.size();
    s.digest = shm::HashKey(e->value, kDigestSeed);
  }
  return s;
}

// The connection stays with this worker while it has a queue or watched
// keys: they live in this process (Conn::stays_here).
void UpdateStays(Conn& conn, const MultiState& m) {
  conn.set_stays_here(InMulti(conn) || !m.watched.empty());
}

void EndTransaction(Conn& conn, MultiState& m) {
  conn.set_session_flags(conn.session_flags() & ~kSessionInMulti);
  m.ClearQueue();
  m.watched.clear();
  UpdateStays(conn, m);
}

Action CmdMulti(CommandContext& ctx) {
  if (InMulti(ctx.conn)) {
    ctx.w.Error("ERR MULTI calls can not be nested");
    return Action::kNone;
  }
  MultiState& m = ctx.service.MultiOf(ctx.conn);
  m.ClearQueue();
  ctx.conn.set_session_flags(ctx.conn.session_flags() | kSessionInMulti);
  UpdateStays(ctx.conn, m);
  ctx.w.OK();
  return Action::kNone;
}

Action CmdDiscard(CommandContext& ctx) {
  if (!InMulti(ctx.conn)) {
    ctx.w.Error("ERR DISCARD without MULTI");
    return Action::kNone;
  }
  EndTransaction(ctx.conn, ctx.service.MultiOf(ctx.conn));
  ctx.w.OK();
  return Action::kNone;
}

Action CmdExec(CommandContext& ctx) {
  if (!InMulti(ctx.conn)) {
    ctx.w.Error("ERR EXEC without MULTI");
    return Action::kNone;
  }
  MultiState& m = ctx.service.MultiOf(ctx.conn);
  if (m.dirty) {
    EndTransaction(ctx.conn, m);
    ctx.w.Error("EXECABORT Transaction discarded because of previous errors.");
    return Action::kNone;
  }
  // Every key the transaction names, and whether it needs the whole store.
  std::vector<std::vector<std::string_view>> args(m.commands().size());
  std::vector<std::string_view> keys;
  bool whole = false;
  for (size_t i = 0; i < m.commands().size(); i++) {
    const MultiState::Queued& q = m.commands()[i];
    m.ArgsOf(q, &args[i]);
    whole = whole || (q.spec->flags & kWholeStore) != 0;
    ForEachKeyArg(*q.spec, args[i], [&](size_t, std::string_view key) { keys.push_back(key); });
  }
  for (const WatchedKey& k : m.watched) keys.push_back(k.key);

  shm::Store& store = ctx.service.store();
  shm::Store::Txn txn = whole ? store.LockAll() : store.LockKeys(keys, shm::Store::Writes::kStaged);
  for (const WatchedKey& k : m.watched) {
    if (StateOf(txn, k.key) != k.state) {
      txn.Unlock();  // nothing was written
      EndTransaction(ctx.conn, m);
      ctx.w.NullArray();
      return Action::kNone;
    }
  }
  ctx.w.Array(static_cast<int64_t>(args.size()));
  {
    shm::Store::Scope scope(store, txn);
    for (size_t i = 0; i < args.size(); i++) {
      ctx.service.RunQueued(ctx.conn, *m.commands()[i].spec, args[i], ctx.w);
    }
  }
  txn.Unlock();  // the commit: all of it visible at once
  EndTransaction(ctx.conn, m);
  return Action::kNone;
}

Action CmdWatch(CommandContext& ctx) {
  if (InMulti(ctx.conn)) {
    ctx.w.Error("ERR WATCH inside MULTI is not allowed");
    return Action::kNone;
  }
  MultiState& m = ctx.service.MultiOf(ctx.conn);
  shm::Store& store = ctx.service.store();
  for (size_t i = 1; i < ctx.args.size(); i++) {
    const std::string_view key = ctx.args[i];
    bool known = false;
    for (const WatchedKey& k : m.watched) known = known || k.key == key;
    if (known) continue;  // Redis keeps the first WATCH of a key
    shm::Store::Txn txn = store.Lock(key);
    m.watched.push_back(WatchedKey{std::string(key), StateOf(txn, key)});
  }
  UpdateStays(ctx.conn, m);
  ctx.w.OK();
  return Action::kNone;
}

Action CmdUnwatch(CommandContext& ctx) {
  MultiState& m = ctx.service.MultiOf(ctx.conn);
  m.watched.clear();
  UpdateStays(ctx.conn, m);
  ctx.w.OK();
  return Action::kNone;
}

// Last in the table (slots 54 and up): a command's slot is its place in the
// counter blocks, which a binary upgrade keeps, so new rows take new slots.
// kRunsInMulti: run inside MULTI rather than queued (their handlers know the
// state), as Redis's processCommand exempts them.
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
    {"watch", -2, kNoScript | kLoading | kStale | kFast | kAllowBusy | kRunsInMulti,
     kAclTransaction, 1, -1, 1, CmdWatch, 58},
};

}  // namespace

std::span<const CommandSpec> TransactionCommands() { return kTransactionCommands; }

}  // namespace redhub::worker
