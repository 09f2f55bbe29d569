#!/usr/bin/env bash
# tests/fuzz/run_fuzz.sh <build-dir> <seconds>
#
# Builds the libFuzzer target of the RESP parser (parser_fuzz.cc) with
# clang++ into <build-dir>/resp_parser_fuzz and runs it for <seconds> seconds
# on a temporary copy of tests/fuzz/corpus/ and tests/fuzz/regressions/ (the
# source corpus is never written to), with tests/fuzz/resp.dict and
# -max_len=4096. If the fuzzer finds a crash (or a leak, timeout or
# out-of-memory), the input is copied into tests/fuzz/regressions/, where the
# resp_fuzz_regressions test replays it from then on, and the script fails.
#
# Exit status: 0 clean run; 1 a finding, or the build or the fuzzer failed;
# 2 bad usage; 77 clang++ or its libFuzzer runtime is missing (ctest: skip).
# REDHUB_FUZZ_CXX names another clang++ to use.
set -euo pipefail

usage() {
  echo "usage: $0 <build-dir> <seconds>" >&2
  exit 2
}
(($# == 2)) || usage
[[ $2 =~ ^[0-9]+$ ]] && (($2 > 0)) || usage
seconds=$2
fuzz_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd -- "$fuzz_dir/../.." && pwd)
cxx=${REDHUB_FUZZ_CXX:-clang++}

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "run_fuzz.sh: $cxx not found; skipping" >&2
  exit 77
fi

mkdir -p -- "$1"
build_dir=$(cd -- "$1" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/redhub-fuzz.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# A clang without the libFuzzer runtime cannot run this test at all.
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
  >"$work/probe.cc"
if ! "$cxx" -fsanitize=fuzzer "$work/probe.cc" -o "$work/probe" >/dev/null 2>&1; then
  echo "run_fuzz.sh: $cxx cannot link a libFuzzer target; skipping" >&2
  exit 77
fi

bin=$build_dir/resp_parser_fuzz
echo "run_fuzz.sh: building $bin" >&2
(
  cd -- "$repo_root"
  "$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I include -I tests/fuzz resp/*.cc tests/fuzz/parser_fuzz.cc -o "$bin"
)

mkdir -- "$work/corpus" "$work/artifacts"
for dir in corpus regressions; do
  for f in "$fuzz_dir/$dir"/*; do
    [[ -f $f ]] && cp -- "$f" "$work/corpus/$dir-$(basename -- "$f")"
  done
done

echo "run_fuzz.sh: fuzzing for ${seconds}s" >&2
rc=0
"$bin" "$work/corpus" -dict="$fuzz_dir/resp.dict" -max_len=4096 -max_total_time="$seconds" \
  -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/" -print_final_stats=1 || rc=$?

found=0
for f in "$work/artifacts"/*; do
  [[ -f $f ]] || continue
  found=1
  cp -- "$f" "$fuzz_dir/regressions/"
  echo "run_fuzz.sh: finding saved as $fuzz_dir/regressions/$(basename -- "$f")" >&2
done
if ((found)); then
  exit 1
fi
if ((rc != 0)); then
  echo "run_fuzz.sh: the fuzzer exited with status $rc" >&2
  exit 1
fi
echo "run_fuzz.sh: no finding in ${seconds}s" >&2
