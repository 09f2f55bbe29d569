// The string family over the shared store, with Redis 7.0's semantics,
// replies and error texts (src/t_string.c): SET and its options, GET and its
// variants (GETSET, GETDEL, GETEX), SETNX/SETEX/PSETEX, MGET/MSET/MSETNX,
// the counters (INCR... INCRBYFLOAT), APPEND, STRLEN, GETRANGE/SUBSTR and
// SETRANGE.
//
// Values are read in place: a Find's view stays valid while the Txn is held,
// so replies copy straight from shared memory. A value built from the old one
// (APPEND, SETRANGE) is written with PutWith, which copies the old view into
// the new entry directly. The store keeps only strings: WRONGTYPE never
// arises.
//
// Memory: Redis refuses a deny-oom command before running it; here the store
// refuses the write itself (kOom). A reply already written for the command
// (SET ... GET's old value, GETSET's) is taken back, so the client sees only
// the OOM error, as from Redis.
#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "command_util.h"
#include "event_loop.h"
#include "store.h"

namespace redhub::worker {
namespace {

constexpr std::string_view kErrOverflow = "ERR increment or decrement would overflow";
constexpr std::string_view kErrDecrOverflow = "ERR decrement would overflow";
constexpr std::string_view kErrNanOrInf = "ERR increment would produce NaN or Infinity";
constexpr std::string_view kErrOffset = "ERR offset is out of range";
constexpr std::string_view kErrTooBig =
    "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

// Redis's MAX_LONG_DOUBLE_CHARS: the longest INCRBYFLOAT operand, and room
// for any long double printed with "%.17Lf".
constexpr size_t kMaxLongDoubleChars = 5 * 1024;

// Answers a write the store refused. Whatever this command already wrote
// (from `mark` on) is taken back first.
void ReplyRefused(CommandContext& ctx, size_t mark) {
  ctx.w.buffer().resize(mark);
  ctx.w.Error(kErrOom);
}

// The longest string a command may build (APPEND, SETRANGE): Redis 7.0
// checks it against proto-max-bulk-len.
uint64_t MaxStringLen(CommandContext& ctx) { return ctx.conn.server().options().max_bulk_len; }

// Redis's string2ld, for INCRBYFLOAT: no leading blank, nothing after the
// number, not NaN; an overflow or an underflow to zero is refused, a
// denormal result accepted. strtold stops at a NUL byte, so the parse must
// have used all of s: "1", NUL, "3" is no number (it would read as 1).
bool ParseRedisLongDouble(std::string_view s, long double* out) {
  char buf[kMaxLongDoubleChars];
  if (s.empty() || s.size() >= sizeof(buf)) return false;
  memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  char* end;
  errno = 0;
  long double v = strtold(buf, &end);
  if (isspace(static_cast<unsigned char>(buf[0])) || end != buf + s.size() ||
      (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || v == 0)) || std::isnan(v)) {
    return false;
  }
  *out = v;
  return true;
}

// Redis's ld2string(LD_STR_HUMAN): "%.17Lf" without trailing zeros (nor a
// trailing '.'), and "-0" as "0". value is finite. Returns the length.
size_t FormatHumanLongDouble(long double value, char (&buf)[kMaxLongDoubleChars]) {
  int n = snprintf(buf, sizeof(buf), "%.17Lf", value);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof(buf))
    return 0;  // cannot happen for a finite value
  size_t len = static_cast<size_t>(n);
  if (memchr(buf, '.', len) != nullptr) {
    while (buf[len - 1] == '0') len--;
    if (buf[len - 1] == '.') len--;
  }
  if (len == 2 && buf[0] == '-' && buf[1] == '0') {
    buf[0] = '0';
    len = 1;
  }
  return len;
}

// ---- SET/GETEX options ----

enum StringFlag : uint32_t {
  kSetNx = 1 << 0,
  kSetXx = 1 << 1,
  kExpireEx = 1 << 2,
  kExpirePx = 1 << 3,
  kSetKeepTtl = 1 << 4,
  kSetGet = 1 << 5,
  kExpireExat = 1 << 6,
  kExpirePxat = 1 << 7,
  kPersist = 1 << 8,
};
constexpr uint32_t kAnyExpire = kExpireEx | kExpirePx | kExpireExat | kExpirePxat;

struct ExtendedArgs {
  uint32_t flags = 0;
  std::string_view expire;  // the argument of EX/PX/EXAT/PXAT, if one was given
};

enum class OptionsOf { kGetex, kSet };

// Redis's parseExtendedStringArgumentsOrReply: SET takes NX, XX, GET,
// KEEPTTL and one of EX/PX/EXAT/PXAT (repeating the same one is allowed, the
// last wins); GETEX takes PERSIST or one of EX/PX/EXAT/PXAT. Anything else,
// a conflict or a missing argument is "ERR syntax error".
bool ParseExtendedArgs(CommandContext& ctx, OptionsOf cmd, ExtendedArgs* out) {
  const bool set = cmd == OptionsOf::kSet;
  uint32_t& f = out->flags;
  for (size_t j = set ? 3 : 2; j < ctx.args.size(); j++) {
    std::string_view opt = ctx.args[j];
    const bool has_next = j + 1 < ctx.args.size();
    auto expire_option = [&](uint32_t flag, uint32_t conflicts) {
      if ((f & conflicts) != 0 || !has_next) return false;
      f |= flag;
      out->expire = ctx.args[++j];
      return true;
    };
    bool ok;
    if (EqualsNoCase(opt, "NX")) {
      ok = set && !(f & kSetXx);
      f |= kSetNx;
    } else if (EqualsNoCase(opt, "XX")) {
      ok = set && !(f & kSetNx);
      f |= kSetXx;
    } else if (EqualsNoCase(opt, "GET")) {
      ok = set;
      f |= kSetGet;
    } else if (EqualsNoCase(opt, "KEEPTTL")) {
      ok = set && !(f & (kPersist | kAnyExpire));
      f |= kSetKeepTtl;
    } else if (EqualsNoCase(opt, "PERSIST")) {
      ok = !set && !(f & (kAnyExpire | kSetKeepTtl));
      f |= kPersist;
    } else if (EqualsNoCase(opt, "EX")) {
      ok = expire_option(kExpireEx, kSetKeepTtl | kPersist | (kAnyExpire & ~kExpireEx));
    } else if (EqualsNoCase(opt, "PX")) {
      ok = expire_option(kExpirePx, kSetKeepTtl | kPersist | (kAnyExpire & ~kExpirePx));
    } else if (EqualsNoCase(opt, "EXAT")) {
      ok = expire_option(kExpireExat, kSetKeepTtl | kPersist | (kAnyExpire & ~kExpireExat));
    } else if (EqualsNoCase(opt, "PXAT")) {
      ok = expire_option(kExpirePxat, kSetKeepTtl | kPersist | (kAnyExpire & ~kExpirePxat));
    } else {
      ok = false;
    }
    if (!ok) {
      ctx.w.Error(kErrSyntax);
      return false;
    }
  }
  return true;
}

void InvalidExpireTime(CommandContext& ctx, std::string_view command) {
  std::string msg = "ERR invalid expire time in '";
  msg.append(command);
  msg += "' command";
  ctx.w.Error(msg);
}

// Redis's getExpireMillisecondsOrReply: the absolute unix ms that the
// EX/PX/EXAT/PXAT argument names (relative ones counted from now_ms), or
// false after replying with the error.
bool ExpireAtMs(CommandContext& ctx, std::string_view arg, uint32_t flags, std::string_view command,
                int64_t now_ms, int64_t* out) {
  int64_t ms;
  if (!ParseInt64(arg, &ms)) {
    ctx.w.Error(kErrNotInteger);
    return false;
  }
  const bool seconds = (flags & (kExpireEx | kExpireExat)) != 0;
  if (ms <= 0 || (seconds && ms > INT64_MAX / 1000)) {
    InvalidExpireTime(ctx, command);
    return false;
  }
  if (seconds) ms *= 1000;
  if ((flags & (kExpireEx | kExpirePx)) != 0 && __builtin_add_overflow(ms, now_ms, &ms)) {
    InvalidExpireTime(ctx, command);
    return false;
  }
  *out = ms;
  return true;
}

// ---- SET and its relatives ----

enum class SetReplies {
  kOkOrNull,  // SET, SETEX, PSETEX: +OK, or null when NX/XX stop it
  kOneOrZero  // SETNX: :1 or :0
};

// Redis's setGenericCommand. With GET the reply is the old value (or null),
// whether or not NX/XX let the write happen.
Action SetGeneric(CommandContext& ctx, uint32_t flags, std::string_view value,
                  std::string_view expire_arg, std::string_view command, SetReplies replies) {
  std::string_view key = ctx.args[1];
  shm::Store::Txn txn = ctx.service.store().Lock(key);
  int64_t expire_ms = (flags & kSetKeepTtl) ? shm::kKeepTtl : 0;
  if ((flags & kAnyExpire) &&
      !ExpireAtMs(ctx, expire_arg, flags, command, txn.now_ms(), &expire_ms)) {
    return Action::kNone;
  }
  const size_t mark = ctx.w.buffer().size();
  bool found = false;
  if (flags & (kSetGet | kSetNx | kSetXx)) {
    auto old = txn.Find(key);
    found = old.has_value();
    if (flags & kSetGet) {
      // Written now: the Put below frees the old value.
      if (found) {
        ctx.w.Bulk(old->value);
      } else {
        ctx.w.Null();
      }
    }
  }
  if (((flags & kSetNx) && found) || ((flags & kSetXx) && !found)) {
    if (flags & kSetGet) {
      CountLookup(ctx, found);
    } else if (replies == SetReplies::kOneOrZero) {
      ctx.w.Int(0);
    } else {
      ctx.w.Null();
    }
    return Action::kNone;
  }
  if (txn.Put(key, value, expire_ms) != shm::Status::kOk) {
    ReplyRefused(ctx, mark);
    return Action::kNone;
  }
  if (flags & kSetGet) {
    CountLookup(ctx, found);
  } else if (replies == SetReplies::kOneOrZero) {
    ctx.w.Int(1);
  } else {
    ctx.w.OK();
  }
  return Action::kNone;
}

// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT unix-s | PXAT unix-ms | KEEPTTL]
Action CmdSet(CommandContext& ctx) {
  ExtendedArgs opt;
  if (!ParseExtendedArgs(ctx, OptionsOf::kSet, &opt)) return Action::kNone;
  return SetGeneric(ctx, opt.flags, ctx.args[2], opt.expire, "set", SetReplies::kOkOrNull);
}

Action CmdSetnx(CommandContext& ctx) {
  return SetGeneric(ctx, kSetNx, ctx.args[2], {}, "setnx", SetReplies::kOneOrZero);
}

Action CmdSetex(CommandContext& ctx) {
  return SetGeneric(ctx, kExpireEx, ctx.args[3], ctx.args[2], "setex", SetReplies::kOkOrNull);
}

Action CmdPsetex(CommandContext& ctx) {
  return SetGeneric(ctx, kExpirePx, ctx.args[3], ctx.args[2], "psetex", SetReplies::kOkOrNull);
}

// ---- GET and its relatives ----

Action CmdGet(CommandContext& ctx) {
  // Most GETs take no lock: the reply is written straight from shared memory
  // and kept if the stripe did not change meanwhile (Store::ReadUnlocked).
  const size_t mark = ctx.w.buffer().size();
  auto read = ctx.service.store().ReadUnlocked(
      ctx.args[1], [&](const shm::EntryView& view) { ctx.w.Bulk(view.value); });
  if (read != shm::Store::ReadResult::kRetry) {
    const bool found = read == shm::Store::ReadResult::kFound;
    CountLookup(ctx, found);
    if (!found) ctx.w.Null();
    return Action::kNone;
  }
  ctx.w.buffer().resize(mark);
  shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[1]);
  auto e = txn.Find(ctx.args[1]);
  CountLookup(ctx, e.has_value());
  if (e) {
    ctx.w.Bulk(e->value);
  } else {
    ctx.w.Null();
  }
  return Action::kNone;
}

// GETSET key value: SET's reply is the old value; the new one has no TTL.
Action CmdGetset(CommandContext& ctx) {
  std::string_view key = ctx.args[1];
  shm::Store::Txn txn = ctx.service.store().Lock(key);
  const size_t mark = ctx.w.buffer().size();
  auto old = txn.Find(key);
  const bool found = old.has_value();
  if (found) {
    ctx.w.Bulk(old->value);  // before the Put frees it
  } else {
    ctx.w.Null();
  }
  if (txn.Put(key, ctx.args[2], 0) != shm::Status::kOk) {
    ReplyRefused(ctx, mark);
    return Action::kNone;
  }
  CountLookup(ctx, found);
  return Action::kNone;
}

Action CmdGetdel(CommandContext& ctx) {
  std::string_view key = ctx.args[1];
  shm::Store::Txn txn = ctx.service.store().Lock(key);
  auto e = txn.Find(key);
  CountLookup(ctx, e.has_value());
  if (!e) {
    ctx.w.Null();
    return Action::kNone;
  }
  ctx.w.Bulk(e->value);  // before the Erase frees it
  txn.Erase(key);
  return Action::kNone;
}

// GETEX key [EX s | PX ms | EXAT unix-s | PXAT unix-ms | PERSIST]. As Redis:
// a missing key is null before the expire time is checked, and an EXAT/PXAT
// already past deletes the key after replying with its value.
Action CmdGetex(CommandContext& ctx) {
  ExtendedArgs opt;
  if (!ParseExtendedArgs(ctx, OptionsOf::kGetex, &opt)) return Action::kNone;
  std::string_view key = ctx.args[1];
  shm::Store::Txn txn = ctx.service.store().Lock(key);
  auto e = txn.Find(key);
  CountLookup(ctx, e.has_value());
  if (!e) {
    ctx.w.Null();
    return Action::kNone;
  }
  int64_t expire_ms = 0;
  if ((opt.flags & kAnyExpire) &&
      !ExpireAtMs(ctx, opt.expire, opt.flags, "getex", txn.now_ms(), &expire_ms)) {
    return Action::kNone;
  }
  ctx.w.Bulk(e->value);
  if ((opt.flags & (kExpireExat | kExpirePxat)) && expire_ms <= txn.now_ms()) {
    txn.Erase(key);
  } else if (opt.flags & kAnyExpire) {
    txn.SetExpire(key, expire_ms);
  } else if (opt.flags & kPersist) {
    txn.SetExpire(key, 0);
  }
  return Action::kNone;
}

// ---- multi-key ----

// The keys of a key-value argument list (MSET key value [key value ...]) as
// views for LockKeys: on the stack for the usual few, on the heap beyond.
class PairKeys {
 public:
  explicit PairKeys(std::span<const std::string_view> args) {
    const size_t n = (args.size() - 1) / 2;
    std::string_view* keys = inline_.data();
    if (n > inline_.size()) {
      heap_.resize(n);
      keys = heap_.data();
    }
    for (size_t i = 0; i < n; i++) keys[i] = args[1 + 2 * i];
    keys_ = {keys, n};
  }
  std::span<const std::string_view> keys() const { return keys_; }

 private:
  std::array<std::string_view, 16> inline_;
  std::vector<std::string_view> heap_;
  std::span<const std::string_view> keys_;
};

// All keys' stripes are held together, so MGET sees an MSET from another
// client entirely or not at all.
Action CmdMget(CommandContext& ctx) {
  std::span<const std::string_view> keys = ctx.args.subspan(1);
  shm::Store::Txn txn = ctx.service.store().LockKeys(keys);
  ctx.w.Array(static_cast<int64_t>(keys.size()));
  for (std::string_view key : keys) {
    if (ctx.w.overflowed()) break;  // the client is closed after this command
    auto e = txn.Find(key);
    CountLookup(ctx, e.has_value());
    if (e) {
      ctx.w.Bulk(e->value);
    } else {
      ctx.w.Null();
    }
  }
  return Action::kNone;
}

// MSET's and MSETNX's writes: every key value pair of the arguments, no
// TTL. False after a refusal: the Txn aborted (no key changed) and the
// error written.
bool PutPairs(CommandContext& ctx, shm::Store::Txn& txn) {
  for (size_t i = 1; i < ctx.args.size(); i += 2) {
    if (txn.Put(ctx.args[i], ctx.args[i + 1], 0) != shm::Status::kOk) {
      txn.Abort();
      ctx.w.Error(kErrOom);
      return false;
    }
  }
  return true;
}

// MSET key value [key value ...]: atomic with respect to other clients (all
// stripes held) and all or nothing: if the store refuses a key halfway, the
// Txn is aborted and no key changes (as Redis, which refuses the whole
// command up front). With one key the Txn does not stage, but then the
// refused Put is its only write and changed nothing, which Abort allows.
Action CmdMset(CommandContext& ctx) {
  if (ctx.args.size() % 2 == 0) {
    WrongArity(ctx.w, "mset");
    return Action::kNone;
  }
  PairKeys keys(ctx.args);
  shm::Store::Txn txn = ctx.service.store().LockKeys(keys.keys());
  if (PutPairs(ctx, txn)) ctx.w.OK();
  return Action::kNone;
}

// MSETNX: 0 and no change if any key exists, else sets them all and 1. A
// refusal halfway aborts the Txn, so the command is all or nothing here too.
Action CmdMsetnx(CommandContext& ctx) {
  if (ctx.args.size() % 2 == 0) {
    WrongArity(ctx.w, "msetnx");
    return Action::kNone;
  }
  PairKeys keys(ctx.args);
  shm::Store::Txn txn = ctx.service.store().LockKeys(keys.keys());
  for (std::string_view key : keys.keys()) {
    if (txn.Find(key)) {
      ctx.w.Int(0);
      return Action::kNone;
    }
  }
  if (PutPairs(ctx, txn)) ctx.w.Int(1);
  return Action::kNone;
}

// ---- counters ----

// INCR/DECR/INCRBY/DECRBY: a missing key counts as 0; the key keeps its TTL.
Action IncrDecr(CommandContext& ctx, int64_t incr) {
  std::string_view key = ctx.args[1];
  shm::Store::Txn txn = ctx.service.store().Lock(key);
  int64_t value = 0;
  if (auto e = txn.Find(key); e && !ParseInt64(e->value, &value)) {
    ctx.w.Error(kErrNotInteger);
    return Action::kNone;
  }
  if (__builtin_add_overflow(value, incr, &value)) {
    ctx.w.Error(kErrOverflow);
    return Action::kNone;
  }
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  if (txn.Put(key, std::string_view(buf, end - buf), shm::kKeepTtl) != shm::Status::kOk) {
    ctx.w.Error(kErrOom);
    return Action::kNone;
  }
  ctx.w.Int(value);
  return Action::kNone;
}

Action CmdIncr(CommandContext& ctx) { return IncrDecr(ctx, 1); }
Action CmdDecr(CommandContext& ctx) { return IncrDecr(ctx, -1); }

Action CmdIncrby(CommandContext& ctx) {
  int64_t incr;
  if (!ParseInt64(ctx.args[2], &incr)) {
    ctx.w.Error(kErrNotInteger);
    return Action::kNone;
  }
  return IncrDecr(ctx, incr);
}

Action CmdDecrby(CommandContext& ctx) {
  int64_t decr;
  if (!ParseInt64(ctx.args[2], &decr)) {
    ctx.w.Error(kErrNotInteger);
    return Action::kNone;
  }
  if (decr == INT64_MIN) {  // -decr would overflow
    ctx.w.Error(kErrDecrOverflow);
    return Action::kNone;
  }
  return IncrDecr(ctx, -decr);
}

// INCRBYFLOAT: long double arithmetic, the result stored and replied (as a
// bulk string, in RESP3 too) in Redis's human format: "10.6", "5200".
Action CmdIncrbyfloat(CommandContext& ctx) {
  std::string_view key = ctx.args[1];
  shm::Store::Txn txn = ctx.service.store().Lock(key);
  long double value = 0;
  long double incr;
  auto e = txn.Find(key);
  if ((e && !ParseRedisLongDouble(e->value, &value)) || !ParseRedisLongDouble(ctx.args[2], &incr)) {
    ctx.w.Error(kErrNotFloat);
    return Action::kNone;
  }
  value += incr;
  if (std::isnan(value) || std::isinf(value)) {
    ctx.w.Error(kErrNanOrInf);
    return Action::kNone;
  }
  char buf[kMaxLongDoubleChars];
  std::string_view result(buf, FormatHumanLongDouble(value, buf));
  if (txn.Put(key, result, shm::kKeepTtl) != shm::Status::kOk) {
    ctx.w.Error(kErrOom);
    return Action::kNone;
  }
  ctx.w.Bulk(result);
  return Action::kNone;
}

// ---- APPEND, STRLEN, ranges ----

// True if a string of old_len + add bytes is allowed; otherwise replies with
// Redis's error.
bool CheckStringLength(CommandContext& ctx, uint64_t old_len, uint64_t add) {
  uint64_t total = old_len + add;
  if (total < old_len || total > MaxStringLen(ctx)) {
    ctx.w.Error(kErrTooBig);
    return false;
  }
  return true;
}

Action CmdAppend(CommandContext& ctx) {
  std::string_view key = ctx.args[1];
  std::string_view suffix = ctx.args[2];
  shm::Store::Txn txn = ctx.service.store().Lock(key);
  auto e = txn.Find(key);
  if (!e) {
    if (txn.Put(key, suffix, 0) != shm::Status::kOk) {
      ctx.w.Error(kErrOom);
      return Action::kNone;
    }
    ctx.w.Int(static_cast<int64_t>(suffix.size()));
    return Action::kNone;
  }
  std::string_view old = e->value;
  if (!CheckStringLength(ctx, old.size(), suffix.size())) return Action::kNone;
  if (!suffix.empty()) {
    // The old value is copied from shared memory straight into the new
    // entry; it stays readable until the fill returns.
    shm::Status status =
        txn.PutWith(key, old.size() + suffix.size(), shm::kKeepTtl, [&](char* dst) {
          if (!old.empty()) memcpy(dst, old.data(), old.size());
          memcpy(dst + old.size(), suffix.data(), suffix.size());
        });
    if (status != shm::Status::kOk) {
      ctx.w.Error(kErrOom);
      return Action::kNone;
    }
  }
  ctx.w.Int(static_cast<int64_t>(old.size() + suffix.size()));
  return Action::kNone;
}

Action CmdStrlen(CommandContext& ctx) {
  shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[1]);
  auto e = txn.Find(ctx.args[1]);
  CountLookup(ctx, e.has_value());
  ctx.w.Int(e ? static_cast<int64_t>(e->value.size()) : 0);
  return Action::kNone;
}

// GETRANGE/SUBSTR key start end: inclusive, negative indexes count from the
// end; a missing key or an empty range is "".
Action CmdGetrange(CommandContext& ctx) {
  int64_t start, end;
  if (!ParseInt64(ctx.args[2], &start) || !ParseInt64(ctx.args[3], &end)) {
    ctx.w.Error(kErrNotInteger);
    return Action::kNone;
  }
  shm::Store::Txn txn = ctx.service.store().Lock(ctx.args[1]);
  auto e = txn.Find(ctx.args[1]);
  CountLookup(ctx, e.has_value());
  if (!e) {
    ctx.w.Bulk("");
    return Action::kNone;
  }
  const std::string_view s = e->value;
  const auto len = static_cast<int64_t>(s.size());  // at most 4 GB
  if (start < 0 && end < 0 && start > end) {
    ctx.w.Bulk("");
    return Action::kNone;
  }
  if (start < 0) start = std::max<int64_t>(len + start, 0);
  if (end < 0) end = std::max<int64_t>(len + end, 0);
  if (end >= len) end = len - 1;
  if (len == 0 || start > end) {
    ctx.w.Bulk("");
  } else {
    ctx.w.Bulk(s.substr(static_cast<size_t>(start), static_cast<size_t>(end - start + 1)));
  }
  return Action::kNone;
}

// SETRANGE key offset value: overwrites from offset, padding with zero bytes;
// returns the new length. An empty value changes nothing (and creates no
// key). The key keeps its TTL.
Action CmdSetrange(CommandContext& ctx) {
  std::string_view key = ctx.args[1];
  std::string_view value = ctx.args[3];
  int64_t offset;
  if (!ParseInt64(ctx.args[2], &offset)) {
    ctx.w.Error(kErrNotInteger);
    return Action::kNone;
  }
  if (offset < 0) {
    ctx.w.Error(kErrOffset);
    return Action::kNone;
  }
  shm::Store::Txn txn = ctx.service.store().Lock(key);
  auto e = txn.Find(key);
  const std::string_view old = e ? e->value : std::string_view();
  if (value.empty()) {
    ctx.w.Int(static_cast<int64_t>(old.size()));
    return Action::kNone;
  }
  if (!CheckStringLength(ctx, static_cast<uint64_t>(offset), value.size())) return Action::kNone;
  const size_t at = static_cast<size_t>(offset);
  const size_t new_len = std::max(old.size(), at + value.size());
  shm::Status status = txn.PutWith(key, new_len, e ? shm::kKeepTtl : 0, [&](char* dst) {
    if (!old.empty()) memcpy(dst, old.data(), old.size());
    if (at > old.size()) memset(dst + old.size(), 0, at - old.size());
    memcpy(dst + at, value.data(), value.size());
  });
  if (status != shm::Status::kOk) {
    ctx.w.Error(kErrOom);
    return Action::kNone;
  }
  ctx.w.Int(static_cast<int64_t>(new_len));
  return Action::kNone;
}

// Arity, flags and key positions as Redis 7.0's COMMAND INFO gives them.
const CommandSpec kStringCommands[] = {
    // name, arity, flags, ACL categories, first key, last key, step, handler, slot
    {"append", 3, kWrite | kDenyOom | kFast, kAclString, 1, 1, 1, CmdAppend, 11},
    {"decr", 2, kWrite | kDenyOom | kFast, kAclString, 1, 1, 1, CmdDecr, 12},
    {"decrby", 3, kWrite | kDenyOom | kFast, kAclString, 1, 1, 1, CmdDecrby, 13},
    {"get", 2, kReadOnly | kFast, kAclString, 1, 1, 1, CmdGet, 14},
    {"getdel", 2, kWrite | kFast, kAclString, 1, 1, 1, CmdGetdel, 15},
    {"getex", -2, kWrite | kFast, kAclString, 1, 1, 1, CmdGetex, 16},
    {"getrange", 4, kReadOnly, kAclString, 1, 1, 1, CmdGetrange, 17},
    {"getset", 3, kWrite | kDenyOom | kFast, kAclString, 1, 1, 1, CmdGetset, 18},
    {"incr", 2, kWrite | kDenyOom | kFast, kAclString, 1, 1, 1, CmdIncr, 19},
    {"incrby", 3, kWrite | kDenyOom | kFast, kAclString, 1, 1, 1, CmdIncrby, 20},
    {"incrbyfloat", 3, kWrite | kDenyOom | kFast, kAclString, 1, 1, 1, CmdIncrbyfloat, 21},
    {"mget", -2, kReadOnly | kFast, kAclString, 1, -1, 1, CmdMget, 22},
    {"mset", -3, kWrite | kDenyOom, kAclString, 1, -1, 2, CmdMset, 23},
    {"msetnx", -3, kWrite | kDenyOom, kAclString, 1, -1, 2, CmdMsetnx, 24},
    {"psetex", 4, kWrite | kDenyOom, kAclString, 1, 1, 1, CmdPsetex, 25},
    {"set", -3, kWrite | kDenyOom, kAclString, 1, 1, 1, CmdSet, 26},
    {"setex", 4, kWrite | kDenyOom, kAclString, 1, 1, 1, CmdSetex, 27},
    {"setnx", 3, kWrite | kDenyOom | kFast, kAclString, 1, 1, 1, CmdSetnx, 28},
    {"setrange", 4, kWrite | kDenyOom, kAclString, 1, 1, 1, CmdSetrange, 29},
    {"strlen", 2, kReadOnly | kFast, kAclString, 1, 1, 1, CmdStrlen, 30},
    {"substr", 4, kReadOnly, kAclString, 1, 1, 1, CmdGetrange, 31},
};

}  // namespace

std::span<const CommandSpec> StringCommands() { return kStringCommands; }

}  // namespace redhub::worker
