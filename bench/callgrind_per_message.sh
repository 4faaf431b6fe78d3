#!/usr/bin/env bash
# Instructions per message of one Google Benchmark case, counted by callgrind: the inclusive
# cost of FUNCTION (default tmc::Pipeline::send, everything a message runs through both
# pipelines of the module benchmarks) divided by the number of calls to it. Instruction
# counts do not depend on the machine's load, so a built-in and a loaded stage can be
# compared on a busy machine (docs/benchmarks.md, "Module stages vs built-in").
#
#   bench/callgrind_per_message.sh BINARY BENCHMARK [FUNCTION]
#   bench/callgrind_per_message.sh build/bench/tmc_module_overhead BM_pipeline_module
#   bench/callgrind_per_message.sh build/modules/tmc_module_cost BM_fec_loaded
set -euo pipefail
bin=${1:?usage: $0 BINARY BENCHMARK [FUNCTION]}
bench=${2:?usage: $0 BINARY BENCHMARK [FUNCTION]}
func=${3:-tmc::Pipeline::send(}
command -v valgrind >/dev/null || { echo "$0: valgrind is not installed (apt install valgrind)" >&2; exit 1; }
out=$(mktemp "${TMPDIR:-/tmp}/callgrind.XXXXXX")
trap 'rm -f "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --benchmark_filter="^${bench}\$" \
  --benchmark_min_time=0.05 >/dev/null 2>&1
# In the caller tree, FUNCTION's line carries its inclusive cost after "*"; the "<" lines
# above it are its callers, each with "(Nx)" calls.
callgrind_annotate --inclusive=yes --tree=caller "$out" 2>/dev/null | awk -v f="$func" '
  /^ *[0-9,]+ .* < / { if (match($0, /\(([0-9,]+)x\)/)) { c = substr($0, RSTART + 1, RLENGTH - 3); gsub(",", "", c); calls += c } next }
  /^ *[0-9,]+ .* \*  / && index($0, f) { ir = $1; gsub(",", "", ir); printf "%.1f instructions per call of %s (%d calls)\n", ir / calls, f, calls; found = 1; exit }
  { calls = 0 }
  END { if (!found) { print "no function matching " f > "/dev/stderr"; exit 1 } }'
