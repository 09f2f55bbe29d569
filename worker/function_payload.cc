#include "function_payload.h"

#include <cstdint>

#include "crc64.h"

namespace redhub::worker {
namespace {

constexpr unsigned char kOpcodeFunction2 = 245;  // RDB_OPCODE_FUNCTION2
constexpr unsigned char kOpcodeFunction = 246;   // RDB_OPCODE_FUNCTION (7.0 RC, refused)
constexpr uint16_t kRdbVersion = 10;             // Redis 7.0's RDB_VERSION

// rdbSaveLen.
void PutLen(std::string& out, uint64_t len) {
  if (len < 64) {
    out += static_cast<char>(len);
  } else if (len < 16384) {
    out += static_cast<char>(0x40 | (len >> 8));
    out += static_cast<char>(len & 0xff);
  } else if (len <= UINT32_MAX) {
    out += static_cast<char>(0x80);
    for (int s = 24; s >= 0; s -= 8) out += static_cast<char>((len >> s) & 0xff);
  } else {
    out += static_cast<char>(0x81);
    for (int s = 56; s >= 0; s -= 8) out += static_cast<char>((len >> s) & 0xff);
  }
}

struct Reader {
  std::string_view in;
  size_t at = 0;
  bool Byte(unsigned char* b) {
    if (at >= in.size()) return false;
    *b = static_cast<unsigned char>(in[at++]);
    return true;
  }
  bool BigEndian(int bytes, uint64_t* v) {
    *v = 0;
    for (int i = 0; i < bytes; i++) {
      unsigned char b;
      if (!Byte(&b)) return false;
      *v = *v << 8 | b;
    }
    return true;
  }
  bool LittleEndian(int bytes, uint64_t* v) {
    *v = 0;
    for (int i = 0; i < bytes; i++) {
      unsigned char b;
      if (!Byte(&b)) return false;
      *v |= uint64_t{b} << (8 * i);
    }
    return true;
  }
  // rdbLoadLen: *encoded for the special string encodings (11xxxxxx).
  bool Len(uint64_t* len, bool* encoded) {
    unsigned char b;
    if (!Byte(&b)) return false;
    *encoded = false;
    switch (b >> 6) {
      case 0:
        *len = b & 0x3f;
        return true;
      case 1: {
        unsigned char b2;
        if (!Byte(&b2)) return false;
        *len = uint64_t{b & 0x3fu} << 8 | b2;
        return true;
      }
      case 2:
        if (b == 0x80) return BigEndian(4, len);
        if (b == 0x81) return BigEndian(8, len);
        return false;
      default:
        *encoded = true;
        *len = b & 0x3f;
        return true;
    }
  }
  bool Take(uint64_t n, std::string_view* out) {
    if (n > in.size() - at) return false;
    *out = in.substr(at, n);
    at += n;
    return true;
  }
  // rdbGenericLoadStringObject.
  bool String(std::string* out) {
    uint64_t len;
    bool encoded;
    if (!Len(&len, &encoded)) return false;
    if (!encoded) {
      std::string_view s;
      if (!Take(len, &s)) return false;
      out->assign(s);
      return true;
    }
    if (len <= 2) {  // RDB_ENC_INT8 / 16 / 32
      uint64_t v;
      if (!LittleEndian(1 << len, &v)) return false;
      int64_t n = len == 0   ? static_cast<int8_t>(v)
                  : len == 1 ? static_cast<int16_t>(v)
                             : static_cast<int32_t>(v);
      *out = std::to_string(n);
      return true;
    }
    if (len != 3) return false;  // RDB_ENC_LZF
    uint64_t clen, ulen;
    bool e1, e2;
    if (!Len(&clen, &e1) || !Len(&ulen, &e2) || e1 || e2) return false;
    std::string_view c;
    if (!Take(clen, &c)) return false;
    return Lzf(c, ulen, out);
  }
  // LZF decompression (liblzf's format, as Redis's lzf_d.c reads it):
  // a control byte below 32 copies that many + 1 literal bytes; otherwise
  // its top 3 bits are a length (7: one more length byte follows) and the
  // rest with the next byte an offset back into the output.
  static bool Lzf(std::string_view in, uint64_t ulen, std::string* out) {
    out->clear();
    out->reserve(ulen);
    size_t i = 0;
    while (i < in.size()) {
      unsigned ctrl = static_cast<unsigned char>(in[i++]);
      if (ctrl < 32) {
        const size_t n = ctrl + 1;
        if (n > in.size() - i || out->size() + n > ulen) return false;
        out->append(in.substr(i, n));
        i += n;
      } else {
        size_t len = ctrl >> 5;
        if (len == 7) {
          if (i >= in.size()) return false;
          len += static_cast<unsigned char>(in[i++]);
        }
        if (i >= in.size()) return false;
        const size_t back = ((ctrl & 0x1f) << 8) + static_cast<unsigned char>(in[i++]) + 1;
        len += 2;
        if (back > out->size() || out->size() + len > ulen) return false;
        size_t from = out->size() - back;
        for (size_t k = 0; k < len; k++) out->push_back((*out)[from + k]);  // may overlap
      }
    }
    return out->size() == ulen;
  }
};

}  // namespace

std::string DumpFunctionPayload(const std::vector<std::string>& codes) {
  std::string out;
  for (const std::string& code : codes) {
    out += static_cast<char>(kOpcodeFunction2);
    PutLen(out, code.size());
    out += code;
  }
  out += static_cast<char>(kRdbVersion & 0xff);
  out += static_cast<char>(kRdbVersion >> 8);
  const uint64_t crc = Crc64(0, out);
  for (int i = 0; i < 8; i++) out += static_cast<char>((crc >> (8 * i)) & 0xff);
  return out;
}

bool ParseFunctionPayload(std::string_view payload, std::vector<std::string>* codes,
                          std::string* error) {
  // verifyDumpPayload: a footer of version and checksum.
  if (payload.size() < 10) {
    *error = "ERR payload version or checksum are wrong";
    return false;
  }
  const std::string_view body = payload.substr(0, payload.size() - 10);
  const auto* f = reinterpret_cast<const unsigned char*>(payload.data() + body.size());
  const uint16_t version = static_cast<uint16_t>(f[0] | f[1] << 8);
  uint64_t crc = 0;
  for (int i = 0; i < 8; i++) crc |= uint64_t{f[2 + i]} << (8 * i);
  if (version > kRdbVersion || crc != Crc64(0, payload.substr(0, payload.size() - 8))) {
    *error = "ERR payload version or checksum are wrong";
    return false;
  }
  Reader r{body};
  while (r.at < body.size()) {
    unsigned char op;
    r.Byte(&op);
    if (op == kOpcodeFunction) {
      *error = "ERR Pre-GA function format not supported";
      return false;
    }
    if (op != kOpcodeFunction2) {
      *error = "ERR given type is not a function";
      return false;
    }
    std::string code;
    if (!r.String(&code)) {
      *error = "ERR Failed loading library payload";
      return false;
    }
    codes->push_back(std::move(code));
  }
  return true;
}

}  // namespace redhub::worker
