// Google Benchmark of resp/: request parsing and reply writing. Each figure
// is per batch as described, with bytes/s and items/s (commands parsed or
// values written) reported by the library.
#include <benchmark/benchmark.h>
#include <redhub/reply.h>
#include <redhub/resp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

namespace redhub::resp {
namespace {

constexpr int kCommands = 1000;

std::string Multibulk(std::initializer_list<std::string> args) {
  std::string out;
  Writer w(out);
  w.Array(static_cast<int64_t>(args.size()));
  for (const auto& a : args) w.Bulk(a);
  return out;
}

std::string Key(int i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "key:%03d", i);
  return buf;
}

// Parses a buffer holding a whole pipeline, as a worker does after a read.
void ParsePipeline(benchmark::State& state, const std::string& input, int commands) {
  Parser parser;
  Command cmd;
  size_t used;
  for (auto _ : state) {
    const char* p = input.data();
    size_t len = input.size();
    int n = 0;
    while (parser.Parse(p, len, &cmd, &used) == ParseStatus::kComplete) {
      benchmark::DoNotOptimize(cmd.args.data());
      p += used;
      len -= used;
      n++;
    }
    if (n != commands) {
      state.SkipWithError("wrong command count");
      break;
    }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(input.size()));
  state.SetItemsProcessed(state.iterations() * commands);
}

void BM_ParseSetPipeline(benchmark::State& state) {
  std::string input;
  for (int i = 0; i < kCommands; i++) input += Multibulk({"SET", Key(i), "value"});
  ParsePipeline(state, input, kCommands);
}
BENCHMARK(BM_ParseSetPipeline);

void BM_ParseGetPipeline(benchmark::State& state) {
  std::string input;
  for (int i = 0; i < kCommands; i++) input += Multibulk({"GET", Key(i)});
  ParsePipeline(state, input, kCommands);
}
BENCHMARK(BM_ParseGetPipeline);

void BM_ParseInlinePingPipeline(benchmark::State& state) {
  std::string input;
  for (int i = 0; i < kCommands; i++) input += "PING\r\n";
  ParsePipeline(state, input, kCommands);
}
BENCHMARK(BM_ParseInlinePingPipeline);

// A 1 MB bulk arriving in 16 KB pieces: each call re-passes the growing
// buffer, as a connection does while the value is still arriving. The parser
// never reads a multibulk payload, so this measures the cost of the 65 calls
// (reported as calls/s), not a scan of the megabyte.
void BM_ParseBulk1MBIn16KBPieces(benchmark::State& state) {
  constexpr size_t kPayload = 1 << 20, kPiece = 16 << 10;
  std::string input = Multibulk({"SET", "big", std::string(kPayload, 'v')});
  Parser parser;
  Command cmd;
  size_t used;
  int64_t calls = 0;
  for (auto _ : state) {
    ParseStatus st = ParseStatus::kNeedMore;
    for (size_t avail = 0; avail < input.size();) {
      avail = std::min(input.size(), avail + kPiece);
      st = parser.Parse(input.data(), avail, &cmd, &used);
      calls++;
    }
    if (st != ParseStatus::kComplete) {
      state.SkipWithError("bulk not parsed");
      break;
    }
    benchmark::DoNotOptimize(cmd.args.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(input.size()));
  state.SetItemsProcessed(state.iterations());
  state.counters["calls"] =
      benchmark::Counter(static_cast<double>(calls), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ParseBulk1MBIn16KBPieces);

// Writes kCommands values per iteration into a reused buffer.
template <class F>
void WriteBatch(benchmark::State& state, int protocol, F write) {
  std::string out;
  Writer w(out, protocol);
  int64_t bytes = 0;
  for (auto _ : state) {
    out.clear();
    for (int i = 0; i < kCommands; i++) write(w);
    benchmark::DoNotOptimize(out.data());
    bytes += static_cast<int64_t>(out.size());
  }
  state.SetBytesProcessed(bytes);
  state.SetItemsProcessed(state.iterations() * kCommands);
}

void BM_WriteBulk16(benchmark::State& state) {
  const std::string value(16, 'x');
  WriteBatch(state, 2, [&](Writer& w) { w.Bulk(value); });
}
BENCHMARK(BM_WriteBulk16);

void BM_WriteInt(benchmark::State& state) {
  int64_t n = 1234567;
  WriteBatch(state, 2, [&](Writer& w) { w.Int(n++); });
}
BENCHMARK(BM_WriteInt);

void BM_WriteArrayOf10Bulks(benchmark::State& state) {
  const std::string value(16, 'x');
  WriteBatch(state, 2, [&](Writer& w) {
    w.Array(10);
    for (int i = 0; i < 10; i++) w.Bulk(value);
  });
}
BENCHMARK(BM_WriteArrayOf10Bulks);

// Any() of a 10-entry std::map<std::string, int64_t>, in RESP2 and RESP3.
void BM_WriteAnyMap(benchmark::State& state) {
  std::map<std::string, int64_t> m;
  for (int i = 0; i < 10; i++) m[Key(i)] = i;
  WriteBatch(state, static_cast<int>(state.range(0)), [&](Writer& w) { w.Any(m); });
}
BENCHMARK(BM_WriteAnyMap)->Arg(2)->Arg(3)->ArgName("resp");

}  // namespace
}  // namespace redhub::resp
