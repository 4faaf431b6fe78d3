#!/usr/bin/env bash
# Pins the simulator's behaviour: runs the first few seeds of every scenario and compares
# each network's fingerprint (deliveries, events, sends, counters, link stats) with the
# list in tests/sim/fingerprints.txt. A change that claims to alter no behaviour (a
# refactor, a file split) must leave every line identical.
#
#   scripts/sim-fingerprints.sh BUILD_DIR            check (exit 1 and a diff on change)
#   scripts/sim-fingerprints.sh BUILD_DIR --update   rewrite the pinned list (a deliberate change)
set -euo pipefail
build=${1:?usage: sim-fingerprints.sh BUILD_DIR [--update]}
mode=${2:-check}
here=$(cd "$(dirname "$0")/.." && pwd)
pinned="$here/tests/sim/fingerprints.txt"
seeds=${TMC_FINGERPRINT_SEEDS:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
TMC_SIM_SEEDS=$seeds TMC_SIM_FINGERPRINTS="$out" "$build/tests/tmc_sim_tests" --no-intro=true >/dev/null ||
  { echo "sim-fingerprints: the simulator suite failed at $seeds seeds; fix that first" >&2; exit 1; }
lines=$(wc -l <"$out")
[ "$lines" -gt 0 ] || { echo "sim-fingerprints: no fingerprint recorded (TMC_SIM_FINGERPRINTS unsupported?)" >&2; exit 1; }
if [ "$mode" = "--update" ]; then
  cp "$out" "$pinned"
  echo "sim-fingerprints: pinned $lines fingerprints in tests/sim/fingerprints.txt"
  exit 0
fi
if diff -u "$pinned" "$out" >"$out.diff"; then
  echo "sim-fingerprints: $lines fingerprints identical to tests/sim/fingerprints.txt"
  rm -f "$out.diff"
else
  changed=$(grep -c '^+[^+]' "$out.diff" || true)
  echo "sim-fingerprints: $changed fingerprint line(s) differ from tests/sim/fingerprints.txt (scenario, seed, network, fingerprint):"
  head -60 "$out.diff"
  rm -f "$out.diff"
  echo "If the behaviour change is intended, rerun with --update and say why in the commit."
  exit 1
fi
