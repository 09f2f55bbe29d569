#include "glob.h"

#include <algorithm>
#include <utility>

#include "progress.h"

namespace redhub::worker {
namespace {

// C-locale tolower, which is what Redis's matcher gets (it sets no LC_CTYPE);
// on ints so that bytes past 0x7f, read as negative chars, stay themselves.
int Lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

// Classes of at least this many bytes are compiled into a ByteSet.
constexpr size_t kLongClass = 32;

// Reads the class whose body starts at p (just after '[') as Redis's
// stringmatchlen does, calling member(byte, foldable) for each single byte
// (an escaped one is never case-folded, as in Redis) and range(lo, hi) for
// each range, with its ends as signed bytes, swapped if reversed. A "-"
// after a byte makes a range whatever follows, ']' included ("[a-]" is
// ']'..'a'). Returns the position just past the class: past its ']', or
// the pattern's end if there is none. *negate: it began with '^'.
template <typename Member, typename Range>
const char* ReadClass(const char* p, const char* pend, bool* negate, Member&& member,
                      Range&& range) {
  *negate = p < pend && *p == '^';
  if (*negate) p++;
  for (;; p++) {
    if (pend - p >= 2 && *p == '\\') {
      p++;
      member(static_cast<unsigned char>(*p), false);
    } else if (p < pend && *p == ']') {
      return p + 1;
    } else if (p >= pend) {
      return pend;
    } else if (pend - p >= 3 && p[1] == '-') {
      int lo = static_cast<signed char>(p[0]), hi = static_cast<signed char>(p[2]);
      if (lo > hi) std::swap(lo, hi);
      range(lo, hi);
      p += 2;
    } else {
      member(static_cast<unsigned char>(*p), true);
    }
  }
}

bool SameByte(unsigned char a, unsigned char b, bool nocase) {
  return nocase ? Lower(a) == Lower(b) : a == b;
}

// A range's test: Redis compares the byte as a signed char, and with nocase
// lowers the (already swapped) ends and the byte.
bool InRange(int lo, int hi, unsigned char c, bool nocase) {
  int x = static_cast<signed char>(c);
  if (nocase) {
    lo = Lower(lo);
    hi = Lower(hi);
    x = Lower(x);
  }
  return x >= lo && x <= hi;
}

// The bytes whose signed value lies in lo..hi (either may be negative).
void SetSignedRange(GlobPattern::ByteSet* set, int lo, int hi) {
  if (lo > hi) return;
  if (hi >= 0) set->SetRange(static_cast<unsigned>(std::max(lo, 0)), static_cast<unsigned>(hi));
  if (lo < 0)
    set->SetRange(static_cast<unsigned>(lo + 256), static_cast<unsigned>(std::min(hi, -1) + 256));
}

}  // namespace

void GlobPattern::ByteSet::SetRange(unsigned lo, unsigned hi) {
  for (unsigned word = lo >> 6; word <= hi >> 6; word++) {
    const unsigned from = std::max(lo, word << 6) & 63, to = std::min(hi, (word << 6) + 63) & 63;
    const uint64_t upto = to == 63 ? ~uint64_t{0} : (uint64_t{1} << (to + 1)) - 1;
    w[word] |= upto & ~((uint64_t{1} << from) - 1);
  }
}

GlobPattern::GlobPattern(std::string_view pattern, bool nocase)
    : pattern_(pattern), nocase_(nocase) {
  const char* begin = pattern.data();
  const char* pend = begin + pattern.size();
  bool only_stars = !pattern.empty();
  for (const char* p = begin; p < pend;) {
    if (*p != '*') only_stars = false;
    if (*p == '\\') {
      p += pend - p >= 2 ? 2 : 1;
      continue;
    }
    if (*p != '[') {
      p++;
      continue;
    }
    ByteSet set;
    bool negate = false;
    const char* end = ReadClass(
        p + 1, pend, &negate,
        [&](unsigned char b, bool foldable) {
          set.Set(b);
          if (nocase && foldable && Lower(b) != b) set.Set(static_cast<unsigned char>(Lower(b)));
          if (nocase && foldable && b >= 'a' && b <= 'z')
            set.Set(static_cast<unsigned char>(b - 32));
        },
        [&](int lo, int hi) {
          if (!nocase) {
            SetSignedRange(&set, lo, hi);
            return;
          }
          // Lowered ends; a byte is in if its lowered value is: every byte
          // of the interval but the capitals, and the capitals whose small
          // letter is in it.
          ByteSet lowered;
          SetSignedRange(&lowered, Lower(lo), Lower(hi));
          for (int c = 'A'; c <= 'Z'; c++) {
            if (lowered.Test(static_cast<unsigned char>(Lower(c))))
              set.Set(static_cast<unsigned char>(c));
          }
          for (int i = 0; i < 4; i++) {
            uint64_t capitals = 0;
            if (i == 1) capitals = uint64_t{0x3FFFFFF} << 1;  // 'A'..'Z' are bits 65..90
            set.w[i] |= lowered.w[i] & ~capitals;
          }
        });
    if (static_cast<size_t>(end - p) >= kLongClass) {
      if (negate) {
        for (uint64_t& w : set.w) w = ~w;
      }
      long_classes_.push_back(
          LongClass{static_cast<uint32_t>(p - begin), static_cast<uint32_t>(end - begin), set});
    }
    p = end;
  }
  matches_all_ = only_stars;
}

bool GlobPattern::ClassContains(size_t at, unsigned char c, size_t* next) const {
  const char* begin = pattern_.data();
  const char* pend = begin + pattern_.size();
  auto it = std::lower_bound(long_classes_.begin(), long_classes_.end(), at,
                             [](const LongClass& lc, size_t offset) { return lc.begin < offset; });
  if (it != long_classes_.end() && it->begin == at) {
    *next = it->end;
    return it->set.Test(c);
  }
  bool negate = false, in = false;
  const char* end = ReadClass(
      begin + at + 1, pend, &negate,
      [&](unsigned char b, bool foldable) {
        if (foldable ? SameByte(b, c, nocase_) : b == c) in = true;
      },
      [&](int lo, int hi) {
        if (InRange(lo, hi, c, nocase_)) in = true;
      });
  *next = static_cast<size_t>(end - begin);
  return in != negate;
}

bool GlobPattern::Match(std::string_view text) const {
  if (matches_all_) return true;
  const size_t n = pattern_.size();
  size_t pi = 0, si = 0;
  size_t star = n;  // just past the latest run of '*' (n: none yet)
  size_t star_si = 0;
  uint32_t steps = 0;
  while (si < text.size()) {
    // O(pattern x text) can still be seconds ("*aaa...ab" over a long key):
    // slow, not hung, for the watchdog (shm/progress.h).
    if ((++steps & 0xFFFFF) == 0) shm::ReportProgress();
    if (pi < n && pattern_[pi] == '*') {
      while (pi < n && pattern_[pi] == '*') pi++;
      if (pi == n) return true;
      star = pi;
      star_si = si;
      continue;
    }
    const auto c = static_cast<unsigned char>(text[si]);
    bool ok = false;
    size_t next = pi + 1;
    if (pi < n) {
      switch (pattern_[pi]) {
        case '?':
          ok = true;
          break;
        case '[':
          ok = ClassContains(pi, c, &next);
          break;
        case '\\':
          if (pi + 1 < n) next = pi + 2;  // a trailing '\' stands for itself
          ok = SameByte(static_cast<unsigned char>(pattern_[next - 1]), c, nocase_);
          break;
        default:
          ok = SameByte(static_cast<unsigned char>(pattern_[pi]), c, nocase_);
          break;
      }
    }
    if (ok) {
      pi = next;
      si++;
    } else if (star != n) {
      // Let the latest star take one byte more and retry what follows it;
      // earlier stars never need to move (each other token takes one byte).
      pi = star;
      si = ++star_si;
    } else {
      return false;
    }
  }
  while (pi < n && pattern_[pi] == '*') pi++;
  return pi == n;
}

bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase) {
  return GlobPattern(pattern, nocase).Match(text);
}

}  // namespace redhub::worker
