#!/usr/bin/env bash
# loss_sweep.sh - does the reliable channel keep its rate under loss? 1 KiB messages, 1 sender
# -> 2 receivers across network namespaces (pc_netns.sh), REPS interleaved repetitions of
# (0 % loss, 1 % loss); each repetition's rate at 1 % over its rate at 0 %, and how many
# repetitions held >= 0.8. Run as root from the project root (`make loss-sweep`).
#
#   bench/peers/loss_sweep.sh OUTDIR
# env: TMC_BUILD (default build), REPS=10 SECS=2 ROWS="tmc-rel-coal tmc-rel" SIZES=1024
#      LOSSES="0 10" (per mille), as pc_tput.sh
set -euo pipefail
out=${1:?usage: loss_sweep.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
REPS=${REPS:-10} SECS=${SECS:-2} ROWS=${ROWS:-"tmc-rel-coal tmc-rel"} SIZES=${SIZES:-1024} LOSSES=${LOSSES:-"0 10"} \
  "$here/pc_tput.sh" "$out"
echo "load: $(head -n1 "$out/loadavg.txt") .. $(tail -n1 "$out/loadavg.txt")"
python3 "$here/pc_summarize.py" loss "$out"
