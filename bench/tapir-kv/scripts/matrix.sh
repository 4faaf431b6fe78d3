#!/usr/bin/env bash
# matrix.sh BUILD OUTDIR — the whole TAPIR-KV matrix on a real network (make tapir).
#
#   variants  tcp udp mcast tuned          (TAPIR_VARIANTS)
#   loss      0 0.25 0.5 1 %               (TAPIR_LOSS_BP, basis points: "0 25 50 100")
#   clients   1 4                          (TAPIR_CLIENTS)
#   reps      3, interleaved: every cell of repetition 1, then of 2, ... (TAPIR_REPS)
#   seconds   per run (TAPIR_SECONDS, default 20)
# Each run is bench/tapir-kv/scripts/run-netns.sh (every process in its own namespace,
# nftables loss at every receiver). A progress line per run; at the end summarize.py
# writes OUTDIR/runs.csv, cells.csv, table.md and chart.png. Needs root (exit 77 otherwise).
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,12p "$0"; exit 2; }
BUILD=$1; OUT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
VARIANTS=${TAPIR_VARIANTS:-"tcp udp mcast tuned"}
LOSSES=${TAPIR_LOSS_BP:-"0 25 50 100"}
CLIENTS=${TAPIR_CLIENTS:-"1 4"}
REPS=${TAPIR_REPS:-3}
SECS=${TAPIR_SECONDS:-20}
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the TAPIR-KV matrix needs root (network namespaces)" >&2; exit 77; }
mkdir -p "$OUT/runs"
{
  echo "command: $0 $*"
  echo "variants: $VARIANTS; loss (bp): $LOSSES; clients: $CLIENTS; reps: $REPS; seconds: $SECS"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  echo "commit: $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$OUT/meta.txt"
set -- $VARIANTS; nv=$#
set -- $LOSSES; nl=$#
set -- $CLIENTS; nc=$#
total=$((REPS * nv * nl * nc)); k=0; t0=$(date +%s)
for ((rep = 1; rep <= REPS; rep++)); do
  for loss in $LOSSES; do
    for c in $CLIENTS; do
      for v in $VARIANTS; do
        k=$((k + 1))
        dir="$OUT/runs/rep$rep-$v-l$loss-c$c"
        status=ok
        "$HERE/run-netns.sh" "$BUILD" "$v" "$loss" "$c" "$SECS" "$dir" --seed "$rep" >"$dir.log" 2>&1 || status="failed (see $dir.log)"
        tput=$(cat "$dir"/client*.log 2>/dev/null | sed -n 's/.* \([0-9.]*\) committed txn\/s.*/\1/p' | awk '{s += $1} END {printf "%.0f", s}')
        el=$(($(date +%s) - t0)); eta=$((el * (total - k) / k))
        printf '[%d/%d] rep %d %-5s loss %3s bp %d clients: %6s txn/s %s  (elapsed %dm%02ds, eta %dm%02ds)\n' \
          "$k" "$total" "$rep" "$v" "$loss" "$c" "$tput" "$status" $((el / 60)) $((el % 60)) $((eta / 60)) $((eta % 60))
      done
    done
  done
done
/usr/bin/python3 "$HERE/summarize.py" "$OUT"
