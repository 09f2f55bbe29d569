// libFuzzer target for redhub::resp::Parser. Built by run_fuzz.sh with
//   clang++ -fsanitize=fuzzer,address,undefined -std=c++20 -I include resp/*.cc
// The invariants live in parser_invariants.h, which the replay test
// (replay_test.cc) shares.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "parser_invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string failure = redhub::resp::fuzz::CheckParserInvariants(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "parser invariant violated: %s\n", failure.c_str());
    __builtin_trap();
  }
  return 0;
}
