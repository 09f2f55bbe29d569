// The keyspace and expiry families, with Redis 7.0's replies and error texts:
// DEL, UNLINK, EXISTS, TYPE, KEYS, SCAN, RANDOMKEY, RENAME, RENAMENX, DBSIZE,
// FLUSHDB, FLUSHALL, TOUCH; EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL,
// EXPIRETIME, PEXPIRETIME, PERSIST.
//
// Lookups follow Redis's flags: read commands count keyspace hits and misses
// (write lookups do not), and only TYPE, EXISTS and the TTL family leave the
// LRU clock alone (Peek instead of Find).
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "command_util.h"
#include "glob.h"
#include "progress.h"
#include "store.h"

namespace redhub::worker {
namespace {

// ---- keyspace ----

// DEL and UNLINK (memory is freed at once either way). Multi-key commands
// lock each key's stripe in turn: atomic per key, as Redis documents for DEL
// and EXISTS across slots.
Action CmdDel(CommandContext& ctx) {
  int64_t n = 0;
  for (size_t i = 1; i < ctx.args.size(); i++) {
    shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[i]);
    if (txn.Erase(ctx.args[i])) n++;
  }
  ctx.w.Int(n);
  return Action::kNone;
}

// A key named twice counts twice, as in Redis.
Action CmdExists(CommandContext& ctx) {
  int64_t n = 0;
  for (size_t i = 1; i < ctx.args.size(); i++) {
    shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[i]);
    if (CountLookup(ctx, txn.Peek(ctx.args[i]))) n++;
  }
  ctx.w.Int(n);
  return Action::kNone;
}

Action CmdTouch(CommandContext& ctx) {
  int64_t n = 0;
  for (size_t i = 1; i < ctx.args.size(); i++) {
    shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[i]);
    if (CountLookup(ctx, txn.Touch(ctx.args[i]))) n++;
  }
  ctx.w.Int(n);
  return Action::kNone;
}

// Only strings exist in the store.
Action CmdType(CommandContext& ctx) {
  shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[1]);
  bool found = CountLookup(ctx, txn.Peek(ctx.args[1])).has_value();
  txn.Unlock();
  ctx.w.String(found ? "string" : "none");
  return Action::kNone;
}

// Stripe by stripe: each stripe's keys are copied out under its lock (no
// key returned twice, as a rehash cannot move keys between the copy and the
// match), and matched after the lock is let go, so a slow pattern never
// makes other workers wait on a stripe. Not a snapshot across stripes.
Action CmdKeys(CommandContext& ctx) {
  const GlobPattern pattern(ctx.args[1]);
  shm::Store& store = ctx.service.store();
  std::vector<std::string> keys;
  std::vector<std::string> candidates;
  for (uint32_t s = 0, n = store.stripe_count(); s < n; s++) {
    candidates.clear();
    store.ScanStripe(
        s, [&](std::string_view key, const shm::EntryView&) { candidates.emplace_back(key); });
    for (std::string& key : candidates) {
      shm::ReportProgress();  // a pathological pattern is slow, not hung
      if (pattern.Match(key)) keys.push_back(std::move(key));
    }
  }
  ctx.w.Array(static_cast<int64_t>(keys.size()));
  for (size_t i = 0; i < keys.size() && !ctx.w.overflowed(); i++) ctx.w.Bulk(keys[i]);
  return Action::kNone;
}

// Redis's parseScanCursorOrReply: strtoul's syntax (so "-1" wraps and ""
// is 0), but no leading blank, no trailing bytes, no overflow.
bool ParseScanCursor(std::string_view arg, uint64_t* cursor) {
  std::string s(arg);
  if (!s.empty() && isspace(static_cast<unsigned char>(s[0]))) return false;
  char* end;
  errno = 0;
  unsigned long long v = strtoull(s.c_str(), &end, 10);
  if (*end != '\0' || errno == ERANGE) return false;
  *cursor = v;
  return true;
}

// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]. The cursor is the
// store's (stripe << 32 | bucket cursor); a full iteration returns every key
// present throughout at least once, even while stripes rehash. COUNT is a
// hint on the number of keys looked at, before MATCH and TYPE filter them.
Action CmdScan(CommandContext& ctx) {
  uint64_t cursor;
  if (!ParseScanCursor(ctx.args[1], &cursor)) {
    ctx.w.Error("ERR invalid cursor");
    return Action::kNone;
  }
  int64_t count = 10;
  std::string_view pattern = "*";
  std::string_view type;
  bool use_type = false;
  for (size_t i = 2; i < ctx.args.size(); i += 2) {
    std::string_view opt = ctx.args[i];
    const bool has_value = i + 1 < ctx.args.size();
    if (EqualsNoCase(opt, "COUNT") && has_value) {
      if (!ParseInt64(ctx.args[i + 1], &count)) {
        ctx.w.Error(kErrNotInteger);
        return Action::kNone;
      }
      if (count < 1) {
        ctx.w.Error(kErrSyntax);
        return Action::kNone;
      }
    } else if (EqualsNoCase(opt, "MATCH") && has_value) {
      pattern = ctx.args[i + 1];
    } else if (EqualsNoCase(opt, "TYPE") && has_value) {
      // Redis 7.0 filters by name and does not reject unknown type names:
      // any type other than "string" matches nothing here.
      type = ctx.args[i + 1];
      use_type = true;
    } else {
      ctx.w.Error(kErrSyntax);
      return Action::kNone;
    }
  }
  const bool type_matches = !use_type || EqualsNoCase(type, "string");
  // As Redis: the keys looked at are collected first (under each stripe's
  // lock, briefly), then filtered with no lock held.
  std::vector<std::string> keys;
  uint64_t next = ctx.service.store().Scan(
      cursor, static_cast<size_t>(count),
      [&](std::string_view key, const shm::EntryView&) { keys.emplace_back(key); });
  const GlobPattern matcher(pattern);
  if (!type_matches) {
    keys.clear();
  } else if (!matcher.matches_all()) {
    std::erase_if(keys, [&](const std::string& key) {
      shm::ReportProgress();
      return !matcher.Match(key);
    });
  }
  ctx.w.Array(2);
  ctx.w.BulkUint(next);
  ctx.w.Array(static_cast<int64_t>(keys.size()));
  for (const std::string& key : keys) ctx.w.Bulk(key);
  return Action::kNone;
}

Action CmdRandomKey(CommandContext& ctx) {
  if (std::optional<std::string> key = ctx.service.store().RandomKey()) {
    ctx.w.Bulk(*key);
  } else {
    ctx.w.Null();
  }
  return Action::kNone;
}

// RENAME and RENAMENX hold both keys' stripes, so other clients see the key
// under one name or the other, never both or neither. The destination takes
// the source's value and expire time; Put runs before Erase because the
// source's value is a view into its entry.
Action RenameGeneric(CommandContext& ctx, bool nx) {
  std::string_view src = ctx.args[1];
  std::string_view dst = ctx.args[2];
  const std::string_view keys[] = {src, dst};
  shm::Store::Txn txn = ctx.service.store().LockKeys(keys);
  std::optional<shm::EntryView> entry = txn.Find(src);
  if (!entry) {
    txn.Unlock();
    ctx.w.Error(kErrNoSuchKey);
    return Action::kNone;
  }
  if (src == dst) {  // Redis: nothing to do, but the source had to exist
    txn.Unlock();
    if (nx) {
      ctx.w.Int(0);
    } else {
      ctx.w.OK();
    }
    return Action::kNone;
  }
  // Peek may delete an expired destination; that leaves the source's view
  // valid (only a change to the source itself would not).
  if (nx && txn.Peek(dst)) {
    txn.Unlock();
    ctx.w.Int(0);
    return Action::kNone;
  }
  if (txn.Put(dst, entry->value, entry->expire_ms) != shm::Status::kOk) {
    txn.Unlock();
    ctx.w.Error(kErrOom);  // nothing changed
    return Action::kNone;
  }
  txn.Erase(src);
  txn.Unlock();
  if (nx) {
    ctx.w.Int(1);
  } else {
    ctx.w.OK();
  }
  return Action::kNone;
}

Action CmdRename(CommandContext& ctx) { return RenameGeneric(ctx, false); }
Action CmdRenameNx(CommandContext& ctx) { return RenameGeneric(ctx, true); }

// Counts expired keys not yet removed, as Redis's DBSIZE does.
Action CmdDbsize(CommandContext& ctx) {
  ctx.w.Int(static_cast<int64_t>(ctx.service.store().KeyCount()));
  return Action::kNone;
}

// FLUSHALL / FLUSHDB [ASYNC|SYNC]: there is one database, and both modes
// empty it before replying (stripe by stripe, not atomic across stripes).
Action CmdFlush(CommandContext& ctx) {
  if (ctx.args.size() > 2 || (ctx.args.size() == 2 && !EqualsNoCase(ctx.args[1], "SYNC") &&
                              !EqualsNoCase(ctx.args[1], "ASYNC"))) {
    ctx.w.Error(kErrSyntax);
    return Action::kNone;
  }
  ctx.service.store().Flush();
  ctx.w.OK();
  return Action::kNone;
}

// ---- expiry ----

enum ExpireFlag : unsigned { kExpireNx = 1, kExpireXx = 2, kExpireGt = 4, kExpireLt = 8 };

// Redis's parseExtendedExpireArgumentsOrReply.
bool ParseExpireFlags(CommandContext& ctx, unsigned* flags) {
  for (size_t i = 3; i < ctx.args.size(); i++) {
    std::string_view opt = ctx.args[i];
    if (EqualsNoCase(opt, "NX")) {
      *flags |= kExpireNx;
    } else if (EqualsNoCase(opt, "XX")) {
      *flags |= kExpireXx;
    } else if (EqualsNoCase(opt, "GT")) {
      *flags |= kExpireGt;
    } else if (EqualsNoCase(opt, "LT")) {
      *flags |= kExpireLt;
    } else {
      ctx.w.Error("ERR Unsupported option " + std::string(opt));
      return false;
    }
  }
  if ((*flags & kExpireNx) && (*flags & (kExpireXx | kExpireGt | kExpireLt))) {
    ctx.w.Error("ERR NX and XX, GT or LT options at the same time are not compatible");
    return false;
  }
  if ((*flags & kExpireGt) && (*flags & kExpireLt)) {
    ctx.w.Error("ERR GT and LT options at the same time are not compatible");
    return false;
  }
  return true;
}

void InvalidExpireTime(resp::Writer& w, std::string_view command) {
  w.Error("ERR invalid expire time in '" + std::string(command) + "' command");
}

// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key time [NX|XX|GT|LT ...], as
// Redis's expireGenericCommand: 1 if the time was set (or the key deleted
// because the time is not in the future), 0 if the key is missing or a
// condition failed. A key with no expire time counts as an infinite TTL for
// GT and LT.
Action ExpireGeneric(CommandContext& ctx, std::string_view command, bool relative, bool seconds) {
  unsigned flags = 0;
  if (!ParseExpireFlags(ctx, &flags)) return Action::kNone;
  int64_t when;
  if (!ParseInt64(ctx.args[2], &when)) {
    ctx.w.Error(kErrNotInteger);
    return Action::kNone;
  }
  if (seconds) {
    if (when > INT64_MAX / 1000 || when < INT64_MIN / 1000) {
      InvalidExpireTime(ctx.w, command);
      return Action::kNone;
    }
    when *= 1000;
  }
  std::string_view key = ctx.args[1];
  shm::Store::Txn txn = ctx.service.store().Lock(key);
  const int64_t now = txn.now_ms();
  const int64_t base = relative ? now : 0;
  if (when > INT64_MAX - base) {
    txn.Unlock();
    InvalidExpireTime(ctx.w, command);
    return Action::kNone;
  }
  when += base;
  std::optional<shm::EntryView> entry = txn.Find(key);
  bool ok = entry.has_value();
  if (ok && flags != 0) {
    const int64_t current = entry->expire_ms == 0 ? -1 : entry->expire_ms;
    if ((flags & kExpireNx) && current != -1) ok = false;
    if ((flags & kExpireXx) && current == -1) ok = false;
    if ((flags & kExpireGt) && (current == -1 || when <= current)) ok = false;
    if ((flags & kExpireLt) && current != -1 && when >= current) ok = false;
  }
  if (ok) {
    // A time not in the future deletes the key (the store's 0 means "no
    // expire time", so it must never be stored as one).
    if (when <= now) {
      txn.Erase(key);
    } else {
      txn.SetExpire(key, when);
    }
  }
  txn.Unlock();
  ctx.w.Int(ok ? 1 : 0);
  return Action::kNone;
}

Action CmdExpire(CommandContext& ctx) { return ExpireGeneric(ctx, "expire", true, true); }
Action CmdPexpire(CommandContext& ctx) { return ExpireGeneric(ctx, "pexpire", true, false); }
Action CmdExpireAt(CommandContext& ctx) { return ExpireGeneric(ctx, "expireat", false, true); }
Action CmdPexpireAt(CommandContext& ctx) { return ExpireGeneric(ctx, "pexpireat", false, false); }

// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 for a key
// without an expire time; seconds are rounded to the nearest, as Redis does.
Action TtlGeneric(CommandContext& ctx, bool ms, bool absolute) {
  shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[1]);
  std::optional<shm::EntryView> entry = CountLookup(ctx, txn.Peek(ctx.args[1]));
  const int64_t now = txn.now_ms();
  txn.Unlock();
  if (!entry) {
    ctx.w.Int(-2);
  } else if (entry->expire_ms == 0) {
    ctx.w.Int(-1);
  } else {
    int64_t ttl = absolute ? entry->expire_ms : entry->expire_ms - now;
    if (ttl < 0) ttl = 0;
    // (ttl + 500) / 1000 without overflowing near INT64_MAX.
    ctx.w.Int(ms ? ttl : ttl / 1000 + (ttl % 1000 + 500) / 1000);
  }
  return Action::kNone;
}

Action CmdTtl(CommandContext& ctx) { return TtlGeneric(ctx, false, false); }
Action CmdPttl(CommandContext& ctx) { return TtlGeneric(ctx, true, false); }
Action CmdExpireTime(CommandContext& ctx) { return TtlGeneric(ctx, false, true); }
Action CmdPexpireTime(CommandContext& ctx) { return TtlGeneric(ctx, true, true); }

Action CmdPersist(CommandContext& ctx) {
  shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[1]);
  std::optional<shm::EntryView> entry = txn.Find(ctx.args[1]);
  bool removed = entry && entry->expire_ms != 0 && txn.SetExpire(ctx.args[1], 0);
  txn.Unlock();
  ctx.w.Int(removed ? 1 : 0);
  return Action::kNone;
}

// Arity, flags and key positions as Redis 7.0's COMMAND INFO gives them.
const CommandSpec kKeyspaceCommands[] = {
    // name, arity, flags, ACL categories, first key, last key, step, handler, slot
    {"dbsize", 1, kReadOnly | kFast | kWholeStore, kAclKeyspace, 0, 0, 0, CmdDbsize, 32},
    {"del", -2, kWrite, kAclKeyspace, 1, -1, 1, CmdDel, 33},
    {"exists", -2, kReadOnly | kFast, kAclKeyspace, 1, -1, 1, CmdExists, 34},
    {"expire", -3, kWrite | kFast, kAclKeyspace, 1, 1, 1, CmdExpire, 35},
    {"expireat", -3, kWrite | kFast, kAclKeyspace, 1, 1, 1, CmdExpireAt, 36},
    {"expiretime", 2, kReadOnly | kFast, kAclKeyspace, 1, 1, 1, CmdExpireTime, 37},
    {"flushall", -1, kWrite | kWholeStore, kAclKeyspace | kAclDangerous, 0, 0, 0, CmdFlush, 38},
    {"flushdb", -1, kWrite | kWholeStore, kAclKeyspace | kAclDangerous, 0, 0, 0, CmdFlush, 39},
    {"keys", 2, kReadOnly | kWholeStore, kAclKeyspace | kAclDangerous, 0, 0, 0, CmdKeys, 40},
    {"persist", 2, kWrite | kFast, kAclKeyspace, 1, 1, 1, CmdPersist, 41},
    {"pexpire", -3, kWrite | kFast, kAclKeyspace, 1, 1, 1, CmdPexpire, 42},
    {"pexpireat", -3, kWrite | kFast, kAclKeyspace, 1, 1, 1, CmdPexpireAt, 43},
    {"pexpiretime", 2, kReadOnly | kFast, kAclKeyspace, 1, 1, 1, CmdPexpireTime, 44},
    {"pttl", 2, kReadOnly | kFast, kAclKeyspace, 1, 1, 1, CmdPttl, 45},
    {"randomkey", 1, kReadOnly | kWholeStore, kAclKeyspace, 0, 0, 0, CmdRandomKey, 46},
    {"rename", 3, kWrite, kAclKeyspace, 1, 2, 1, CmdRename, 47},
    {"renamenx", 3, kWrite | kFast, kAclKeyspace, 1, 2, 1, CmdRenameNx, 48},
    {"scan", -2, kReadOnly | kWholeStore, kAclKeyspace, 0, 0, 0, CmdScan, 49},
    {"touch", -2, kReadOnly | kFast, kAclKeyspace, 1, -1, 1, CmdTouch, 50},
    {"ttl", 2, kReadOnly | kFast, kAclKeyspace, 1, 1, 1, CmdTtl, 51},
    {"type", 2, kReadOnly | kFast, kAclKeyspace, 1, 1, 1, CmdType, 52},
    {"unlink", -2, kWrite | kFast, kAclKeyspace, 1, -1, 1, CmdDel, 53},
};

}  // namespace

std::span<const CommandSpec> KeyspaceCommands() { return kKeyspaceCommands; }

}  // namespace redhub::worker
