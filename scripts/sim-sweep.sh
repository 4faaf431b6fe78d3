#!/usr/bin/env bash
# Runs one simulator scenario over many seeds, one process per seed (as a replay would run
# it), a few at a time under `nice`, and lists the seeds that fail with their output.
#
#   scripts/sim-sweep.sh BUILD_DIR 'TEST CASE PATTERN' FIRST LAST
#   SWEEP_JOBS=2 (processes at once), SWEEP_NICE=15
#
# e.g. scripts/sim-sweep.sh build '*partition before every member*' 1 1000
set -euo pipefail
build=${1:?usage: sim-sweep.sh BUILD_DIR PATTERN FIRST LAST}
pattern=${2:?test case pattern}
first=${3:?first seed}
last=${4:?last seed}
bin="$build/tests/tmc_sim_tests"
[ -x "$bin" ] || { echo "sim-sweep: $bin not built" >&2; exit 1; }
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
export bin pattern logs
seq "$first" "$last" | xargs -P "${SWEEP_JOBS:-2}" -I{} sh -c \
  'TMC_SIM_SEED={} nice -n "${SWEEP_NICE:-15}" "$bin" --no-intro=true -tc="$pattern" >"$logs/{}.log" 2>&1 ||
   touch "$logs/{}.failed"' || true
# (ls fails when no seed failed: with pipefail that must not end the script here)
failed=$(cd "$logs" && { ls -- *.failed 2>/dev/null || true; } | sed 's/\.failed$//' | sort -n | tr '\n' ' ')
total=$((last - first + 1))
if [ -z "$failed" ]; then
  echo "sim-sweep: $total of $total seeds pass"
  exit 0
fi
for s in $failed; do
  echo "--- seed $s"
  grep -E 'ERROR|problem|  - ' "$logs/$s.log" | head -20 || true
done
echo "sim-sweep: $(echo "$failed" | wc -w) of $total seeds fail: $failed"
exit 1
