#!/usr/bin/env bash
# Bounded fuzzing: configure a separate clang build with libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer, build every fuzz target that exists
# (tests/fuzz/fuzz_<name>.cpp), and run each for FUZZ_SECONDS seconds starting from
# tests/fuzz/seeds/<name>/. Fails on the first crash, leak or sanitizer report.
#
#   scripts/run-fuzz.sh [BUILD_DIR]        default BUILD_DIR: build-fuzz (at the top level)
#   FUZZ_SECONDS=20 FUZZ_JOBS=2            time per target, build parallelism
#
# New inputs the fuzzer finds go to BUILD_DIR/corpus/<name>/ (the committed seeds are
# only read); a crashing input is saved as BUILD_DIR/artifacts/<name>-crash-*.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_JOBS=${FUZZ_JOBS:-2}
CC_BIN=${FUZZ_CC:-clang}
CXX_BIN=${FUZZ_CXX:-clang++}

if ! command -v "$CXX_BIN" >/dev/null 2>&1; then
  echo "run-fuzz: $CXX_BIN not found; install clang (scripts/install-deps.sh does)" >&2
  exit 1
fi

mkdir -p "$BUILD"
SAN="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S "$ROOT" -B "$BUILD" -G Ninja \
  -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_CXX_COMPILER="$CXX_BIN" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="$SAN" -DCMAKE_CXX_FLAGS="$SAN" \
  -DTMC_BUILD_FUZZ=ON -DTMC_BUILD_TESTS=ON -DTMC_BUILD_BENCH=OFF -DTMC_BUILD_PYTHON=OFF \
  -DPython3_EXECUTABLE=/usr/bin/python3 >"$BUILD/configure.log" 2>&1 || {
  cat "$BUILD/configure.log" >&2
  exit 1
}

names=()
for src in "$ROOT"/tests/fuzz/fuzz_*.cpp; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .cpp)
  names+=("${name#fuzz_}")
done
if [ ${#names[@]} -eq 0 ]; then
  echo "run-fuzz: no fuzz targets in tests/fuzz" >&2
  exit 1
fi

targets=()
for n in "${names[@]}"; do targets+=("fuzz_$n"); done
cmake --build "$BUILD" -j "$FUZZ_JOBS" --target "${targets[@]}"

mkdir -p "$BUILD/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for n in "${names[@]}"; do
  corpus="$BUILD/corpus/$n"
  mkdir -p "$corpus"
  dirs=("$corpus")
  [ -d "$ROOT/tests/fuzz/seeds/$n" ] && dirs+=("$ROOT/tests/fuzz/seeds/$n")
  echo "run-fuzz: fuzz_$n for ${FUZZ_SECONDS}s (corpus: ${dirs[*]})"
  "$BUILD/tests/fuzz/fuzz_$n" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$n-" "${dirs[@]}" 2>"$BUILD/fuzz_$n.log" || {
    tail -n 60 "$BUILD/fuzz_$n.log" >&2
    echo "run-fuzz: fuzz_$n FAILED; reproduce with: $BUILD/tests/fuzz/fuzz_$n $BUILD/artifacts/$n-*" >&2
    exit 1
  }
  grep -E "^stat::number_of_executed_units|^Done" "$BUILD/fuzz_$n.log" || true
done
echo "run-fuzz: all targets ran ${FUZZ_SECONDS}s without a finding"
