// Redis's glob-style pattern matching (stringmatchlen): * ? [abc] [^a-z] \x,
// in time linear in the pattern times the text, never exponential.
//
// Redis's recursive matcher backtracks into every earlier '*' on a miss, so
// "a*a*a*...b" against a long run of 'a' takes exponential time
// (CVE-2022-36021); its fix, and the nesting limit that followed
// (CVE-2024-31228), patch the recursion. This one has none: the pattern is
// compiled once into tokens (a class becomes a 256-bit set, parsed once, not
// at every backtrack), and matching is the greedy two-pointer algorithm,
// which on a miss moves only the latest '*' on by one byte. That is enough
// for glob patterns, where every token but '*' takes exactly one byte, so the
// worst case is O(pattern x text) with no stack.
//
//   GlobPattern p("user:*:name");
//   for (auto key : keys) if (p.Match(key)) ...
#pragma once

#include <bitset>
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

 private:
  enum class Kind : uint8_t { kStar, kAny, kByte, kClass };
  struct Token {
    Kind kind;
    uint8_t byte;  // kByte: the byte, folded if nocase
    uint32_t cls;  // kClass: index into classes_
  };
  bool TokenMatches(const Token& t, unsigned char c) const;

  std::vector<Token> tokens_;
  std::vector<std::bitset<256>> classes_;
  bool nocase_;
  bool matches_all_ = true;
};

// One-off match (compiles the pattern each call).
bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase = false);

}  // namespace redhub::worker
