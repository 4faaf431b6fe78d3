#!/usr/bin/env bash
# matrix.sh - the side-by-side benchmark matrix in one command (`make bench-peers`): libTMC
# against raw UDP, ZeroMQ epgm and (when a build of it is found) Aeron, across network
# namespaces (pc_netns.sh), every part with its rows interleaved per repetition:
#   1. throughput: 64 B and 1 KiB at 0 % and 1 % loss; raw, epgm, aeron, aeron-t, tmc-be,
#      tmc-be-coal, tmc-rel, tmc-rel-coal (pc_tput.sh, whose header describes every row)
#   2. size sweep: 64 B .. 1 MiB in powers of 4 at 0 % loss; raw, aeron-t, tmc-be, tmc-rel
#      (raw stops at one datagram, 65507 B: the larger cells say n/a)
#   3. latency: 64 B ping-pong RTT (pc_rtt.sh rows)
# and writes into OUTDIR: throughput.md, sizes.md, latency.md (medians of the repetitions
# with min..max, libTMC/peer ratios, the 64 B targets), throughput.png, sizes.png,
# latency.png, meta.txt (machine, load before and after, date, commit), and each part's raw
# output under tput/, sizes/, rtt/. Run as root from the project root.
#
#   sudo [env ...] bench/peers/matrix.sh OUTDIR
#
# env:
#   TMC_BUILD   libTMC build tree with bench/tmc-reliable-mcast and bench/tmc-e2e-latency
#               (default build)
#   PEER_BIN    dir with raw_bench (and aeron_bench, aeron_pingpong); default: built into
#               OUTDIR/bin by build.sh, with the Aeron programs when AERON_SRC and AERON_BUILD
#               name an Aeron checkout and its build tree (build.sh's header says how to build it)
#   AERON_BIN   dir with Aeron's aeronmd (default AERON_BUILD/binaries); without it the Aeron
#               rows are skipped, each with a line saying so
#   REPS=3 SECS=2          repetitions, seconds per throughput row and per latency row
#   QUICK=1                1 repetition, 0.5 s rows, three sweep sizes: a smoke run of a few
#                          minutes (numbers from it are noise)
#   TPUT_ROWS, SWEEP_ROWS, SWEEP_SIZES, RTT_IMPLS   narrow or widen a part
#   PARTS="tput sizes rtt" which parts to run
#   PYTHON      the Python with matplotlib (default /usr/bin/python3, Debian's python3-matplotlib)
set -euo pipefail
OUT=${1:?usage: matrix.sh OUTDIR}
[ "$(id -u)" -eq 0 ] || { echo "matrix.sh: needs root (network namespaces)" >&2; exit 77; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export TMC_BUILD=$(cd "${TMC_BUILD:-build}" && pwd)
export TMC_MANIFESTS=${TMC_MANIFESTS:-$root/bench/manifests}
PYTHON=${PYTHON:-/usr/bin/python3}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-1}; SECS=${SECS:-0.5}; WARMUP=${WARMUP:-0.2}; SWEEP_SIZES=${SWEEP_SIZES:-"64 4096 1048576"}
  PINGS=${PINGS:-2000}; WARM=${WARM:-500}
fi
REPS=${REPS:-3}
SECS=${SECS:-2}
TPUT_ROWS=${TPUT_ROWS:-"raw epgm aeron aeron-t tmc-be tmc-be-coal tmc-rel tmc-rel-coal"}
SWEEP_ROWS=${SWEEP_ROWS:-"raw aeron-t tmc-be tmc-rel"}
SWEEP_SIZES=${SWEEP_SIZES:-"64 256 1024 4096 16384 65536 262144 1048576"}
RTT_IMPLS=${RTT_IMPLS:-"raw aeron-emb aeron-emb-mc tmc tmc-handler tmc-spin"}
PARTS=${PARTS:-"tput sizes rtt"}
export REPS SECS WARMUP=${WARMUP:-0.5}

say() { echo "matrix: $(date -u +%T) $*" >&2; }

for t in tmc-reliable-mcast tmc-e2e-latency; do
  [ -x "$TMC_BUILD/bench/$t" ] || { echo "matrix.sh: no $TMC_BUILD/bench/$t (cmake --build $TMC_BUILD --target $t)" >&2; exit 1; }
done
"$PYTHON" -c 'import matplotlib' 2>/dev/null || { echo "matrix.sh: $PYTHON has no matplotlib (apt-get install python3-matplotlib)" >&2; exit 1; }

# Peer programs: given, or built here.
if [ -z "${PEER_BIN:-}" ]; then
  PEER_BIN=$OUT/bin
  if [ -n "${AERON_SRC:-}" ] && [ -n "${AERON_BUILD:-}" ]; then
    "$here/build.sh" "$PEER_BIN" "$AERON_SRC" "$AERON_BUILD" >&2
    AERON_BIN=${AERON_BIN:-$AERON_BUILD/binaries}
  else
    "$here/build.sh" "$PEER_BIN" >&2
  fi
fi
export PEER_BIN=$(cd "$PEER_BIN" && pwd)
export AERON_BIN=${AERON_BIN:-}
if [ -n "$AERON_BIN" ] && [ -x "$AERON_BIN/aeronmd" ] && [ -x "$PEER_BIN/aeron_bench" ]; then
  say "Aeron: $AERON_BIN/aeronmd with $PEER_BIN/aeron_bench"
else
  say "Aeron not found (set AERON_BIN to a dir with aeronmd and PEER_BIN to one with aeron_bench," \
      "or AERON_SRC and AERON_BUILD): the Aeron rows are skipped"
  AERON_BIN=$OUT/no-aeron  # pc_tput.sh / pc_rtt.sh then skip every Aeron row with a message
  mkdir -p "$AERON_BIN"
fi

load() { cut -d' ' -f1-3 /proc/loadavg; }
META=$OUT/meta.txt
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "machine: $(uname -srm), $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  echo "libTMC build: $TMC_BUILD ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$TMC_BUILD/CMakeCache.txt" 2>/dev/null))"
  echo "libzmq: $(pkg-config --modversion libzmq 2>/dev/null || echo unknown); Aeron: $AERON_BIN"
  echo "settings: REPS=$REPS SECS=$SECS QUICK=$QUICK parts=[$PARTS]"
  echo "load before: $(load)"
} >"$META"
say "load $(load); output in $OUT"

run_part() {  # run_part NAME cmd... : progress from the part's own lines, on stderr
  local name=$1; shift
  say "$name: start (load $(load))"
  "$@" || say "$name: exited $?; continuing with what it wrote"
  say "$name: done (load $(load))"
}

for part in $PARTS; do
  case $part in
  tput)
    SIZES="64 1024" LOSSES="0 10" ROWS=$TPUT_ROWS run_part throughput "$here/pc_tput.sh" "$OUT/tput"
    {
      echo "## Throughput: 1 sender -> 2 receivers, slowest receiver's msg/s"
      echo
      echo "Median of $REPS interleaved repetitions (min..max), ${SECS} s per row. $(head -n1 "$OUT/tput/loadavg.txt")"
      echo
      "$PYTHON" "$here/pc_summarize.py" pivot "$OUT/tput"
      echo
      echo "### Targets"
      echo
      "$PYTHON" "$here/pc_summarize.py" targets "$OUT/tput"
    } >"$OUT/throughput.md"
    "$PYTHON" "$here/pc_chart.py" tput "$OUT/tput" "$OUT/throughput.png"
    ;;
  sizes)
    SIZES=$SWEEP_SIZES LOSSES=0 ROWS=$SWEEP_ROWS run_part "size sweep" "$here/pc_tput.sh" "$OUT/sizes"
    {
      echo "## Size sweep: goodput of the slowest receiver, MB/s, 0 % loss"
      echo
      echo "Median of $REPS interleaved repetitions (min..max), ${SECS} s per row. $(head -n1 "$OUT/sizes/loadavg.txt")"
      echo
      "$PYTHON" "$here/pc_summarize.py" sizes "$OUT/sizes"
    } >"$OUT/sizes.md"
    "$PYTHON" "$here/pc_chart.py" sizes "$OUT/sizes" "$OUT/sizes.png"
    ;;
  rtt)
    IMPLS=$RTT_IMPLS PINGS=${PINGS:-10000} WARM=${WARM:-2000} run_part latency "$here/pc_rtt.sh" "$OUT/rtt"
    {
      echo "## Latency: 64 B ping-pong RTT"
      echo
      echo "Median of $REPS interleaved repetitions (min..max), ${SECS} s per row. $(head -n1 "$OUT/rtt/loadavg.txt")"
      echo
      "$PYTHON" "$here/pc_summarize.py" rtt "$OUT/rtt"
    } >"$OUT/latency.md"
    "$PYTHON" "$here/pc_chart.py" rtt "$OUT/rtt" "$OUT/latency.png"
    ;;
  *) echo "matrix.sh: unknown part '$part' (tput, sizes, rtt)" >&2; exit 2 ;;
  esac
done
echo "load after: $(load)" >>"$META"
echo "end: $(date -u +%FT%TZ)" >>"$META"
say "done: $(cd "$OUT" && ls -- *.md *.png | tr '\n' ' ')"
