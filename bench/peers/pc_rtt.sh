#!/usr/bin/env bash
# pc_rtt.sh - interleaved ping-pong RTT across two network namespaces (pc_netns.sh hosts 1, 2):
# per repetition raw UDP, Aeron shipped samples (unicast, multicast), Aeron embedded driver
# (unicast, multicast), libTMC `tmc`, `tmc-handler` and `tmc-spin`.
#   raw, tmc, tmc-handler, tmc-spin: libTMC's bench/e2e_latency.cpp (tmc-e2e-latency --repeat 1
#       --impls X), multicast on one group, 64 B, --seconds SECS (first 10 % of rounds are
#       warm-up), multicast loopback off (nobody listens on the sender's host). raw and tmc:
#       blocking reads on the application thread; tmc-handler: handlers on the loop thread;
#       tmc-spin: handlers on a runtime with IdleStrategy::spin (one busy-polling thread per
#       host, as aeron-emb)
#   aeron-uni / aeron-mc: Aeron's own C samples cping/cpong as shipped (busy-spinning clients),
#       one aeronmd per namespace (SHARED threading, backoff idle), -L 64 -w WARM -m PINGS
#   aeron-emb / aeron-emb-mc: bench/peers/aeron_pingpong.c, the driver embedded in each process in
#       INVOKER mode (one busy-spinning thread per host), 64 B, --seconds SECS
#
#   sudo [env ...] bench/peers/pc_rtt.sh OUTDIR
# env: TMC_BUILD (default build), AERON_BIN (aeronmd, cping, cpong), PEER_BIN (aeron_pingpong;
#      bench/peers/build.sh), REPS=3 SECS=2 PINGS=10000 WARM=2000
#      IMPLS="raw aeron-emb aeron-emb-mc tmc tmc-handler tmc-spin" (also aeron-uni, aeron-mc,
#      tmc-yield, tmc-spin-recv). Aeron rows whose programs are not found are skipped.
set -uo pipefail
OUT=${1:?usage: pc_rtt.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
TMC_BUILD=$(cd "${TMC_BUILD:-build}" && pwd)
AERON_BIN=$(cd "${AERON_BIN:-.}" && pwd)
REPS=${REPS:-3}
SECS=${SECS:-2}
PINGS=${PINGS:-10000}
WARM=${WARM:-2000}
PEER_BIN=$(cd "${PEER_BIN:-.}" && pwd)
IMPLS=${IMPLS:-"raw aeron-emb aeron-emb-mc tmc tmc-handler tmc-spin"}
# shellcheck source=pc_netns.sh
source "$here/pc_netns.sh"
pcnet_setup
trap 'rm -rf /dev/shm/pc$$-aeron-h1 /dev/shm/pc$$-aeron-h2; pcnet_on_exit' EXIT
LOADLOG="$OUT/loadavg.txt"
: >"$LOADLOG"
echo "start $(date -u +%FT%TZ) load=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOADLOG"

stop_pid() {
  local p=$1 sig=${2:-TERM} n=0
  kill -"$sig" "$p" 2>/dev/null
  while kill -0 "$p" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.05; n=$((n + 1)); done
  kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}

run_aeron() {  # run_aeron uni|mc OUTFILE
  local mode=$1 f=$2 h drivers=() d1="/dev/shm/pc$$-aeron-h1" d2="/dev/shm/pc$$-aeron-h2"
  for h in 1 2; do
    AERON_DIR="/dev/shm/pc$$-aeron-h$h" AERON_THREADING_MODE=SHARED AERON_DIR_DELETE_ON_START=true \
      AERON_DIR_DELETE_ON_SHUTDOWN=true pcnet_bg $h "$AERON_BIN/aeronmd" >"$f.drv$h" 2>&1
    drivers+=("$PCNET_LAST_PID")
  done
  for h in 1 2; do local n=0; while [ ! -s "/dev/shm/pc$$-aeron-h$h/cnc.dat" ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n + 1)); done; done
  local ping1 pong1 ping2 pong2
  if [ "$mode" = uni ]; then
    ping1="aeron:udp?endpoint=$(pcnet_ip 2):20123"; pong1="aeron:udp?endpoint=$(pcnet_ip 1):20124"
    ping2=$ping1; pong2=$pong1
  else
    ping1="aeron:udp?endpoint=239.255.94.1:20123|interface=$(pcnet_ip 1)"; pong1="aeron:udp?endpoint=239.255.94.3:20124|interface=$(pcnet_ip 1)"
    ping2="aeron:udp?endpoint=239.255.94.1:20123|interface=$(pcnet_ip 2)"; pong2="aeron:udp?endpoint=239.255.94.3:20124|interface=$(pcnet_ip 2)"
  fi
  pcnet_bg 2 timeout 90 "$AERON_BIN/cpong" -p "$d2" -c "$ping2" -C "$pong2" >"$f.pong" 2>&1
  local pp=$PCNET_LAST_PID
  sleep 0.3
  pcnet_bg 1 timeout 80 "$AERON_BIN/cping" -p "$d1" -c "$ping1" -C "$pong1" -L 64 -w "$WARM" -m "$PINGS" >"$f" 2>&1
  local pi=$PCNET_LAST_PID
  wait "$pi" 2>/dev/null
  stop_pid "$pp" INT
  for h in 1 2; do stop_pid "${drivers[$((h - 1))]}" INT; done
  PCNET_PIDS=()
}

run_emb() {  # run_emb uni|mc OUTFILE : aeron_pingpong, driver embedded (INVOKER), one thread per host
  local mode=$1 f=$2 ping1 pong1 ping2 pong2
  if [ "$mode" = uni ]; then
    ping1="aeron:udp?endpoint=$(pcnet_ip 2):20133"; pong1="aeron:udp?endpoint=$(pcnet_ip 1):20134"; ping2=$ping1; pong2=$pong1
  else
    ping1="aeron:udp?endpoint=239.255.94.5:20133|interface=$(pcnet_ip 1)"; pong1="aeron:udp?endpoint=239.255.94.7:20134|interface=$(pcnet_ip 1)"
    ping2="aeron:udp?endpoint=239.255.94.5:20133|interface=$(pcnet_ip 2)"; pong2="aeron:udp?endpoint=239.255.94.7:20134|interface=$(pcnet_ip 2)"
  fi
  pcnet_bg 2 timeout 60 "$PEER_BIN/aeron_pingpong" pong --dir "/dev/shm/pc$$-aeron-h2" --ping "$ping2" --pong "$pong2" >"$f.pong" 2>&1
  local pp=$PCNET_LAST_PID
  sleep 0.3
  pcnet_bg 1 timeout 60 "$PEER_BIN/aeron_pingpong" ping --dir "/dev/shm/pc$$-aeron-h1" --ping "$ping1" --pong "$pong1" --size 64 --seconds "$SECS" >"$f" 2>&1
  wait "$PCNET_LAST_PID" 2>/dev/null
  stop_pid "$pp" INT
  PCNET_PIDS=()
}

for rep in $(seq 1 "$REPS"); do
  for impl in $IMPLS; do
    f="$OUT/r${rep}_$impl.txt"
    echo "pc_rtt: rep $rep $impl" >&2
    echo "$(date +%T) rep=$rep $impl load=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOADLOG"
    case $impl in
      aeron-uni|aeron-mc)
        [ -x "$AERON_BIN/cping" ] || { echo "pc_rtt: $impl skipped: no cping/cpong in AERON_BIN" >&2; continue; } ;;
      aeron-emb|aeron-emb-mc)
        [ -x "$PEER_BIN/aeron_pingpong" ] || { echo "pc_rtt: $impl skipped: no aeron_pingpong in PEER_BIN" >&2; continue; } ;;
    esac
    case $impl in
      aeron-uni) run_aeron uni "$f" ;;
      aeron-mc) run_aeron mc "$f" ;;
      aeron-emb) run_emb uni "$f" ;;
      aeron-emb-mc) run_emb mc "$f" ;;
      *) timeout 60 "$TMC_BUILD/bench/tmc-e2e-latency" --seconds "$SECS" --repeat 1 --size 64 --impls "$impl" \
           --interface "$PCNET_IF" --netns "$(pcnet_ns 1),$(pcnet_ns 2)" >"$f" 2>"$f.err" ;;
    esac
    sleep 0.3
  done
done
echo "end $(date -u +%FT%TZ) load=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOADLOG"
