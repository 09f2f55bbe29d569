#include <redhub/reply.h>

#include <charconv>
#include <cmath>

namespace redhub::resp {
namespace {

// Appends <prefix><n>\r\n with one capacity check (any integer: 20 digits
// and a sign fit).
template <class Int>
void AppendPrefixed(std::string& out, char prefix, Int n) {
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

void AppendUint(std::string& out, uint64_t n) { AppendPrefixed(out, ':', n); }

void AppendString(std::string& out, std::string_view s) { AppendLine(out, '+', s); }

void AppendError(std::string& out, std::string_view s) { AppendLine(out, '-', s); }

void AppendBulk(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 24);
  AppendPrefixed(out, '$', s.size());
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
  // Like Go's FormatFloat(f, 'f', -1, 64): the shortest digits that read back
  // as the same double, laid out in fixed notation with no exponent. The
  // shortest digits come from to_chars' scientific form; fixed to_chars
  // would print the exact binary value (1e23 as 99999999999999991611392).
  char sci[64];
  char* sci_end = std::to_chars(sci, sci + sizeof(sci), d, std::chars_format::scientific).ptr;
  std::string_view text(sci, sci_end - sci);
  std::string out;
  if (text.front() == '-') {
    out.push_back('-');
    text.remove_prefix(1);
  }
  size_t e = text.find('e');
  std::string digits;
  for (char c : text.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  int exp = 0;
  std::string_view exp_text = text.substr(e + 1);
  if (exp_text.front() == '+') exp_text.remove_prefix(1);
  std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exp);
  // The value is 0.digits * 10^(exp+1): point_at digits lie before the point.
  int point_at = exp + 1;
  if (point_at <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-point_at), '0');
    out += digits;
  } else if (static_cast<size_t>(point_at) >= digits.size()) {
    out += digits;
    out.append(point_at - digits.size(), '0');
  } else {
    out.append(digits, 0, point_at);
    out.push_back('.');
    out.append(digits, point_at, std::string::npos);
  }
  return out;
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
  if (!Room(digits.size())) return;
  if (protocol_ >= 3) {
    AppendLine(*out_, '(', digits);
  } else {
    AppendBulk(*out_, digits);
  }
}

void Writer::Verbatim(std::string_view format, std::string_view text) {
  if (!Room(text.size())) return;
  if (protocol_ < 3) {
    AppendBulk(*out_, text);
    return;
  }
  std::string_view fmt = format.substr(0, 3);
  AppendPrefixed(*out_, '=', fmt.size() + 1 + text.size());
  out_->append(fmt);
  out_->push_back(':');
  out_->append(text);
  out_->append("\r\n", 2);
}

}  // namespace redhub::resp
