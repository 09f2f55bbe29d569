// RESP reply encoding.
//
// Two layers:
//  * Append* free functions mirror the Go package's Append functions: each
//    appends one RESP2 value to a std::string and knows nothing else.
//  * Writer is what a command handler receives: it appends to a connection's
//    output buffer in the protocol the connection negotiated (HELLO 2 or 3),
//    so RESP3 types (map, set, double, boolean, null, big number, verbatim,
//    push) degrade to their RESP2 equivalents on a RESP2 connection.
//
// Simple strings and errors never carry CR or LF: both are replaced by
// spaces, so a reply can never be split into two by its content.
//
//   void Handle(const Command& cmd, Writer& w) {
//     w.Array(2);
//     w.Bulk("hello");
//     w.Int(42);
//     w.Any(std::map<std::string, int>{{"a", 1}});  // RESP3 map or flat RESP2 array
//   }
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <map>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace redhub::resp {

void AppendInt(std::string& out, int64_t n);
void AppendUint(std::string& out, uint64_t n);
void AppendString(std::string& out, std::string_view s);  // +s, CR/LF become spaces
void AppendBulk(std::string& out, std::string_view s);
inline void AppendBulkString(std::string& out, std::string_view s) { AppendBulk(out, s); }
void AppendArray(std::string& out, int64_t n);
void AppendError(std::string& out, std::string_view s);  // -s, CR/LF become spaces
void AppendNull(std::string& out);
void AppendOK(std::string& out);
void AppendTile38(std::string& out, std::string_view s);  // $<len> <s>\r\n
void AppendBulkInt(std::string& out, int64_t n);
void AppendBulkUint(std::string& out, uint64_t n);
void AppendBulkFloat(std::string& out, double f);  // shortest exact decimal, no exponent

// The Go package's error rule: a message whose first word is not an
// upper-case error code ("WRONGTYPE", "ERR", ...) gets "ERR " in front.
std::string PrefixErrIfNeeded(std::string_view msg);

// Shortest decimal that reads back as the same double; "inf", "-inf", "nan".
std::string FormatDouble(double d);

// Value wrappers that pick an encoding for Any().
struct Error {
  std::string message;
};
struct SimpleString {
  std::string_view value;
};
struct SimpleInt {
  int64_t value;
};
struct Null {};

class Writer;

// The customization point (the Go Marshaler): a type with a member
//   void MarshalRESP(Writer&) const;
// or a free function found by argument-dependent lookup
//   void MarshalRESP(Writer&, const T&);
// is written by Any() through it.
template <class T>
concept MemberMarshaler = requires(const T& v, Writer& w) {
  v.MarshalRESP(w);
};
template <class T>
concept FreeMarshaler = requires(const T& v, Writer& w) {
  MarshalRESP(w, v);
};

class Writer {
 public:
  Writer(std::string& out, int protocol = 2) : out_(&out), protocol_(protocol) {}

  int protocol() const { return protocol_; }
  void set_protocol(int protocol) { protocol_ = protocol; }
  std::string& buffer() { return *out_; }

  // The output limit inside one reply: an append of a string (bulk, simple
  // string, error, raw bytes) that would take the buffer past `bytes` is
  // dropped and overflowed() turns true; the caller closes the client (as
  // Redis's client-output-buffer-limit does). Without it one command (MGET
  // of a 1 MB key a thousand times) could build a reply of any size before
  // any check after the command saw it. Small items (integers, nulls,
  // aggregate headers) are not checked: they are bounded by the request.
  void set_limit(size_t bytes) { limit_ = bytes; }
  bool overflowed() const { return overflowed_; }
  void clear_overflow() { overflowed_ = false; }

  // The error hook (Redis's afterErrorReply): called with the text of every
  // error reply (after the '-', before CR and LF become spaces), also one
  // the output limit then drops, so that whoever runs commands counts
  // errors as they are written instead of reading replies back. A plain
  // function and a context: unset (the default) it costs one test per
  // error, and nothing per reply of another type.
  //
  //   w.set_error_observer([](void* n, std::string_view) { ++*static_cast<int*>(n); }, &errors);
  using ErrorObserver = void (*)(void* context, std::string_view error);
  void set_error_observer(ErrorObserver observer, void* context) {
    error_observer_ = observer;
    error_context_ = context;
  }
  ErrorObserver error_observer() const { return error_observer_; }
  void* error_context() const { return error_context_; }

  // RESP2 values, written the same in both protocols.
  void Int(int64_t n) { AppendInt(*out_, n); }
  void Uint(uint64_t n) { AppendUint(*out_, n); }
  void String(std::string_view s) {
    if (Room(s.size())) AppendString(*out_, s);
  }
  void Bulk(std::string_view s) {
    if (Room(s.size())) AppendBulk(*out_, s);
  }
  void Array(int64_t n) { AppendArray(*out_, n); }
  // Every error reply passes here (Any of resp::Error too), and the error
  // hook, if set, sees it first.
  void Error(std::string_view s) {
    if (error_observer_ != nullptr) error_observer_(error_context_, s);
    if (Room(s.size())) AppendError(*out_, s);
  }
  void OK() { AppendOK(*out_); }
  void Tile38(std::string_view s) {
    if (Room(s.size())) AppendTile38(*out_, s);
  }
  void BulkInt(int64_t n) { AppendBulkInt(*out_, n); }
  void BulkUint(uint64_t n) { AppendBulkUint(*out_, n); }
  void BulkFloat(double f) { AppendBulkFloat(*out_, f); }
  void Raw(std::string_view bytes) {
    if (Room(bytes.size())) out_->append(bytes);
  }

  // Null: "_" in RESP3; the null bulk "$-1" in RESP2.
  void Null();
  // The RESP2 null array "*-1" ("_" in RESP3), for commands whose array reply
  // can be absent.
  void NullArray();
  // Map of n pairs: "%n" in RESP3; a flat array of 2n elements in RESP2.
  void Map(int64_t pairs);
  // Set: "~n" in RESP3; an array in RESP2.
  void Set(int64_t n);
  // Push: ">n" in RESP3; an array in RESP2.
  void Push(int64_t n);
  // Double: ",d" in RESP3; a bulk string in RESP2.
  void Double(double d);
  // Boolean: "#t"/"#f" in RESP3; the integer 1/0 in RESP2 (as Redis does).
  void Boolean(bool b);
  // Big number: "(n" in RESP3; a bulk string in RESP2. digits must be a
  // decimal integer.
  void BigNumber(std::string_view digits);
  // Verbatim string: "=len\r\nfmt:text" in RESP3; a bulk string in RESP2.
  // format is three characters, e.g. "txt" or "mkd".
  void Verbatim(std::string_view format, std::string_view text);

  // Writes any supported C++ value, like the Go AppendAny:
  //   nullptr, std::nullopt, resp::Null     -> null
  //   resp::Error                           -> error, with the ERR-prefix rule
  //   resp::SimpleString / resp::SimpleInt  -> simple string / integer
  //   strings (anything convertible to string_view) -> bulk string
  //   bool    -> bulk "1"/"0" in RESP2 (as the Go package), boolean in RESP3
  //   integers -> integer; floating point -> BulkFloat in RESP2, double in RESP3
  //   std::optional<T> -> null or the value
  //   std::pair -> two-element array
  //   maps (key_type/mapped_type) -> pairs sorted by key, as a map
  //   other ranges -> array of their elements
  //   types with MarshalRESP -> whatever it writes
  template <class T>
  void Any(const T& v);

 private:
  template <class M>
  void AnyMap(const M& m);

  bool Room(size_t n) {
    if (out_->size() + n <= limit_) [[likely]] {
      return true;
    }
    overflowed_ = true;
    return false;
  }

  std::string* out_;
  int protocol_;
  size_t limit_ = SIZE_MAX;
  bool overflowed_ = false;
  ErrorObserver error_observer_ = nullptr;
  void* error_context_ = nullptr;
};

namespace detail {
template <class T>
concept MapLike = requires {
  typename T::key_type;
  typename T::mapped_type;
}
&&std::ranges::range<T>;

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <class T>
struct IsPair : std::false_type {};
template <class A, class B>
struct IsPair<std::pair<A, B>> : std::true_type {};

template <class K>
std::string KeyString(const K& k) {
  if constexpr (std::is_convertible_v<const K&, std::string_view>) {
    return std::string(std::string_view(k));
  } else if constexpr (std::is_arithmetic_v<K>) {
    return std::to_string(k);
  } else {
    static_assert(sizeof(K) == 0, "map keys must be strings or numbers");
  }
}
}  // namespace detail

template <class M>
void Writer::AnyMap(const M& m) {
  using Key = typename M::key_type;
  if constexpr (std::is_same_v<M, std::map<Key, typename M::mapped_type>> &&
                std::is_convertible_v<const Key&, std::string_view>) {
    // std::map with string keys is already in byte order.
    Map(static_cast<int64_t>(m.size()));
    for (const auto& [k, v] : m) {
      Bulk(std::string_view(k));
      Any(v);
    }
  } else {
    std::vector<std::pair<std::string, const typename M::mapped_type*>> sorted;
    sorted.reserve(m.size());
    for (const auto& [k, v] : m) sorted.emplace_back(detail::KeyString(k), &v);
    std::sort(sorted.begin(), sorted.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    Map(static_cast<int64_t>(sorted.size()));
    for (const auto& [k, v] : sorted) {
      Bulk(k);
      Any(*v);
    }
  }
}

template <class T>
void Writer::Any(const T& v) {
  if constexpr (MemberMarshaler<T>) {
    v.MarshalRESP(*this);
  } else if constexpr (FreeMarshaler<T>) {
    MarshalRESP(*this, v);
  } else if constexpr (std::is_same_v<T, std::nullptr_t> || std::is_same_v<T, std::nullopt_t> ||
                       std::is_same_v<T, resp::Null>) {
    Null();
  } else if constexpr (std::is_same_v<T, resp::Error>) {
    Error(PrefixErrIfNeeded(v.message));
  } else if constexpr (std::is_same_v<T, SimpleString>) {
    String(v.value);
  } else if constexpr (std::is_same_v<T, SimpleInt>) {
    Int(v.value);
  } else if constexpr (std::is_same_v<T, bool>) {
    if (protocol_ >= 3) {
      Boolean(v);
    } else {
      Bulk(v ? "1" : "0");
    }
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    Bulk(std::string_view(v));
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    Int(v);
  } else if constexpr (std::is_integral_v<T>) {
    Uint(v);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (protocol_ >= 3) {
      Double(static_cast<double>(v));
    } else {
      BulkFloat(static_cast<double>(v));
    }
  } else if constexpr (detail::IsOptional<T>::value) {
    if (v) {
      Any(*v);
    } else {
      Null();
    }
  } else if constexpr (detail::IsPair<T>::value) {
    Array(2);
    Any(v.first);
    Any(v.second);
  } else if constexpr (detail::MapLike<T>) {
    AnyMap(v);
  } else if constexpr (std::ranges::sized_range<T>) {
    Array(static_cast<int64_t>(std::ranges::size(v)));
    for (const auto& e : v) Any(e);
  } else {
    static_assert(sizeof(T) == 0, "redhub::resp::Writer::Any: unsupported type");
  }
}

}  // namespace redhub::resp
