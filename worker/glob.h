// Redis's glob-style pattern matching (stringmatchlen): * ? [abc] [^a-z] \x,
// with Redis 7.0's reading of every corner (range ends compared as signed
// bytes, "[a-]" a range up to ']', a class without ']' ending at the
// pattern's end), in time O(pattern x text) at worst, never exponential.
//
// Redis's recursive matcher backtracks into every earlier '*' on a miss, so
// "a*a*a*...b" against a long run of 'a' takes exponential time
// (CVE-2022-36021); its fix, and the nesting limit that followed
// (CVE-2024-31228), patch the recursion. This one has none: it is the greedy
// two-pointer algorithm, which on a miss moves only the latest '*' on by one
// byte. That is enough for glob patterns, where every token but '*' takes
// exactly one byte. A class is parsed where it stands at each test, except
// long ones (32 bytes and more), which are parsed once into a 256-bit set
// when the pattern is compiled, so a long class is not re-read at every
// backtrack and key (valkey #4411). Compiling is one pass over the pattern
// and keeps at most about 1.25 bytes per pattern byte.
//
//   GlobPattern p("user:*:name");
//   for (auto key : keys) if (p.Match(key)) ...
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace redhub::worker {

class GlobPattern {
 public:
  explicit GlobPattern(std::string_view pattern, bool nocase = false);
  bool Match(std::string_view text) const;
  // "*" (or only stars): everything matches, callers may skip matching.
  bool matches_all() const { return matches_all_; }

  // 256 bits, one per byte value.
  struct ByteSet {
    uint64_t w[4] = {0, 0, 0, 0};
    void Set(unsigned char b) { w[b >> 6] |= uint64_t{1} << (b & 63); }
    void SetRange(unsigned lo, unsigned hi);  // bytes lo..hi, lo <= hi <= 255
    bool Test(unsigned char b) const { return (w[b >> 6] >> (b & 63)) & 1; }
  };

 private:
  struct LongClass {
    uint32_t begin;  // offset of its '['
    uint32_t end;    // offset just past it
    ByteSet set;     // negation applied
  };
  // Whether byte c is in the class at pattern offset `at` ('['); *next: the
  // offset after the class.
  bool ClassContains(size_t at, unsigned char c, size_t* next) const;

  std::string_view pattern_;
  bool nocase_;
  bool matches_all_ = false;
  std::vector<LongClass> long_classes_;  // by begin, ascending
};

// One-off match (compiles the pattern each call).
bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase = false);

}  // namespace redhub::worker
