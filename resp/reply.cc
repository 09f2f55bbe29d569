#include <redhub/reply.h>

#include <charconv>
#include <cmath>

namespace redhub::resp {
namespace {

// Appends <prefix><n>\r\n with one capacity check.
void AppendPrefixed(std::string& out, char prefix, int64_t n) {
  char buf[24];
  buf[0] = prefix;
  char* end = std::to_chars(buf + 1, buf + sizeof(buf) - 2, n).ptr;
  end[0] = '\r';
  end[1] = '\n';
  out.append(buf, end + 2 - buf);
}

void AppendPrefixedU(std::string& out, char prefix, uint64_t n) {
  char buf[24];
  buf[0] = prefix;
  char* end = std::to_chars(buf + 1, buf + sizeof(buf) - 2, n).ptr;
  end[0] = '\r';
  end[1] = '\n';
  out.append(buf, end + 2 - buf);
}

// A simple string or error is one line: CR and LF inside it become spaces.
void AppendLine(std::string& out, char prefix, std::string_view s) {
  size_t at = out.size();
  out.reserve(at + s.size() + 3);
  out.push_back(prefix);
  out.append(s);
  for (size_t i = at + 1; i < out.size(); i++) {
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  }
  out.append("\r\n", 2);
}

}  // namespace

void AppendInt(std::string& out, int64_t n) { AppendPrefixed(out, ':', n); }

void AppendUint(std::string& out, uint64_t n) { AppendPrefixedU(out, ':', n); }

void AppendString(std::string& out, std::string_view s) { AppendLine(out, '+', s); }

void AppendError(std::string& out, std::string_view s) { AppendLine(out, '-', s); }

void AppendBulk(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 24);
  AppendPrefixedU(out, '$', s.size());
  out.append(s);
  out.append("\r\n", 2);
}

void AppendArray(std::string& out, int64_t n) { AppendPrefixed(out, '*', n); }

void AppendNull(std::string& out) { out.append("$-1\r\n", 5); }

void AppendOK(std::string& out) { out.append("+OK\r\n", 5); }

void AppendTile38(std::string& out, std::string_view s) {
  char buf[24];
  buf[0] = '$';
  char* end = std::to_chars(buf + 1, buf + sizeof(buf) - 1, s.size()).ptr;
  *end++ = ' ';
  out.reserve(out.size() + (end - buf) + s.size() + 2);
  out.append(buf, end - buf);
  out.append(s);
  out.append("\r\n", 2);
}

void AppendBulkInt(std::string& out, int64_t n) {
  char buf[24];
  char* end = std::to_chars(buf, buf + sizeof(buf), n).ptr;
  AppendBulk(out, std::string_view(buf, end - buf));
}

void AppendBulkUint(std::string& out, uint64_t n) {
  char buf[24];
  char* end = std::to_chars(buf, buf + sizeof(buf), n).ptr;
  AppendBulk(out, std::string_view(buf, end - buf));
}

std::string FormatDouble(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  // Fixed notation like Go's FormatFloat(f, 'f', -1, 64): the shortest digits
  // that read back as the same double, never an exponent. 1e308 needs 309
  // digits plus sign and fraction.
  char buf[400];
  char* end = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::fixed).ptr;
  return std::string(buf, end - buf);
}

void AppendBulkFloat(std::string& out, double f) { AppendBulk(out, FormatDouble(f)); }

std::string PrefixErrIfNeeded(std::string_view msg) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!msg.empty() && blank(msg.front())) msg.remove_prefix(1);
  while (!msg.empty() && blank(msg.back())) msg.remove_suffix(1);
  std::string_view first = msg.substr(0, msg.find(' '));
  bool add = first.empty();
  for (char c : first) {
    if (c < 'A' || c > 'Z') {
      add = true;
      break;
    }
  }
  if (!add) return std::string(msg);
  if (msg.empty()) return "ERR";
  return "ERR " + std::string(msg);
}

void Writer::Null() {
  if (protocol_ >= 3) {
    out_->append("_\r\n", 3);
  } else {
    AppendNull(*out_);
  }
}

void Writer::NullArray() {
  if (protocol_ >= 3) {
    out_->append("_\r\n", 3);
  } else {
    out_->append("*-1\r\n", 5);
  }
}

void Writer::Map(int64_t pairs) {
  if (protocol_ >= 3) {
    AppendPrefixed(*out_, '%', pairs);
  } else {
    AppendArray(*out_, pairs * 2);
  }
}

void Writer::Set(int64_t n) { AppendPrefixed(*out_, protocol_ >= 3 ? '~' : '*', n); }

void Writer::Push(int64_t n) { AppendPrefixed(*out_, protocol_ >= 3 ? '>' : '*', n); }

void Writer::Double(double d) {
  if (protocol_ >= 3) {
    AppendLine(*out_, ',', FormatDouble(d));
  } else {
    AppendBulk(*out_, FormatDouble(d));
  }
}

void Writer::Boolean(bool b) {
  if (protocol_ >= 3) {
    out_->append(b ? "#t\r\n" : "#f\r\n", 4);
  } else {
    out_->append(b ? ":1\r\n" : ":0\r\n", 4);
  }
}

void Writer::BigNumber(std::string_view digits) {
  if (protocol_ >= 3) {
    AppendLine(*out_, '(', digits);
  } else {
    AppendBulk(*out_, digits);
  }
}

void Writer::Verbatim(std::string_view format, std::string_view text) {
  if (protocol_ < 3) {
    AppendBulk(*out_, text);
    return;
  }
  std::string_view fmt = format.substr(0, 3);
  AppendPrefixedU(*out_, '=', fmt.size() + 1 + text.size());
  out_->append(fmt);
  out_->push_back(':');
  out_->append(text);
  out_->append("\r\n", 2);
}

}  // namespace redhub::resp
