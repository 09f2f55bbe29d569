// Tests of the reply encoding in <redhub/reply.h>: the exact bytes of every
// Append* function and Writer method in RESP2 and RESP3, Writer::Any, and a
// round trip through a small RESP2/RESP3 reply decoder defined here.
#include <gtest/gtest.h>
#include <redhub/reply.h>
#include <redhub/resp.h>

#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

// A type written through a free MarshalRESP found by argument-dependent
// lookup, from a namespace that is not redhub's.
namespace other {
struct Color {
  std::string name;
};
void MarshalRESP(redhub::resp::Writer& w, const Color& c) { w.String("color:" + c.name); }
}  // namespace other

namespace redhub::resp {
namespace {

using namespace std::string_literals;

// A type written through its MarshalRESP member.
struct Point {
  int64_t x, y;
  void MarshalRESP(Writer& w) const {
    w.Array(2);
    w.Int(x);
    w.Int(y);
  }
};

// A range with a MarshalRESP member: the member wins over "array of
// elements".
struct Tags : std::vector<std::string> {
  void MarshalRESP(Writer& w) const { w.String("tags"); }
};

template <class F>
std::string Out(F&& f) {
  std::string out;
  f(out);
  return out;
}

// Writes with a Writer of the given protocol and returns the bytes.
template <class F>
std::string W(int protocol, F&& f) {
  std::string out;
  Writer w(out, protocol);
  f(w);
  return out;
}

template <class T>
std::string Any2(const T& v) {
  return W(2, [&](Writer& w) { w.Any(v); });
}
template <class T>
std::string Any3(const T& v) {
  return W(3, [&](Writer& w) { w.Any(v); });
}

// ------------------------------------------------------------ Append*

TEST(AppendTest, Int) {
  EXPECT_EQ(Out([](std::string& o) { AppendInt(o, 0); }), ":0\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendInt(o, -1); }), ":-1\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendInt(o, 42); }), ":42\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendInt(o, INT64_MAX); }), ":9223372036854775807\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendInt(o, INT64_MIN); }), ":-9223372036854775808\r\n");
}

TEST(AppendTest, Uint) {
  EXPECT_EQ(Out([](std::string& o) { AppendUint(o, 0); }), ":0\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendUint(o, UINT64_MAX); }), ":18446744073709551615\r\n");
}

TEST(AppendTest, StringReplacesCrAndLfWithSpaces) {
  EXPECT_EQ(Out([](std::string& o) { AppendString(o, "OK"); }), "+OK\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendString(o, ""); }), "+\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendString(o, "a\r\nb\nc\rd"); }), "+a  b c d\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendString(o, "\r\n"); }), "+  \r\n");
}

TEST(AppendTest, Bulk) {
  EXPECT_EQ(Out([](std::string& o) { AppendBulk(o, "hello"); }), "$5\r\nhello\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendBulk(o, ""); }), "$0\r\n\r\n");
  const std::string binary("\0\r\n\xff\x80$", 6);
  EXPECT_EQ(Out([&](std::string& o) { AppendBulk(o, binary); }), "$6\r\n" + binary + "\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendBulkString(o, "x"); }), "$1\r\nx\r\n");
  const std::string big(100000, 'z');
  EXPECT_EQ(Out([&](std::string& o) { AppendBulk(o, big); }), "$100000\r\n" + big + "\r\n");
}

TEST(AppendTest, Array) {
  EXPECT_EQ(Out([](std::string& o) { AppendArray(o, 3); }), "*3\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendArray(o, 0); }), "*0\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendArray(o, -1); }), "*-1\r\n");
}

TEST(AppendTest, ErrorReplacesCrAndLfWithSpaces) {
  EXPECT_EQ(Out([](std::string& o) { AppendError(o, "ERR bad"); }), "-ERR bad\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendError(o, "ERR a\r\nb\nc"); }), "-ERR a  b c\r\n");
  // No ERR prefix is added here: that is PrefixErrIfNeeded's job.
  EXPECT_EQ(Out([](std::string& o) { AppendError(o, "bad"); }), "-bad\r\n");
}

TEST(AppendTest, NullOkTile38) {
  EXPECT_EQ(Out([](std::string& o) { AppendNull(o); }), "$-1\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendOK(o); }), "+OK\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendTile38(o, "hello"); }), "$5 hello\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendTile38(o, ""); }), "$0 \r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendTile38(o, "{\"ok\":true}"); }), "$11 {\"ok\":true}\r\n");
}

TEST(AppendTest, BulkNumbers) {
  EXPECT_EQ(Out([](std::string& o) { AppendBulkInt(o, -42); }), "$3\r\n-42\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendBulkInt(o, INT64_MIN); }),
            "$20\r\n-9223372036854775808\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendBulkUint(o, UINT64_MAX); }),
            "$20\r\n18446744073709551615\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendBulkFloat(o, 1.5); }), "$3\r\n1.5\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendBulkFloat(o, 0.1); }), "$3\r\n0.1\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendBulkFloat(o, 1e20); }),
            "$21\r\n100000000000000000000\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendBulkFloat(o, -2.25); }), "$5\r\n-2.25\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendBulkFloat(o, 0); }), "$1\r\n0\r\n");
  EXPECT_EQ(Out([](std::string& o) { AppendBulkFloat(o, 1e-7); }), "$9\r\n0.0000001\r\n");
}

TEST(AppendTest, AppendsAfterWhatIsThere) {
  std::string out = "prefix";
  AppendInt(out, 1);
  AppendBulk(out, "b");
  AppendString(out, "s\n");
  AppendError(out, "e\r");
  AppendTile38(out, "t");
  EXPECT_EQ(out, "prefix:1\r\n$1\r\nb\r\n+s \r\n-e \r\n$1 t\r\n");
}

TEST(FormatDoubleTest, ShortestFixedNotation) {
  EXPECT_EQ(FormatDouble(1.5), "1.5");
  EXPECT_EQ(FormatDouble(0.1), "0.1");
  EXPECT_EQ(FormatDouble(1e20), "100000000000000000000");
  EXPECT_EQ(FormatDouble(-3.75), "-3.75");
  EXPECT_EQ(FormatDouble(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(FormatDouble(123456789.125), "123456789.125");
  EXPECT_EQ(FormatDouble(-0.0), "-0");
  EXPECT_EQ(FormatDouble(1e-7), "0.0000001");
  EXPECT_EQ(FormatDouble(INFINITY), "inf");
  EXPECT_EQ(FormatDouble(-INFINITY), "-inf");
  EXPECT_EQ(FormatDouble(NAN), "nan");
  EXPECT_EQ(FormatDouble(-DBL_TRUE_MIN), "-0." + std::string(323, '0') + "5");
  EXPECT_EQ(FormatDouble(9007199254740992.0), "9007199254740992");
}

// Go's FormatFloat(f, 'f', -1, 64), which the header promises ("shortest
// exact decimal"), pads the shortest digits with zeros. std::to_chars in
// fixed format without a precision prints the exact binary value of large
// doubles instead: 1e23 would come out as "99999999999999991611392". Both
// read back as the same double, but the bytes differ from Go's, so
// FormatDouble lays out to_chars' shortest digits itself.
TEST(FormatDoubleTest, LargeValuesUseTheShortestDigitsLikeGo) {
  EXPECT_EQ(FormatDouble(1e23), "100000000000000000000000");
  EXPECT_EQ(FormatDouble(1.2345e22), "12345000000000000000000");
  EXPECT_EQ(FormatDouble(-1e300), "-1" + std::string(300, '0'));
  EXPECT_EQ(FormatDouble(DBL_MAX), "17976931348623157" + std::string(292, '0'));
}

TEST(FormatDoubleTest, ReadsBackExactlyWithoutExponent) {
  uint64_t state = 0x9e3779b97f4a7c15u;
  int checked = 0;
  for (int i = 0; i < 20000; i++) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    double d;
    memcpy(&d, &state, sizeof(d));
    if (!std::isfinite(d)) continue;
    std::string s = FormatDouble(d);
    ASSERT_EQ(s.find_first_of("eE"), std::string::npos) << s;
    double back = std::strtod(s.c_str(), nullptr);
    ASSERT_EQ(memcmp(&back, &d, sizeof(d)), 0) << s;
    checked++;
  }
  EXPECT_GT(checked, 19000);
}

TEST(PrefixErrIfNeededTest, GoRules) {
  EXPECT_EQ(PrefixErrIfNeeded("WRONGTYPE x"), "WRONGTYPE x");
  EXPECT_EQ(PrefixErrIfNeeded("ERR x"), "ERR x");
  EXPECT_EQ(PrefixErrIfNeeded("ERR"), "ERR");
  EXPECT_EQ(PrefixErrIfNeeded("MOVED 3999 127.0.0.1:6381"), "MOVED 3999 127.0.0.1:6381");
  EXPECT_EQ(PrefixErrIfNeeded("bad thing"), "ERR bad thing");
  EXPECT_EQ(PrefixErrIfNeeded("Wrongtype x"), "ERR Wrongtype x");
  EXPECT_EQ(PrefixErrIfNeeded("ERR1 x"), "ERR ERR1 x");
  EXPECT_EQ(PrefixErrIfNeeded(""), "ERR");
  EXPECT_EQ(PrefixErrIfNeeded(" \t\r\n"), "ERR");
  EXPECT_EQ(PrefixErrIfNeeded("  WRONGTYPE x \r\n"), "WRONGTYPE x");
  EXPECT_EQ(PrefixErrIfNeeded(" bad "), "ERR bad");
}

// -------------------------------------------------------------- Writer

TEST(WriterTest, ProtocolAndBuffer) {
  std::string out;
  Writer w(out);
  EXPECT_EQ(w.protocol(), 2);
  EXPECT_EQ(&w.buffer(), &out);
  w.set_protocol(3);
  EXPECT_EQ(w.protocol(), 3);
  w.Null();
  EXPECT_EQ(out, "_\r\n");
}

TEST(WriterTest, Resp2ValuesAreTheSameInBothProtocols) {
  for (int protocol : {2, 3}) {
    SCOPED_TRACE(protocol);
    std::string got = W(protocol, [](Writer& w) {
      w.Array(11);
      w.Int(-7);
      w.Uint(7);
      w.String("s\r\n");
      w.Bulk("b");
      w.Error("E x\ny");
      w.OK();
      w.Tile38("t");
      w.BulkInt(12);
      w.BulkUint(13);
      w.BulkFloat(0.5);
      w.Raw("+raw\r\n");
    });
    EXPECT_EQ(got,
              "*11\r\n:-7\r\n:7\r\n+s  \r\n$1\r\nb\r\n-E x y\r\n+OK\r\n$1 t\r\n$2\r\n12\r\n"
              "$2\r\n13\r\n$3\r\n0.5\r\n+raw\r\n");
  }
}

// The error hook sees every error reply, by Error or by Any of an Error,
// with its text as given (before CR/LF become spaces), even one the output
// limit drops; other replies never reach it, and unset it changes nothing.
TEST(WriterTest, ErrorObserverSeesEveryErrorReply) {
  struct Seen {
    std::vector<std::string> errors;
  } seen;
  auto observe = [](void* ctx, std::string_view e) {
    static_cast<Seen*>(ctx)->errors.emplace_back(e);
  };
  std::string out;
  Writer w(out);
  EXPECT_EQ(w.error_observer(), nullptr);
  w.Error("ERR before the hook");
  w.set_error_observer(observe, &seen);
  EXPECT_EQ(w.error_context(), &seen);
  w.Array(2);
  w.Int(1);
  w.String("OK");
  w.Bulk("-not an error");
  w.Raw("-raw bytes are not replies\r\n");
  w.Error("WRONGTYPE a\nb");
  w.Any(resp::Error{"bad thing"});
  w.set_limit(out.size() + 4);
  w.Error("OOM dropped by the limit");
  EXPECT_TRUE(w.overflowed());
  w.set_error_observer(nullptr, nullptr);
  w.Error("ERR after the hook");
  EXPECT_EQ(seen.errors, (std::vector<std::string>{"WRONGTYPE a\nb", "ERR bad thing",
                                                   "OOM dropped by the limit"}));
  EXPECT_NE(out.find("-WRONGTYPE a b\r\n"), std::string::npos) << out;
}

struct ProtocolCase {
  const char* what;
  void (*write)(Writer&);
  std::string resp2;
  std::string resp3;
};

TEST(WriterTest, Resp2AndResp3Encodings) {
  const ProtocolCase cases[] = {
      {"Null", [](Writer& w) { w.Null(); }, "$-1\r\n", "_\r\n"},
      {"NullArray", [](Writer& w) { w.NullArray(); }, "*-1\r\n", "_\r\n"},
      {"Map", [](Writer& w) { w.Map(2); }, "*4\r\n", "%2\r\n"},
      {"Map0", [](Writer& w) { w.Map(0); }, "*0\r\n", "%0\r\n"},
      {"Set", [](Writer& w) { w.Set(3); }, "*3\r\n", "~3\r\n"},
      {"Push", [](Writer& w) { w.Push(2); }, "*2\r\n", ">2\r\n"},
      {"Double", [](Writer& w) { w.Double(1.5); }, "$3\r\n1.5\r\n", ",1.5\r\n"},
      {"Double1e20", [](Writer& w) { w.Double(1e20); }, "$21\r\n100000000000000000000\r\n",
       ",100000000000000000000\r\n"},
      {"DoubleNeg", [](Writer& w) { w.Double(-0.25); }, "$5\r\n-0.25\r\n", ",-0.25\r\n"},
      {"DoubleInf", [](Writer& w) { w.Double(INFINITY); }, "$3\r\ninf\r\n", ",inf\r\n"},
      {"DoubleNegInf", [](Writer& w) { w.Double(-INFINITY); }, "$4\r\n-inf\r\n", ",-inf\r\n"},
      {"DoubleNan", [](Writer& w) { w.Double(NAN); }, "$3\r\nnan\r\n", ",nan\r\n"},
      {"True", [](Writer& w) { w.Boolean(true); }, ":1\r\n", "#t\r\n"},
      {"False", [](Writer& w) { w.Boolean(false); }, ":0\r\n", "#f\r\n"},
      {"BigNumber", [](Writer& w) { w.BigNumber("3492890328409238509324850943850943825024385"); },
       "$43\r\n3492890328409238509324850943850943825024385\r\n",
       "(3492890328409238509324850943850943825024385\r\n"},
      {"BigNumberNeg", [](Writer& w) { w.BigNumber("-1"); }, "$2\r\n-1\r\n", "(-1\r\n"},
      {"Verbatim", [](Writer& w) { w.Verbatim("txt", "Some string"); }, "$11\r\nSome string\r\n",
       "=15\r\ntxt:Some string\r\n"},
      {"VerbatimBinary", [](Writer& w) { w.Verbatim("mkd", "a\r\nb"); }, "$4\r\na\r\nb\r\n",
       "=8\r\nmkd:a\r\nb\r\n"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_EQ(W(2, c.write), c.resp2);
    EXPECT_EQ(W(3, c.write), c.resp3);
  }
}

// ------------------------------------------------------------------ Any

TEST(WriterAnyTest, Nulls) {
  EXPECT_EQ(Any2(nullptr), "$-1\r\n");
  EXPECT_EQ(Any3(nullptr), "_\r\n");
  EXPECT_EQ(Any2(std::nullopt), "$-1\r\n");
  EXPECT_EQ(Any3(std::nullopt), "_\r\n");
  EXPECT_EQ(Any2(Null{}), "$-1\r\n");
  EXPECT_EQ(Any3(Null{}), "_\r\n");
}

TEST(WriterAnyTest, Optional) {
  EXPECT_EQ(Any2(std::optional<int>{}), "$-1\r\n");
  EXPECT_EQ(Any3(std::optional<int>{}), "_\r\n");
  EXPECT_EQ(Any2(std::optional<int>{5}), ":5\r\n");
  EXPECT_EQ(Any2(std::optional<std::string>{"x"}), "$1\r\nx\r\n");
  EXPECT_EQ(Any3(std::optional<bool>{true}), "#t\r\n");
}

TEST(WriterAnyTest, ErrorsSimpleStringsAndSimpleInts) {
  EXPECT_EQ(Any2(Error{"bad thing"}), "-ERR bad thing\r\n");
  EXPECT_EQ(Any3(Error{"WRONGTYPE x"}), "-WRONGTYPE x\r\n");
  EXPECT_EQ(Any2(Error{""}), "-ERR\r\n");
  EXPECT_EQ(Any2(Error{"a\r\nb"}), "-ERR a  b\r\n");
  EXPECT_EQ(Any2(SimpleString{"PONG"}), "+PONG\r\n");
  EXPECT_EQ(Any3(SimpleString{"a\nb"}), "+a b\r\n");
  EXPECT_EQ(Any2(SimpleInt{-3}), ":-3\r\n");
}

TEST(WriterAnyTest, Strings) {
  EXPECT_EQ(Any2("abc"), "$3\r\nabc\r\n");
  EXPECT_EQ(Any2(std::string("a\0b", 3)), "$3\r\na\0b\r\n"s);
  EXPECT_EQ(Any3(std::string_view("sv")), "$2\r\nsv\r\n");
  const char* p = "ptr";
  EXPECT_EQ(Any2(p), "$3\r\nptr\r\n");
  EXPECT_EQ(Any2(std::string()), "$0\r\n\r\n");
}

TEST(WriterAnyTest, Bool) {
  EXPECT_EQ(Any2(true), "$1\r\n1\r\n");
  EXPECT_EQ(Any2(false), "$1\r\n0\r\n");
  EXPECT_EQ(Any3(true), "#t\r\n");
  EXPECT_EQ(Any3(false), "#f\r\n");
}

TEST(WriterAnyTest, Numbers) {
  EXPECT_EQ(Any2(5), ":5\r\n");
  EXPECT_EQ(Any2(int16_t{-5}), ":-5\r\n");
  EXPECT_EQ(Any2(INT64_MIN), ":-9223372036854775808\r\n");
  EXPECT_EQ(Any2(5u), ":5\r\n");
  EXPECT_EQ(Any3(UINT64_MAX), ":18446744073709551615\r\n");
  EXPECT_EQ(Any2(1.5), "$3\r\n1.5\r\n");
  EXPECT_EQ(Any3(1.5), ",1.5\r\n");
  EXPECT_EQ(Any2(-0.1), "$4\r\n-0.1\r\n");
  EXPECT_EQ(Any2(0.5f), "$3\r\n0.5\r\n");
  EXPECT_EQ(Any3(1e20), ",100000000000000000000\r\n");
}

TEST(WriterAnyTest, Ranges) {
  EXPECT_EQ(Any2(std::vector<int>{1, 2}), "*2\r\n:1\r\n:2\r\n");
  EXPECT_EQ(Any3(std::vector<int>{}), "*0\r\n");
  EXPECT_EQ(Any2(std::vector<std::string>{"a", ""}), "*2\r\n$1\r\na\r\n$0\r\n\r\n");
  EXPECT_EQ(Any2(std::vector<std::vector<int>>{{1}, {}, {2, 3}}),
            "*3\r\n*1\r\n:1\r\n*0\r\n*2\r\n:2\r\n:3\r\n");
  EXPECT_EQ(Any2(std::vector<std::optional<std::string>>{"x", std::nullopt}),
            "*2\r\n$1\r\nx\r\n$-1\r\n");
  EXPECT_EQ(Any3(std::vector<std::optional<std::string>>{"x", std::nullopt}),
            "*2\r\n$1\r\nx\r\n_\r\n");
}

TEST(WriterAnyTest, Pair) {
  EXPECT_EQ(Any2(std::pair<std::string, int>{"a", 1}), "*2\r\n$1\r\na\r\n:1\r\n");
  EXPECT_EQ(Any3(std::pair<int, double>{1, 2.5}), "*2\r\n:1\r\n,2.5\r\n");
}

TEST(WriterAnyTest, Maps) {
  const std::map<std::string, int> m = {{"b", 2}, {"a", 1}};
  EXPECT_EQ(Any2(m), "*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n");
  EXPECT_EQ(Any3(m), "%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n");
  EXPECT_EQ(Any3(std::map<std::string, int>{}), "%0\r\n");
  // Keys are sorted by their bytes, whatever the container's order.
  const std::unordered_map<std::string, int> u = {{"k9", 1}, {"k10", 2},  {"a", 3}, {"Z", 4},
                                                  {"", 5},   {"\xff", 6}, {"k1", 7}};
  EXPECT_EQ(Any3(u),
            "%7\r\n$0\r\n\r\n:5\r\n$1\r\nZ\r\n:4\r\n$1\r\na\r\n:3\r\n$2\r\nk1\r\n:7\r\n"
            "$3\r\nk10\r\n:2\r\n$2\r\nk9\r\n:1\r\n$1\r\n\xff\r\n:6\r\n");
  EXPECT_EQ(Any2(u).substr(0, 5), "*14\r\n");
  const std::map<std::string, int, std::greater<>> reversed = {{"a", 1}, {"b", 2}};
  EXPECT_EQ(Any3(reversed), "%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n");
  // Number keys are written as bulk strings.
  EXPECT_EQ(Any3(std::map<int, std::string>{{7, "x"}}), "%1\r\n$1\r\n7\r\n$1\r\nx\r\n");
  // Nested values.
  const std::map<std::string, std::vector<std::optional<int>>> nested = {{"k", {1, std::nullopt}}};
  EXPECT_EQ(Any2(nested), "*2\r\n$1\r\nk\r\n*2\r\n:1\r\n$-1\r\n");
  EXPECT_EQ(Any3(nested), "%1\r\n$1\r\nk\r\n*2\r\n:1\r\n_\r\n");
}

TEST(WriterAnyTest, Marshalers) {
  EXPECT_EQ(Any2(Point{1, -2}), "*2\r\n:1\r\n:-2\r\n");
  EXPECT_EQ(Any2(other::Color{"red"}), "+color:red\r\n");
  EXPECT_EQ(Any3(std::vector<Point>{{1, 2}, {3, 4}}), "*2\r\n*2\r\n:1\r\n:2\r\n*2\r\n:3\r\n:4\r\n");
  EXPECT_EQ(Any2(std::map<std::string, other::Color>{{"c", {"blue"}}}),
            "*2\r\n$1\r\nc\r\n+color:blue\r\n");
  EXPECT_EQ(Any2(std::optional<Point>{Point{5, 6}}), "*2\r\n:5\r\n:6\r\n");
  Tags tags;
  tags.push_back("ignored");
  EXPECT_EQ(Any2(tags), "+tags\r\n");
}

// ------------------------------------------------------------ round trip

// A decoded reply. `type` is the RESP type byte. Simple types keep their
// line in `str`, bulk and verbatim strings their payload; aggregates keep
// their elements (a map's keys and values alternate).
struct Value {
  char type = 0;
  bool null = false;  // "$-1" or "*-1"
  std::string str;
  std::vector<Value> elems;
  bool operator==(const Value&) const = default;
};

void PrintTo(const Value& v, std::ostream* os) {
  *os << v.type;
  if (v.null) *os << "null";
  if (!v.str.empty()) *os << '"' << v.str << '"';
  if (!v.elems.empty()) {
    *os << '[';
    for (const auto& e : v.elems) {
      PrintTo(e, os);
      *os << ' ';
    }
    *os << ']';
  }
}

bool IsInteger(std::string_view s, bool allow_sign = true) {
  if (allow_sign && !s.empty() && s[0] == '-') s.remove_prefix(1);
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}

  // Decodes one value; false if the bytes are not one well-formed value.
  bool Next(Value* v) {
    std::string_view line;
    if (pos_ >= in_.size()) return false;
    v->type = in_[pos_++];
    if (!Line(&line)) return false;
    switch (v->type) {
      case '+':
      case '-':
      case ',':
      case '(':
        v->str = line;
        return v->type != '(' || IsInteger(line);
      case ':':
        v->str = line;
        return IsInteger(line);
      case '#':
        v->str = line;
        return line == "t" || line == "f";
      case '_':
        return line.empty();
      case '$':
      case '=': {
        if (v->type == '$' && line == "-1") return v->null = true;
        if (!IsInteger(line, false)) return false;
        size_t n = std::stoull(std::string(line));
        if (in_.size() - pos_ < n + 2 || in_.substr(pos_ + n, 2) != "\r\n") return false;
        v->str = in_.substr(pos_, n);
        pos_ += n + 2;
        return v->type != '=' || (n >= 4 && v->str[3] == ':');
      }
      case '*':
      case '~':
      case '>':
      case '%': {
        if (v->type == '*' && line == "-1") return v->null = true;
        if (!IsInteger(line, false)) return false;
        size_t n = std::stoull(std::string(line)) * (v->type == '%' ? 2 : 1);
        v->elems.resize(n);
        for (auto& e : v->elems) {
          if (!Next(&e)) return false;
        }
        return true;
      }
      default:
        return false;
    }
  }

  bool AtEnd() const { return pos_ == in_.size(); }

 private:
  // The rest of the line, which must end in CRLF and hold no CR or LF.
  bool Line(std::string_view* line) {
    size_t end = in_.find("\r\n", pos_);
    if (end == std::string_view::npos) return false;
    *line = in_.substr(pos_, end - pos_);
    pos_ = end + 2;
    return line->find_first_of("\r\n") == std::string_view::npos;
  }

  std::string_view in_;
  size_t pos_ = 0;
};

// Decodes bytes that must hold exactly one value.
std::optional<Value> Decode(std::string_view bytes) {
  Decoder d(bytes);
  Value v;
  if (!d.Next(&v) || !d.AtEnd()) return std::nullopt;
  return v;
}

Value S(char type, std::string str) { return Value{type, false, std::move(str), {}}; }
Value Agg(char type, std::vector<Value> elems) { return Value{type, false, "", std::move(elems)}; }
Value Nil(char type) { return Value{type, true, "", {}}; }

TEST(DecoderTest, RejectsMalformedReplies) {
  for (const char* bad : {"", "+OK", "+OK\r\nextra", ":x\r\n", "$3\r\nab\r\n", "$3\r\nabcd\r\n",
                          "*2\r\n:1\r\n", "#x\r\n", "=3\r\ntxt\r\n", "?\r\n"}) {
    EXPECT_FALSE(Decode(bad).has_value()) << bad;
  }
}

TEST(RoundTripTest, NestedStructureInBothProtocols) {
  auto write = [](Writer& w) {
    w.Array(9);
    w.Map(2);
    w.Bulk("name");
    w.Bulk(std::string("r\r\nedhub\0", 9));
    w.Bulk("tags");
    w.Set(2);
    w.String("a");
    w.String("b");
    w.Double(2.5);
    w.Boolean(true);
    w.Null();
    w.NullArray();
    w.BigNumber("123456789012345678901234567890");
    w.Verbatim("txt", "line1\r\nline2");
    w.Push(2);
    w.Bulk("message");
    w.Int(-9);
    w.Any(std::map<std::string, std::vector<int>>{{"k", {1, 2}}});
  };
  const Value map_value = Agg('*', {S(':', "1"), S(':', "2")});
  const Value want2 =
      Agg('*', {Agg('*', {S('$', "name"), S('$', std::string("r\r\nedhub\0", 9)), S('$', "tags"),
                          Agg('*', {S('+', "a"), S('+', "b")})}),
                S('$', "2.5"), S(':', "1"), Nil('$'), Nil('*'),
                S('$', "123456789012345678901234567890"), S('$', "line1\r\nline2"),
                Agg('*', {S('$', "message"), S(':', "-9")}), Agg('*', {S('$', "k"), map_value})});
  const Value want3 =
      Agg('*', {Agg('%', {S('$', "name"), S('$', std::string("r\r\nedhub\0", 9)), S('$', "tags"),
                          Agg('~', {S('+', "a"), S('+', "b")})}),
                S(',', "2.5"), S('#', "t"), S('_', ""), S('_', ""),
                S('(', "123456789012345678901234567890"), S('=', "txt:line1\r\nline2"),
                Agg('>', {S('$', "message"), S(':', "-9")}), Agg('%', {S('$', "k"), map_value})});
  EXPECT_EQ(Decode(W(2, write)), want2);
  EXPECT_EQ(Decode(W(3, write)), want3);
}

TEST(RoundTripTest, NumbersAndBytes) {
  std::string out;
  Writer w(out, 3);
  std::vector<int64_t> ints = {0, 1, -1, INT64_MIN, INT64_MAX, 1000000007};
  std::vector<double> doubles = {0.0,     -0.0,         0.1,     1.5,   -2.75,    1e20,     1e-300,
                                 DBL_MAX, DBL_TRUE_MIN, 3.14159, 1e300, INFINITY, -INFINITY};
  std::string all_bytes;
  for (int c = 0; c < 256; c++) all_bytes.push_back(static_cast<char>(c));
  w.Array(static_cast<int64_t>(ints.size() + doubles.size() * 2 + 2));
  for (int64_t i : ints) w.Any(i);
  for (double d : doubles) {
    w.Double(d);
    w.BulkFloat(d);
  }
  w.Bulk(all_bytes);
  w.Any(UINT64_MAX);

  auto v = Decode(out);
  ASSERT_TRUE(v.has_value()) << out;
  ASSERT_EQ(v->elems.size(), ints.size() + doubles.size() * 2 + 2);
  size_t at = 0;
  for (int64_t i : ints) {
    const Value& e = v->elems[at++];
    EXPECT_EQ(e.type, ':');
    EXPECT_EQ(std::strtoll(e.str.c_str(), nullptr, 10), i);
  }
  for (double d : doubles) {
    for (char type : {',', '$'}) {
      const Value& e = v->elems[at++];
      EXPECT_EQ(e.type, type);
      double back = std::strtod(e.str.c_str(), nullptr);
      EXPECT_EQ(memcmp(&back, &d, sizeof(d)), 0) << e.str;
    }
  }
  EXPECT_EQ(v->elems[at++], S('$', all_bytes));
  EXPECT_EQ(v->elems[at++], S(':', "18446744073709551615"));
  // NaN has no exact round trip, but it must read back as a NaN.
  auto nan = Decode(W(3, [](Writer& w) { w.Double(NAN); }));
  ASSERT_TRUE(nan.has_value());
  EXPECT_TRUE(std::isnan(std::strtod(nan->str.c_str(), nullptr)));
}

TEST(RoundTripTest, RepliesNeverSplitByTheirContent) {
  // Whatever a simple string or error holds, it decodes as one value.
  std::string nasty = "a\r\n+OK\r\n\n\r-ERR\r";
  for (int protocol : {2, 3}) {
    auto v = Decode(W(protocol, [&](Writer& w) {
      w.Array(4);
      w.String(nasty);
      w.Error(nasty);
      w.Any(Error{nasty});
      w.Any(SimpleString{nasty});
    }));
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->elems[0], S('+', "a  +OK    -ERR "));
    EXPECT_EQ(v->elems[1], S('-', "a  +OK    -ERR "));
    EXPECT_EQ(v->elems[2], S('-', "ERR a  +OK    -ERR"));
    EXPECT_EQ(v->elems[3], S('+', "a  +OK    -ERR "));
  }
}

TEST(RoundTripTest, WrittenCommandsParseBack) {
  // A request is an array of bulk strings: what the Writer writes, the
  // Parser reads, one view per argument.
  const std::vector<std::vector<std::string>> commands = {
      {"SET", "key", std::string("v\0\r\n", 4)}, {"GET", ""}, {"PING"}};
  std::string out;
  Writer w(out);
  for (const auto& c : commands) w.Any(c);
  w.Tile38("SET fleet truck1 POINT 33 -115");
  Parser parser;
  size_t off = 0;
  for (const auto& c : commands) {
    Command cmd;
    size_t used;
    ASSERT_EQ(parser.Parse(out.data() + off, out.size() - off, &cmd, &used),
              ParseStatus::kComplete);
    EXPECT_EQ(std::vector<std::string>(cmd.args.begin(), cmd.args.end()), c);
    EXPECT_EQ(cmd.kind, Kind::kMultibulk);
    off += used;
  }
  Command cmd;
  size_t used;
  ASSERT_EQ(parser.Parse(out.data() + off, out.size() - off, &cmd, &used), ParseStatus::kComplete);
  EXPECT_EQ(cmd.kind, Kind::kTile38);
  EXPECT_EQ(std::vector<std::string>(cmd.args.begin(), cmd.args.end()),
            (std::vector<std::string>{"SET", "fleet", "truck1", "POINT", "33", "-115"}));
  EXPECT_EQ(off + used, out.size());
}

// The limit inside one reply: a string that would cross it is dropped and
// overflowed() says so; what came before stays intact.
TEST(WriterLimitTest, AStringPastTheLimitIsDroppedAndFlagged) {
  std::string out;
  Writer w(out);
  w.set_limit(20);
  w.Array(3);
  w.Bulk("0123456789");  // 4 bytes so far + a 10-byte payload: within 20
  EXPECT_FALSE(w.overflowed());
  EXPECT_EQ(out, "*3\r\n$10\r\n0123456789\r\n");
  w.Bulk("x");
  w.Raw("yy");
  w.String("z");
  w.Error("ERR e");
  w.Verbatim("txt", "v");
  EXPECT_TRUE(w.overflowed());
  EXPECT_EQ(out, "*3\r\n$10\r\n0123456789\r\n");
  w.clear_overflow();
  w.set_limit(SIZE_MAX);
  w.Bulk("x");
  EXPECT_FALSE(w.overflowed());
  EXPECT_EQ(out.substr(out.size() - 7), "$1\r\nx\r\n");
}

}  // namespace
}  // namespace redhub::resp
