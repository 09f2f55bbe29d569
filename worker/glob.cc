#include "glob.h"

#include <cctype>
#include <utility>

#include "progress.h"

namespace redhub::worker {
namespace {

unsigned char Fold(unsigned char c, bool nocase) {
  return nocase ? static_cast<unsigned char>(std::tolower(c)) : c;
}

// Whether byte c (already folded) is in the class that starts at p (just
// after '['), as Redis reads a class: '^' negates, "a-z" is a range (either
// order), '\' escapes the next byte, and a class with no ']' ends at the
// pattern's end. Returns the position of the class's last byte (its ']', or
// the pattern's last byte), where the caller's scan goes on from.
const char* ClassContains(const char* p, const char* pend, unsigned char c, bool nocase, bool* in) {
  bool negate = p < pend && *p == '^';
  if (negate) p++;
  bool matched = false;
  while (p < pend && *p != ']') {
    if (*p == '\\' && p + 1 < pend) {
      p++;
      if (Fold(*p, nocase) == c) matched = true;
    } else if (p + 2 < pend && p[1] == '-' && p[2] != ']') {
      unsigned char lo = Fold(p[0], nocase), hi = Fold(p[2], nocase);
      if (lo > hi) std::swap(lo, hi);
      if (c >= lo && c <= hi) matched = true;
      p += 2;
    } else if (Fold(*p, nocase) == c) {
      matched = true;
    }
    p++;
  }
  if (p == pend) p--;
  *in = negate ? !matched : matched;
  return p;
}

}  // namespace

GlobPattern::GlobPattern(std::string_view pattern, bool nocase) : nocase_(nocase) {
  const char* p = pattern.data();
  const char* pend = p + pattern.size();
  for (; p < pend; p++) {
    switch (*p) {
      case '*':
        if (tokens_.empty() || tokens_.back().kind != Kind::kStar) {
          tokens_.push_back({Kind::kStar, 0, 0});
        }
        continue;  // a star keeps matches_all_
      case '?':
        tokens_.push_back({Kind::kAny, 0, 0});
        break;
      case '[': {
        std::bitset<256> set;
        const char* last = p;
        for (int b = 0; b < 256; b++) {
          bool in = false;
          last =
              ClassContains(p + 1, pend, Fold(static_cast<unsigned char>(b), nocase), nocase, &in);
          if (in) set.set(b);
        }
        tokens_.push_back({Kind::kClass, 0, static_cast<uint32_t>(classes_.size())});
        classes_.push_back(set);
        p = last;
        break;
      }
      case '\\':
        if (p + 1 < pend) p++;  // a trailing '\' stands for itself
        [[fallthrough]];
      default:
        tokens_.push_back({Kind::kByte, Fold(static_cast<unsigned char>(*p), nocase), 0});
        break;
    }
    matches_all_ = false;
  }
  if (tokens_.empty()) matches_all_ = false;  // "" matches only ""
}

bool GlobPattern::TokenMatches(const Token& t, unsigned char c) const {
  switch (t.kind) {
    case Kind::kAny:
      return true;
    case Kind::kByte:
      return Fold(c, nocase_) == t.byte;
    case Kind::kClass:
      return classes_[t.cls].test(c);
    case Kind::kStar:
      break;
  }
  return false;
}

bool GlobPattern::Match(std::string_view text) const {
  if (matches_all_) return true;
  const size_t n = tokens_.size();
  size_t ti = 0, si = 0;
  size_t star = n;  // the latest '*' seen (n: none yet)
  size_t star_si = 0;
  uint32_t steps = 0;
  while (si < text.size()) {
    // O(pattern x text) can still be seconds ("*aaa...ab" over a long key):
    // slow, not hung, for the watchdog (shm/progress.h).
    if ((++steps & 0xFFFFF) == 0) shm::ReportProgress();
    if (ti < n && tokens_[ti].kind == Kind::kStar) {
      star = ti++;
      star_si = si;
    } else if (ti < n && TokenMatches(tokens_[ti], static_cast<unsigned char>(text[si]))) {
      ti++;
      si++;
    } else if (star != n) {
      // Let the latest star take one byte more and retry what follows it;
      // earlier stars never need to move (each token takes one byte).
      ti = star + 1;
      si = ++star_si;
    } else {
      return false;
    }
  }
  while (ti < n && tokens_[ti].kind == Kind::kStar) ti++;
  return ti == n;
}

bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase) {
  return GlobPattern(pattern, nocase).Match(text);
}

}  // namespace redhub::worker
