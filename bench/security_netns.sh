#!/usr/bin/env bash
# security_netns.sh - what `security` costs across network namespaces: message rate of
# `none`, `authenticate` and `encrypt`, 64 B and 1 KiB, best effort and reliable, then the
# ping-pong round trip of the three (best effort) at both sizes. Sender and receivers are
# separate processes, each in its own namespace (bench/peers/pc_netns.sh: three hosts on a
# bridge), so the kernel's share is paid as between hosts.
#
#   sudo [env REPS=5 SECS=2] bench/security_netns.sh OUTDIR
#
# Rate: bench/peers/pc_tput.sh, rows tmc-be (best-effort-ordered.yaml) and tmc-rel
# (reliable-ordered.yaml), each also with -auth and -enc (the same manifest with `security`
# overridden by the harness), one sender -> two receivers, the rows interleaved in every
# repetition (A B C ... A B C ...). Report: bench/peers/pc_summarize.py security, which
# compares every repetition with `none` of the same repetition, and puts CPU time per
# delivered message (sender + both receivers) next to the rate.
# Round trip: bench/peers/pc_rtt.sh, tmc-e2e-latency's tmc / tmc-auth / tmc-encrypt rows.
# env: TMC_BUILD (default build), REPS=5 SECS=2
set -uo pipefail
OUT=${1:?usage: security_netns.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
export TMC_BUILD=${TMC_BUILD:-build}
export REPS=${REPS:-5} SECS=${SECS:-2}
export TMC_MANIFESTS="$here/manifests"
echo "security_netns: start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load.txt" >&2
# pc_tput.sh wants a peer binary directory; the libTMC rows do not use it.
PEER_BIN=$OUT SIZES="64 1024" LOSSES=0 \
  ROWS="tmc-be tmc-be-auth tmc-be-enc tmc-rel tmc-rel-auth tmc-rel-enc" "$here/peers/pc_tput.sh" "$OUT/tput"
for size in 64 1024; do
  SIZE=$size IMPLS="tmc tmc-auth tmc-encrypt" "$here/peers/pc_rtt.sh" "$OUT/rtt-$size"
done
echo "security_netns: end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
{
  echo "## Rate (slowest of two receivers), REPS=$REPS x ${SECS}s"
  python3 "$here/peers/pc_summarize.py" security "$OUT/tput"
  for size in 64 1024; do
    echo
    echo "## Round trip, $size B, best effort"
    python3 "$here/peers/pc_summarize.py" rtt "$OUT/rtt-$size"
  done
} | tee "$OUT/summary.md"
