// The RESP request parser. Its structure follows Redis's processInlineBuffer
// and processMultibulkBuffer (src/networking.c) so that every malformed
// request gets the reply Redis gives, but it resumes where it stopped instead
// of rescanning, and it never copies a multibulk argument.
#include <redhub/resp.h>

#include <cstring>

namespace redhub::resp {
namespace {

// Redis's string2ll: an optional '-', then digits with no leading zero, no
// '+', no blanks, and no overflow. Anything else is not a number.
bool ParseInt64Raw(const char* p, size_t len, int64_t* out) {
  if (len == 0 || len > 20) return false;
  bool negative = false;
  size_t i = 0;
  if (p[0] == '-') {
    negative = true;
    if (++i == len) return false;
  }
  if (p[i] == '0') {
    if (len == 1) {
      *out = 0;
      return true;
    }
    return false;
  }
  uint64_t v = 0;
  for (; i < len; i++) {
    unsigned d = static_cast<unsigned char>(p[i]) - '0';
    if (d > 9) return false;
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (negative) {
    if (v > static_cast<uint64_t>(INT64_MAX) + 1) return false;
    *out = static_cast<int64_t>(0 - v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}

const char* FindByte(const char* from, const char* end, char c) {
  return static_cast<const char*>(memchr(from, c, end - from));
}

// isspace(): what sdssplitargs skips between arguments and requires after a
// closing quote.
bool IsBlank(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f';
}

// What ends an unquoted argument in sdssplitargs: a narrower set than
// isspace(), so "a\vb" stays one argument as in Redis.
bool EndsUnquoted(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool ParseInt64(std::string_view s, int64_t* out) { return ParseInt64Raw(s.data(), s.size(), out); }

bool SplitArgs(std::string_view line, std::string* storage, std::vector<std::string_view>* args) {
  const char* p = line.data();
  const char* end = p + line.size();
  // sdssplitargs works on a C string: a NUL ends the line.
  if (const char* nul = static_cast<const char*>(memchr(p, '\0', line.size()))) end = nul;
  while (true) {
    while (p < end && IsBlank(*p)) p++;
    if (p == end) return true;
    size_t start = storage->size();
    bool in_double = false, in_single = false;
    while (true) {
      if (in_double) {
        if (p == end) return false;  // unterminated quotes
        if (*p == '\\' && p + 3 < end && p[1] == 'x' && HexValue(p[2]) >= 0 &&
            HexValue(p[3]) >= 0) {
          storage->push_back(static_cast<char>(HexValue(p[2]) * 16 + HexValue(p[3])));
          p += 3;
        } else if (*p == '\\' && p + 1 < end) {
          p++;
          char c;
          switch (*p) {
            case 'n':
              c = '\n';
              break;
            case 'r':
              c = '\r';
              break;
            case 't':
              c = '\t';
              break;
            case 'b':
              c = '\b';
              break;
            case 'a':
              c = '\a';
              break;
            default:
              c = *p;
              break;
          }
          storage->push_back(c);
        } else if (*p == '"') {
          // The closing quote must be followed by a blank or the end.
          if (p + 1 < end && !IsBlank(p[1])) return false;
          p++;
          break;
        } else {
          storage->push_back(*p);
        }
      } else if (in_single) {
        if (p == end) return false;
        if (*p == '\\' && p + 1 < end && p[1] == '\'') {
          p++;
          storage->push_back('\'');
        } else if (*p == '\'') {
          if (p + 1 < end && !IsBlank(p[1])) return false;
          p++;
          break;
        } else {
          storage->push_back(*p);
        }
      } else {
        if (p == end || EndsUnquoted(*p)) break;
        if (*p == '"') {
          in_double = true;
        } else if (*p == '\'') {
          in_single = true;
        } else {
          storage->push_back(*p);
        }
      }
      p++;
    }
    args->emplace_back(storage->data() + start, storage->size() - start);
  }
}

Parser::Parser(ParserLimits limits) : limits_(limits) {}

void Parser::Reset() {
  state_ = State::kStart;
  skip_ = pos_ = 0;
  args_left_ = 0;
  bulk_len_ = 0;
  spans_.clear();
}

ParseStatus Parser::Fail(std::string message) {
  error_ = std::move(message);
  Reset();
  return ParseStatus::kError;
}

ParseStatus Parser::SplitLine(std::string_view line, Kind kind, Command* cmd) {
  args_.clear();
  scratch_.clear();
  // Unescaping never makes an argument longer, so this capacity keeps every
  // view into scratch_ valid while SplitArgs appends.
  scratch_.reserve(line.size());
  if (!SplitArgs(line, &scratch_, &args_)) {
    return Fail("ERR Protocol error: unbalanced quotes in request");
  }
  cmd->args = args_;
  cmd->kind = kind;
  return ParseStatus::kComplete;
}

// The fast path of a "*<count>\r\n" or "$<len>\r\n" line starting at p:
// steps over the digits to the CR (no memchr call: three per GET) and sums
// them on the way. Returns the CR, or null if the line is not a few digits
// and a CR (the caller then searches, so every malformed line gets the same
// error); *n is the value when it has 1 to 18 digits and no leading zero,
// else left for ParseInt64Raw to decide.
inline const char* ScanHeaderDigits(const char* p, const char* end, int64_t* n) {
  if (p >= end || (*p != '$' && *p != '*')) return nullptr;
  const char* q = p + 1;
  const char* digits_end = end - q > 21 ? q + 21 : end;
  uint64_t v = 0;
  while (q < digits_end && static_cast<unsigned char>(*q - '0') <= 9) {
    v = v * 10 + static_cast<unsigned char>(*q - '0');
    q++;
  }
  if (q >= digits_end || *q != '\r') return nullptr;
  size_t digits = q - (p + 1);
  if (digits > 0 && digits <= 18 && (p[1] != '0' || digits == 1)) *n = static_cast<int64_t>(v);
  return q;
}

// One resumable state machine, a case per state, kept in one function on
// purpose: a request may stop at any byte and resume at the next call, and
// the states share the cursor, the argument views and the suspend step;
// split into functions, every case would take and return all of them. Each
// case is short; what is not the state machine (inline splitting, number
// parsing, the header scan) is outside.
ParseStatus Parser::Parse(const char* data, size_t len, Command* cmd, size_t* consumed) {
  const char* end = data + len;
  *consumed = 0;
  // A multibulk request's arguments are views into `data` while it is
  // parsed; when it stops half way, they are kept as offsets (the caller
  // may move the bytes before the next call) and turned back here.
  if (!spans_.empty()) {
    args_.clear();
    for (auto [off, n] : spans_) args_.emplace_back(data + off, n);
    spans_.clear();
  }
  auto suspend = [&] {
    for (std::string_view a : args_) spans_.emplace_back(a.data() - data, a.size());
    return ParseStatus::kNeedMore;
  };
  while (true) {
    switch (state_) {
      case State::kStart: {
        skip_ = pos_;
        if (pos_ == len) return ParseStatus::kNeedMore;
        char c = data[pos_];
        state_ = c == '*' ? State::kBulkHeader : c == '$' ? State::kNativeHeader : State::kInline;
        args_.clear();
        args_left_ = -1;  // "*<count>" not read yet
        break;
      }

      case State::kInline: {
        const char* nl = FindByte(data + pos_, end, '\n');
        if (nl == nullptr) {
          if (len - skip_ > limits_.max_inline_len) {
            return Fail("ERR Protocol error: too big inline request");
          }
          pos_ = len;
          return ParseStatus::kNeedMore;
        }
        size_t line_end = nl - data;
        size_t next = line_end + 1;
        if (line_end > skip_ && data[line_end - 1] == '\r') line_end--;
        if (line_end - skip_ > limits_.max_inline_len) {
          return Fail("ERR Protocol error: too big inline request");
        }
        std::string_view line(data + skip_, line_end - skip_);
        state_ = State::kStart;
        pos_ = next;
        ParseStatus st = SplitLine(line, Kind::kInline, cmd);
        if (st != ParseStatus::kComplete) return st;
        if (args_.empty()) break;  // a blank line is no command, as in Redis
        cmd->raw = std::string_view(data + skip_, next - skip_);
        *consumed = next;
        skip_ = pos_ = 0;
        return ParseStatus::kComplete;
      }

      case State::kBulkHeader: {
        // Either "*<count>\r\n" (args_left_ < 0) or "$<len>\r\n".
        int64_t fast_n = -1;
        const char* cr = ScanHeaderDigits(data + pos_, end, &fast_n);
        if (cr == nullptr) cr = FindByte(data + pos_, end, '\r');
        if (cr == nullptr) {
          if (len - pos_ > limits_.max_inline_len) {
            return Fail(args_left_ < 0 ? "ERR Protocol error: too big mbulk count string"
                                       : "ERR Protocol error: too big bulk count string");
          }
          return suspend();
        }
        // Redis waits for the byte after '\r' too before acting on the line.
        if (cr + 1 >= end) return suspend();
        const char* p = data + pos_;
        int64_t n;
        if (args_left_ < 0) {
          bool valid = fast_n >= 0;
          if (valid) {
            n = fast_n;
          } else {
            valid = ParseInt64Raw(p + 1, cr - p - 1, &n);
          }
          if (!valid || n > limits_.max_multibulk_len) {
            return Fail("ERR Protocol error: invalid multibulk length");
          }
          pos_ = cr + 2 - data;
          if (n <= 0) {  // "*0" and "*-1" are empty requests: skip them
            state_ = State::kStart;
            break;
          }
          args_left_ = n;
          args_.reserve(n < 1024 ? n : 1024);
          break;
        }
        if (*p != '$') {
          // Redis turns CR and LF into spaces so that an error stays one line.
          char got = (*p == '\r' || *p == '\n') ? ' ' : *p;
          return Fail(std::string("ERR Protocol error: expected '$', got '") + got + "'");
        }
        bool valid = fast_n >= 0;
        if (valid) {
          n = fast_n;
        } else {
          valid = ParseInt64Raw(p + 1, cr - p - 1, &n);
        }
        if (!valid || n < 0 || static_cast<uint64_t>(n) > limits_.max_bulk_len) {
          return Fail("ERR Protocol error: invalid bulk length");
        }
        bulk_len_ = n;
        pos_ = cr + 2 - data;
        state_ = State::kBulkData;
        [[fallthrough]];
      }

      case State::kBulkData: {
        // Like Redis, the two bytes after the payload are taken as the CRLF
        // without being checked.
        if (len - pos_ < bulk_len_ + 2) return suspend();
        args_.emplace_back(data + pos_, bulk_len_);
        pos_ += bulk_len_ + 2;
        if (--args_left_ > 0) {
          state_ = State::kBulkHeader;
          break;
        }
        cmd->args = args_;
        cmd->kind = Kind::kMultibulk;
        cmd->raw = std::string_view(data + skip_, pos_ - skip_);
        *consumed = pos_;
        state_ = State::kStart;
        skip_ = pos_ = 0;
        return ParseStatus::kComplete;
      }

      case State::kNativeHeader: {
        // Tile38's native form: "$<len> <payload>\r\n". The length is
        // digits only, so anything else is refused at once instead of
        // waiting for a space that a confused client never sends.
        const char* p = data + pos_;
        const char* q = p + 1;
        while (q < end && *q >= '0' && *q <= '9' && q - p <= 20) q++;
        if (q == end) return ParseStatus::kNeedMore;
        int64_t n;
        if (*q != ' ' || !ParseInt64Raw(p + 1, q - p - 1, &n) ||
            static_cast<uint64_t>(n) > limits_.max_bulk_len) {
          return Fail("ERR Protocol error: invalid bulk length");
        }
        bulk_len_ = n;
        pos_ = q + 1 - data;
        state_ = State::kNativeData;
        [[fallthrough]];
      }

      case State::kNativeData: {
        if (len - pos_ < bulk_len_ + 2) return ParseStatus::kNeedMore;
        if (data[pos_ + bulk_len_] != '\r' || data[pos_ + bulk_len_ + 1] != '\n') {
          return Fail("ERR Protocol error: expected '\\r\\n' after native payload");
        }
        std::string_view payload(data + pos_, bulk_len_);
        size_t next = pos_ + bulk_len_ + 2;
        state_ = State::kStart;
        pos_ = next;
        ParseStatus st = SplitLine(payload, Kind::kTile38, cmd);
        if (st != ParseStatus::kComplete) return st;
        if (args_.empty()) break;
        cmd->raw = std::string_view(data + skip_, next - skip_);
        *consumed = next;
        skip_ = pos_ = 0;
        return ParseStatus::kComplete;
      }
    }
  }
}

}  // namespace redhub::resp
