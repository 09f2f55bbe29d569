// RESP request parsing: a transport-free, incremental parser.
//
// The parser turns bytes into commands. It never reads a socket and never
// copies a multibulk argument: every argument of a RESP2 multibulk command is
// a view into the caller's buffer. It accepts three request forms, as Redis
// and Tile38 servers do:
//
//   *2\r\n$3\r\nGET\r\n$1\r\nk\r\n   RESP2 multibulk          (Kind::kMultibulk)
//   GET k\r\n                        inline / telnet           (Kind::kInline)
//   $5 GET k\r\n                     Tile38 native             (Kind::kTile38)
//
// Contract of Parse(): `data` starts where the previous complete command
// ended. On kNeedMore nothing is consumed and the parser remembers how far it
// scanned, so the next call must pass the same bytes again (the buffer may
// have moved), extended by what arrived since. A 100 MB bulk arriving in
// 16 KB pieces therefore costs linear time: each call resumes, never rescans.
//
//   redhub::resp::Parser parser;
//   redhub::resp::Command cmd;
//   size_t used;
//   while (parser.Parse(buf, len, &cmd, &used) == redhub::resp::ParseStatus::kComplete) {
//     Handle(cmd);  // cmd.args are valid until the buffer changes or Parse is called again
//     buf += used, len -= used;
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace redhub::resp {

// Which request form a command arrived in, so a handler can reply in kind.
enum class Kind : uint8_t { kMultibulk, kInline, kTile38 };

struct Command {
  std::string_view raw;  // the command's bytes exactly as received
  std::span<const std::string_view> args;
  Kind kind = Kind::kMultibulk;
};

enum class ParseStatus : uint8_t { kComplete, kNeedMore, kError };

struct ParserLimits {
  // Redis's proto-max-bulk-len.
  size_t max_bulk_len = 512ull * 1024 * 1024;
  // Redis refuses larger multibulk counts before allocating anything.
  int64_t max_multibulk_len = 1024 * 1024;
  // Redis's PROTO_INLINE_MAX_SIZE: the longest inline line, and the longest
  // "*<count>" or "$<len>" header we wait for before calling it garbage.
  size_t max_inline_len = 64 * 1024;
};

class Parser {
 public:
  explicit Parser(ParserLimits limits = {});

  // Parses at most one command from data[0, len). On kComplete, *cmd holds
  // the command and *consumed its length in bytes. Empty requests (a blank
  // inline line, "*0\r\n", "*-1\r\n") are skipped as Redis skips them, so
  // *consumed can exceed cmd->raw.size(). On kError, Error() holds the reply
  // text (without the leading '-'); the connection should send it and close.
  ParseStatus Parse(const char* data, size_t len, Command* cmd, size_t* consumed);

  // The protocol error of the last kError, e.g.
  // "ERR Protocol error: invalid bulk length".
  const std::string& Error() const { return error_; }

  // Bytes of the current partial command that the parser has already
  // scanned; 0 between commands. Lets a connection know a command is pending.
  size_t Pending() const { return pos_; }

  // Forgets any partial command.
  void Reset();

  const ParserLimits& limits() const { return limits_; }
  void set_limits(const ParserLimits& limits) { limits_ = limits; }

 private:
  enum class State : uint8_t {
    kStart,
    kBulkHeader,
    kBulkData,
    kInline,
    kNativeHeader,
    kNativeData
  };

  ParseStatus Fail(std::string message);
  ParseStatus SplitLine(std::string_view line, Kind kind, Command* cmd);

  ParserLimits limits_;
  State state_ = State::kStart;
  size_t skip_ = 0;  // bytes of skipped empty requests before the command
  size_t pos_ = 0;   // scan position, relative to data
  int64_t args_left_ = 0;
  size_t bulk_len_ = 0;
  // Argument (offset, length) pairs relative to data: offsets survive the
  // buffer moving between calls, views would not.
  std::vector<std::pair<size_t, size_t>> spans_;
  std::vector<std::string_view> args_;
  std::string scratch_;  // unescaped inline arguments live here
  std::string error_;
};

// Redis's string2ll: an optional '-', then digits with no leading zero, no
// '+', no blanks and no overflow. For handlers parsing integer arguments.
bool ParseInt64(std::string_view s, int64_t* out);

// Splits a line into arguments with Redis's sdssplitargs rules: blanks
// separate arguments; "double quotes" understand \n \r \t \b \a \xHH and
// \<char>; 'single quotes' understand \'; a closing quote must be followed by
// a blank or the end. Unescaped bytes are appended to *storage, which must
// have capacity for line.size() bytes so the views stay valid. Returns false
// on unbalanced quotes.
bool SplitArgs(std::string_view line, std::string* storage, std::vector<std::string_view>* args);

}  // namespace redhub::resp
