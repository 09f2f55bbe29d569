#include "glob.h"

#include <cctype>

namespace redhub::worker {
namespace {

char Fold(char c, bool nocase) {
  return nocase ? static_cast<char>(std::tolower(static_cast<unsigned char>(c))) : c;
}

// Depth bounds the recursion on patterns like "*a*a*a*..." as Redis does.
bool Match(const char* p, const char* pend, const char* s, const char* send, bool nocase,
           int depth) {
  if (depth > 1000) return false;
  while (p < pend && s < send) {
    switch (*p) {
      case '*':
        while (p + 1 < pend && p[1] == '*') p++;
        if (p + 1 == pend) return true;
        for (; s < send; s++) {
          if (Match(p + 1, pend, s, send, nocase, depth + 1)) return true;
        }
        return false;
      case '?':
        s++;
        break;
      case '[': {
        p++;
        bool negate = p < pend && *p == '^';
        if (negate) p++;
        bool matched = false;
        while (p < pend && *p != ']') {
          if (*p == '\\' && p + 1 < pend) {
            p++;
            if (Fold(*p, nocase) == Fold(*s, nocase)) matched = true;
          } else if (p + 2 < pend && p[1] == '-' && p[2] != ']') {
            char lo = Fold(p[0], nocase), hi = Fold(p[2], nocase), c = Fold(*s, nocase);
            if (lo > hi) std::swap(lo, hi);
            if (c >= lo && c <= hi) matched = true;
            p += 2;
          } else if (Fold(*p, nocase) == Fold(*s, nocase)) {
            matched = true;
          }
          p++;
        }
        if (p == pend) p--;  // an unterminated class ends at the pattern's end
        if (negate) matched = !matched;
        if (!matched) return false;
        s++;
        break;
      }
      case '\\':
        if (p + 1 < pend) p++;
        [[fallthrough]];
      default:
        if (Fold(*p, nocase) != Fold(*s, nocase)) return false;
        s++;
        break;
    }
    p++;
  }
  while (p < pend && *p == '*') p++;
  return p == pend && s == send;
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase) {
  return Match(pattern.data(), pattern.data() + pattern.size(), text.data(),
               text.data() + text.size(), nocase, 0);
}

}  // namespace redhub::worker
