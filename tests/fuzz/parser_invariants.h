// Invariants of redhub::resp::Parser on arbitrary bytes, shared by the
// libFuzzer target (parser_fuzz.cc, built with clang) and the replay test
// (replay_test.cc, built with the project's compiler).
//
// CheckParserInvariants(data, size) parses the bytes three ways and checks
// every call:
//  1. as one buffer that is all there is;
//  2. as a stream arriving in pieces whose sizes are derived from the first
//     bytes of the input, each Parse call getting the unconsumed bytes in a
//     fresh heap copy of exactly their size (so a kept pointer or a read past
//     the end shows up under ASan), the previous copy scribbled over first;
//     and, for short inputs, byte by byte the same way;
//  3. in pieces again with tiny ParserLimits, so the limit paths are reached.
// Runs 1 and 2 must produce the same commands, the same final status and the
// same error. Every command must be well formed for its kind: a multibulk
// command's arguments are views of its raw bytes in order, each right after
// its "$<len>\r\n"; an inline or Tile38 command's arguments are what
// SplitArgs makes of its line or payload.
#pragma once

#include <redhub/resp.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace redhub::resp::fuzz {

struct ParsedCommand {
  std::vector<std::string> args;
  Kind kind = Kind::kMultibulk;
  std::string raw;
  size_t skipped = 0;  // bytes of empty requests before raw
  bool operator==(const ParsedCommand&) const = default;
};

struct ParseOutcome {
  std::vector<ParsedCommand> cmds;
  ParseStatus last = ParseStatus::kNeedMore;  // kNeedMore or kError
  std::string error;
  size_t consumed = 0;
};

// before + n + after, built with append: g++ 12 gives a false -Wrestrict
// warning for "literal" + std::to_string(n).
inline std::string Cat(std::string_view before, size_t n, std::string_view after) {
  std::string out(before);
  out.append(std::to_string(n)).append(after);
  return out;
}

class InvariantChecker {
 public:
  // The first violation found, or "" if none.
  const std::string& failure() const { return failure_; }

  // Records `what` as a violation unless `ok`; returns ok.
  bool Expect(bool ok, const std::string& what) {
    if (!ok && failure_.empty()) failure_ = what;
    return ok;
  }

  // Checks one Parse call on data[0, len), made by `parser`, that returned
  // `st` with `cmd` and `used`. On kComplete also appends the command.
  bool CheckCall(const Parser& parser, const char* data, size_t len, ParseStatus st,
                 const Command& cmd, size_t used, ParseOutcome* out) {
    if (st == ParseStatus::kError) {
      out->last = st;
      out->error = parser.Error();
      return Expect(parser.Error().rfind("ERR Protocol error: ", 0) == 0,
                    "error text does not start with \"ERR Protocol error: \": " + parser.Error());
    }
    if (st == ParseStatus::kNeedMore) {
      out->last = st;
      return Expect(used == 0, "kNeedMore consumed bytes") &&
             Expect(parser.Pending() <= len, "Pending() beyond the data");
    }
    if (!Expect(st == ParseStatus::kComplete, "unknown status") ||
        !Expect(used > 0 && used <= len, "consumed is 0 or beyond the data") ||
        !Expect(parser.Pending() == 0, "Pending() not 0 after a complete command") ||
        !Expect(!cmd.raw.empty() && cmd.raw.data() >= data &&
                    cmd.raw.data() + cmd.raw.size() == data + used,
                "raw is not the tail of the consumed bytes") ||
        !Expect(!cmd.args.empty(), "a complete command without arguments")) {
      return false;
    }
    size_t skipped = static_cast<size_t>(cmd.raw.data() - data);
    if (skipped > 0) {
      // What was skipped must be empty requests only.
      Parser fresh(parser.limits());
      Command c;
      size_t u;
      if (!Expect(fresh.Parse(data, skipped, &c, &u) == ParseStatus::kNeedMore,
                  "skipped bytes are not only empty requests")) {
        return false;
      }
    }
    ParsedCommand p;
    p.kind = cmd.kind;
    p.raw = std::string(cmd.raw);
    p.skipped = skipped;
    for (std::string_view a : cmd.args) p.args.emplace_back(a);  // reads every byte
    if (!CheckCommand(parser.limits(), data, len, cmd)) return false;
    out->cmds.push_back(std::move(p));
    out->consumed += used;
    return true;
  }

 private:
  static bool Within(std::string_view inner, const char* lo, size_t n) {
    return inner.data() >= lo && inner.data() + inner.size() <= lo + n;
  }

  bool CheckSplit(std::string_view line, const Command& cmd, const char* data, size_t len) {
    std::string storage;
    storage.reserve(line.size());
    std::vector<std::string_view> want;
    if (!Expect(SplitArgs(line, &storage, &want), "complete command whose line does not split")) {
      return false;
    }
    if (!Expect(want.size() == cmd.args.size(), "argument count differs from SplitArgs")) {
      return false;
    }
    // Unescaped arguments are not in the buffer but in one piece of storage
    // no longer than the line.
    const char* lo = nullptr;
    const char* hi = nullptr;
    for (size_t i = 0; i < want.size(); i++) {
      std::string_view a = cmd.args[i];
      if (!Expect(a == want[i], "argument differs from SplitArgs")) return false;
      if (a.empty() || Within(a, data, len)) continue;
      if (lo == nullptr || a.data() < lo) lo = a.data();
      if (hi == nullptr || a.data() + a.size() > hi) hi = a.data() + a.size();
    }
    return Expect(lo == nullptr || static_cast<size_t>(hi - lo) <= line.size(),
                  "arguments lie neither in the buffer nor in one scratch area");
  }

  bool CheckCommand(const ParserLimits& limits, const char* data, size_t len, const Command& cmd) {
    std::string_view raw = cmd.raw;
    switch (cmd.kind) {
      case Kind::kMultibulk: {
        // Like Redis, the parser takes the byte after a header's CR and the
        // two bytes after a payload as line ends without looking at them.
        std::string head = Cat("*", cmd.args.size(), "\r");
        if (!Expect(raw.substr(0, head.size()) == head, "multibulk raw does not start *<argc>") ||
            !Expect(static_cast<int64_t>(cmd.args.size()) <= limits.max_multibulk_len,
                    "more arguments than max_multibulk_len")) {
          return false;
        }
        const char* at = raw.data() + head.size() + 1;
        for (std::string_view a : cmd.args) {
          std::string bulk = Cat("$", a.size(), "\r");
          if (!Expect(Within(a, raw.data(), raw.size()), "multibulk argument outside raw") ||
              !Expect(a.size() <= limits.max_bulk_len, "argument over max_bulk_len") ||
              !Expect(a.data() == at + bulk.size() + 1 && std::string_view(at, bulk.size()) == bulk,
                      "multibulk argument not right after its $<len> header")) {
            return false;
          }
          at = a.data() + a.size() + 2;
        }
        return Expect(at == raw.data() + raw.size(), "multibulk raw does not end after the last");
      }
      case Kind::kInline: {
        if (!Expect(raw.back() == '\n', "inline raw does not end in LF") ||
            !Expect(raw[0] != '*' && raw[0] != '$', "inline command starting with * or $")) {
          return false;
        }
        std::string_view line = raw.substr(0, raw.size() - 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        return Expect(line.find('\n') == std::string_view::npos, "inline line holds an LF") &&
               Expect(line.size() <= limits.max_inline_len, "inline line over max_inline_len") &&
               CheckSplit(line, cmd, data, len);
      }
      case Kind::kTile38: {
        size_t sp = raw.find(' ');
        if (!Expect(raw[0] == '$' && sp != std::string_view::npos && raw.size() >= sp + 3 &&
                        raw.substr(raw.size() - 2) == "\r\n",
                    "Tile38 raw is not $<len> <payload>\\r\\n")) {
          return false;
        }
        std::string_view payload = raw.substr(sp + 1, raw.size() - sp - 3);
        return Expect(raw.substr(1, sp - 1) == std::to_string(payload.size()),
                      "Tile38 length differs from the payload") &&
               Expect(payload.size() <= limits.max_bulk_len, "Tile38 payload over max_bulk_len") &&
               CheckSplit(payload, cmd, data, len);
      }
    }
    return Expect(false, "unknown kind");
  }

  std::string failure_;
};

// Parses data[0, size) as one buffer, up to kNeedMore or kError.
inline ParseOutcome ParseWhole(InvariantChecker& check, const char* data, size_t size,
                               ParserLimits limits) {
  Parser parser(limits);
  ParseOutcome out;
  while (check.failure().empty()) {
    Command cmd;
    size_t used = 7;
    const char* p = data + out.consumed;
    size_t len = size - out.consumed;
    ParseStatus st = parser.Parse(p, len, &cmd, &used);
    check.CheckCall(parser, p, len, st, cmd, used, &out);
    if (st != ParseStatus::kComplete) break;
  }
  return out;
}

// A small deterministic generator of piece sizes, seeded from the input.
class PieceSizes {
 public:
  PieceSizes(const uint8_t* data, size_t size) {
    state_ = 0x9e3779b97f4a7c15ull ^ size;
    for (size_t i = 0; i < size && i < 4; i++) state_ = (state_ ^ data[i]) * 0x100000001b3ull;
    if (state_ == 0) state_ = 1;
  }
  size_t Next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    static constexpr size_t kMax[] = {1, 8, 64, 512};
    return 1 + (state_ >> 8) % kMax[state_ & 3];
  }

 private:
  uint64_t state_;
};

// Parses data[0, size) arriving in pieces; next_piece() gives each size.
template <class NextPiece>
ParseOutcome ParseInPieces(InvariantChecker& check, const char* data, size_t size,
                           ParserLimits limits, NextPiece next_piece) {
  Parser parser(limits);
  ParseOutcome out;
  size_t avail = 0;
  std::unique_ptr<char[]> copy;
  size_t copy_len = 0;
  while (check.failure().empty()) {
    avail = avail + next_piece();
    if (avail > size) avail = size;
    ParseStatus st;
    do {
      size_t len = avail - out.consumed;
      // A fresh copy of exactly the unconsumed bytes, at a new address.
      std::unique_ptr<char[]> next(new char[len > 0 ? len : 1]);
      if (len > 0) memcpy(next.get(), data + out.consumed, len);
      if (copy) memset(copy.get(), '#', copy_len);
      copy = std::move(next);
      copy_len = len;
      Command cmd;
      size_t used = 7;
      st = parser.Parse(copy.get(), len, &cmd, &used);
      check.CheckCall(parser, copy.get(), len, st, cmd, used, &out);
    } while (st == ParseStatus::kComplete && check.failure().empty());
    if (st == ParseStatus::kError || avail == size) break;
  }
  return out;
}

inline void CompareOutcomes(InvariantChecker& check, const ParseOutcome& whole,
                            const ParseOutcome& pieces, const char* how) {
  std::string h = how;
  check.Expect(whole.cmds.size() == pieces.cmds.size(), h + ": command count differs");
  for (size_t i = 0; i < whole.cmds.size() && i < pieces.cmds.size(); i++) {
    check.Expect(whole.cmds[i] == pieces.cmds[i],
                 h + ": command " + std::to_string(i) + " differs");
  }
  check.Expect(whole.last == pieces.last, h + ": final status differs");
  check.Expect(whole.error == pieces.error, h + ": error differs");
  check.Expect(whole.consumed == pieces.consumed, h + ": consumed differs");
}

// Returns "" if the parser keeps every invariant on the input, else the
// first violation.
inline std::string CheckParserInvariants(const uint8_t* bytes, size_t size) {
  const char* data = reinterpret_cast<const char*>(bytes);
  InvariantChecker check;
  const ParserLimits defaults;
  ParseOutcome whole = ParseWhole(check, data, size, defaults);

  PieceSizes sizes(bytes, size);
  ParseOutcome pieces =
      ParseInPieces(check, data, size, defaults, [&sizes] { return sizes.Next(); });
  // Only a line or header longer than max_inline_len can make the answer
  // depend on where the input was split (Redis's rule: more than that many
  // bytes without a line end is an error even if the line end comes next).
  if (check.failure().empty() && size <= defaults.max_inline_len) {
    CompareOutcomes(check, whole, pieces, "random pieces");
  }
  if (check.failure().empty() && size <= 256) {
    ParseOutcome bytewise = ParseInPieces(check, data, size, defaults, [] { return size_t{1}; });
    if (check.failure().empty()) CompareOutcomes(check, whole, bytewise, "byte by byte");
  }

  ParserLimits tiny;
  tiny.max_bulk_len = 8;
  tiny.max_multibulk_len = 4;
  tiny.max_inline_len = 16;
  PieceSizes tiny_sizes(bytes, size);
  if (check.failure().empty()) {
    ParseInPieces(check, data, size, tiny, [&tiny_sizes] { return tiny_sizes.Next(); });
  }
  return check.failure();
}

}  // namespace redhub::resp::fuzz
