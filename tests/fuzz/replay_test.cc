// Replays every file of tests/fuzz/corpus/ and tests/fuzz/regressions/
// through the fuzz target's invariant checks, with the project's compiler
// and without libFuzzer, so that every ctest run covers them. The directory
// is found through REDHUB_FUZZ_DIR, set by tests/fuzz/CMakeLists.txt.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "parser_invariants.h"

namespace redhub::resp::fuzz {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> FilesIn(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void ReplayDir(const char* name, size_t at_least) {
  const fs::path dir = fs::path(REDHUB_FUZZ_DIR) / name;
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  const auto files = FilesIn(dir);
  EXPECT_GE(files.size(), at_least) << "too few files in " << dir;
  for (const auto& file : files) {
    const std::string bytes = ReadFile(file);
    EXPECT_EQ(CheckParserInvariants(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
              "")
        << file;
  }
}

TEST(FuzzReplayTest, Corpus) { ReplayDir("corpus", 12); }

TEST(FuzzReplayTest, Regressions) { ReplayDir("regressions", 1); }

// The checks must be able to fail: a stream whose pieces disagree is caught.
TEST(FuzzReplayTest, CheckerCatchesADifference) {
  InvariantChecker check;
  ParseOutcome a, b;
  a.cmds.push_back(ParsedCommand{{"PING"}, Kind::kInline, "PING\r\n", 0});
  CompareOutcomes(check, a, b, "test");
  EXPECT_EQ(check.failure(), "test: command count differs");
}

}  // namespace
}  // namespace redhub::resp::fuzz
