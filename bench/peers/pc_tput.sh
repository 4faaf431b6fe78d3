#!/usr/bin/env bash
# pc_tput.sh - interleaved multicast throughput, 1 sender -> 2 receivers across network
# namespaces (pc_netns.sh), every transport in ONE run: for rep in 1..REPS, for size, for
# loss, every row once (A B C ... A B C ...). Loss = nftables random drop of what each
# receiver gets from the sender (both receivers, LOSSES per mille).
#
#   sudo [env ...] bench/peers/pc_tput.sh OUTDIR
#
# env (paths relative to where it is started, or absolute):
#   TMC_BUILD      libTMC build dir holding bench/tmc-reliable-mcast            (default build)
#   TMC_MANIFESTS  libTMC bench manifests                                       (default bench/manifests)
#   PEER_BIN       dir with raw_bench and aeron_bench (bench/peers/build.sh builds them; zmq_bench,
#                  for the p-epgm cross-check row only, is not shipped)
#   AERON_BIN      dir with Aeron's aeronmd (the aeron rows are skipped without it)
#   REPS=3 SECS=2 SIZES="64 1024" LOSSES="0 10" ROWS="raw epgm aeron ..." (labels below; the
#   default leaves out the cross-check rows h-raw and p-epgm). Sizes up to 64 MiB: libTMC
#   fragments what does not fit a datagram, Aeron too; the raw rows (one message per datagram)
#   record sizes above 65507 B as not applicable (status=na in index.txt, n/a in the tables).
#   WARMUP=0.5: how long the sender waits before its warm-up messages, seconds
# Rows:
#   raw          bench/peers/raw_bench.cpp: UDP multicast, 1 msg/datagram, sendmmsg(64)/recvmmsg
#   epgm         libTMC harness --transport zmq-epgm (XPUB NODROP, ZMQ_RATE 1 Gbit/s, RECOVERY 2 s)
#   aeron        bench/peers/aeron_bench.c, exclusive publication, multicast, fc=min,g:/2 (reliable
#                to both receivers); one aeronmd per namespace, SHARED threading, backoff idle,
#                every other driver setting at Aeron's default
#   aeron-t      the same with the drivers tuned for this test (AERON_TUNE, default: 2 MiB receiver
#                window and socket buffers, multicast NAK backoff 1 ms for a group of 2)
#   tmc-rel-coal libTMC harness, bench/manifests/reliable-ordered-coalesced.yaml (docs' target row)
#   tmc-rel      ... reliable-ordered.yaml (1 msg/datagram)
#   tmc-be       ... best-effort-ordered.yaml (drop-stale ordering, no repair)
#   tmc-be-coal  ... best-effort-coalesced.yaml
#   tmc-*-auth, tmc-*-enc  any libTMC row above with --security authenticate / encrypt (the
#                same manifest, every datagram authenticated or encrypted under a throwaway key)
#   h-raw        libTMC harness --transport raw (cross-check of raw)
#   p-epgm       zmq_bench PUB/SUB epgm, hwm 0 (cross-check of epgm), fixed count
set -uo pipefail
OUT=${1:?usage: pc_tput.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
TMC_BUILD=$(cd "${TMC_BUILD:-build}" && pwd)
TMC_MANIFESTS=$(cd "${TMC_MANIFESTS:-bench/manifests}" && pwd)
PEER_BIN=$(cd "${PEER_BIN:-.}" && pwd)  # rows whose program is missing are skipped
AERON_BIN=$(cd "${AERON_BIN:-.}" && pwd)
REPS=${REPS:-3}
SECS=${SECS:-2}
WARMUP=${WARMUP:-0.5}
SIZES=${SIZES:-"64 1024"}
LOSSES=${LOSSES:-"0 10"}
ROWS=${ROWS:-"raw epgm aeron aeron-t tmc-rel-coal tmc-rel tmc-be tmc-be-coal"}
AERON_TUNE=${AERON_TUNE:-"AERON_RCV_INITIAL_WINDOW_LENGTH=2m AERON_SOCKET_SO_RCVBUF=2m AERON_SOCKET_SO_SNDBUF=2m AERON_NAK_MULTICAST_MAX_BACKOFF=1ms AERON_NAK_MULTICAST_GROUP_SIZE=2"}
HB="$TMC_BUILD/bench/tmc-reliable-mcast"

# shellcheck source=pc_netns.sh
source "$here/pc_netns.sh"
pcnet_setup
S_IP=$(pcnet_ip 1)
INDEX="$OUT/index.txt"
: >"$INDEX"
LOADLOG="$OUT/loadavg.txt"
: >"$LOADLOG"
AERON_DIRS=()
cleanup_aeron() { local d; for d in "${AERON_DIRS[@]}"; do rm -rf "$d"; done; }
trap 'cleanup_aeron; pcnet_on_exit' EXIT

wait_line() {  # wait_line FILE TEXT SECONDS
  local f=$1 t=$2 n=0 lim=$(( $3 * 20 ))
  while [ "$(head -n1 "$f" 2>/dev/null)" != "$t" ]; do n=$((n + 1)); [ $n -lt $lim ] || return 1; sleep 0.05; done
}
wait_pids() {  # wait_pids SECONDS PID... : until all exited or SECONDS passed
  local lim=$(( $1 * 20 )) n=0 p alive; shift
  while :; do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && return 0
    n=$((n + 1)); [ $n -lt $lim ] || return 1
    sleep 0.05
  done
}
stop_pid() {  # stop_pid PID [SIG]: signal, wait up to 5 s, then KILL
  local p=$1 sig=${2:-TERM}
  kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
  kill -"$sig" "$p" 2>/dev/null
  wait_pids 5 "$p" || kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}
proc_cpu_ns() {  # utime+stime of a live process, ns
  awk '{ printf "%.0f", ($14 + $15) * 1e9 / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

idx=0
run_case() {
  local rep=$1 label=$2 size=$3 loss=$4
  idx=$((idx + 1))
  local port=$((49000 + idx)) group=239.255.93.1 d="$OUT/r$rep/${label}_s${size}_l${loss}"
  mkdir -p "$(dirname "$d")"
  echo "pc_tput: rep $rep $label ${size} B loss ${loss}/1000" >&2
  echo "$(date +%T) rep=$rep $label s=$size l=$loss load=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOADLOG"
  local p1 p2 ps status=ok reason="" drivers=()
  # Cells a transport cannot run: recorded as status=na with the reason (the summaries print
  # n/a), so that the matrix keeps its shape.
  case $label in
  raw|h-raw)
    [ -x "$PEER_BIN/raw_bench" ] || reason="no raw_bench in PEER_BIN (bench/peers/build.sh builds it)"
    [ "$size" -gt 65507 ] && reason="one message per UDP datagram, and a datagram holds at most 65507 B" ;;
  epgm|p-epgm)
    [ -x "$PEER_BIN/zmq_bench" ] || reason="no zmq_bench in PEER_BIN (bench/peers/build.sh builds it)" ;;
  aeron|aeron-t)
    [ -x "$AERON_BIN/aeronmd" ] && [ -x "$PEER_BIN/aeron_bench" ] || reason="no aeronmd in AERON_BIN or aeron_bench in PEER_BIN" ;;
  esac
  if [ -n "$reason" ]; then
    echo "pc_tput: $label ${size} B skipped: $reason" >&2
    echo "rep=$rep label=$label size=$size loss=$loss status=na path=${d#"$OUT"/} reason=\"$reason\"" >>"$INDEX"
    return
  fi
  if [ "$loss" -gt 0 ]; then pcnet_loss_on 2 "$loss"; pcnet_loss_on 3 "$loss"; fi
  case $label in
  raw)
    pcnet_bg 2 timeout 60 "$PEER_BIN/raw_bench" udp_recv $group $port 30000000 40 "$(pcnet_ip 2)" 1500 >"$d.r1" 2>&1; p1=$PCNET_LAST_PID
    pcnet_bg 3 timeout 60 "$PEER_BIN/raw_bench" udp_recv $group $port 30000000 40 "$(pcnet_ip 3)" 1500 >"$d.r2" 2>&1; p2=$PCNET_LAST_PID
    sleep 0.3
    pcnet_bg 1 timeout 60 "$PEER_BIN/raw_bench" udp_send $group $port "$size" 30000000 "$SECS" 64 "$S_IP" >"$d.s" 2>&1; ps=$PCNET_LAST_PID
    wait_pids 60 "$p1" "$p2" || status=timeout
    wait_pids 10 "$ps" || status=timeout
    ;;
  p-epgm)
    local cnt=1500000; [ "$size" -gt 256 ] && cnt=150000
    pcnet_bg 2 timeout 90 "$PEER_BIN/zmq_bench" sub --ep "epgm://$(pcnet_ip 2);$group:$port" --count $cnt --time 60 --idle 5000 --hwm 0 --rate 1000000 >"$d.r1" 2>&1; p1=$PCNET_LAST_PID
    pcnet_bg 3 timeout 90 "$PEER_BIN/zmq_bench" sub --ep "epgm://$(pcnet_ip 3);$group:$port" --count $cnt --time 60 --idle 5000 --hwm 0 --rate 1000000 >"$d.r2" 2>&1; p2=$PCNET_LAST_PID
    sleep 0.5
    pcnet_bg 1 timeout 90 "$PEER_BIN/zmq_bench" pub --ep "epgm://$S_IP;$group:$port" --size "$size" --count $cnt --time 30 --hwm 0 --rate 1000000 --linger 30000 --warmup 500 --hold 15000 >"$d.s" 2>&1; ps=$PCNET_LAST_PID
    wait_pids 80 "$p1" "$p2" || status=timeout
    stop_pid "$ps" TERM
    ;;
  aeron|aeron-t)
    local h tune=()
    [ "$label" = aeron-t ] && read -r -a tune <<<"$AERON_TUNE"
    for h in 1 2 3; do
      local ad="/dev/shm/pc$$-aeron-h$h"
      AERON_DIRS+=("$ad")
      pcnet_bg $h env AERON_DIR="$ad" AERON_THREADING_MODE=SHARED AERON_DIR_DELETE_ON_START=true \
        AERON_DIR_DELETE_ON_SHUTDOWN=true "${tune[@]}" "$AERON_BIN/aeronmd" >"$d.drv$h" 2>&1
      drivers+=("$PCNET_LAST_PID")
    done
    for h in 1 2 3; do local n=0; while [ ! -s "/dev/shm/pc$$-aeron-h$h/cnc.dat" ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n + 1)); done; done
    local ch="aeron:udp?endpoint=$group:$port"
    pcnet_bg 2 timeout 60 "$PEER_BIN/aeron_bench" sub --dir "/dev/shm/pc$$-aeron-h2" --channel "$ch|interface=$(pcnet_ip 2)" --seconds "$SECS" --idle 5 >"$d.r1" 2>&1; p1=$PCNET_LAST_PID
    pcnet_bg 3 timeout 60 "$PEER_BIN/aeron_bench" sub --dir "/dev/shm/pc$$-aeron-h3" --channel "$ch|interface=$(pcnet_ip 3)" --seconds "$SECS" --idle 5 >"$d.r2" 2>&1; p2=$PCNET_LAST_PID
    wait_line "$d.r1" ready 10 && wait_line "$d.r2" ready 10 || status=noready
    pcnet_bg 1 timeout 60 "$PEER_BIN/aeron_bench" pub --dir "/dev/shm/pc$$-aeron-h1" --channel "$ch|interface=$S_IP|fc=min,g:/2" --size "$size" --seconds "$SECS" --warmup "$WARMUP" --linger 20 >"$d.s" 2>&1; ps=$PCNET_LAST_PID
    wait_pids 60 "$p1" "$p2" || status=timeout
    stop_pid "$ps" TERM
    local cpu=""
    for h in 1 2 3; do cpu="$cpu h$h=$(proc_cpu_ns "${drivers[$((h - 1))]}")"; done
    echo "driver_cpu_ns$cpu" >"$d.drvcpu"
    for h in 1 2 3; do stop_pid "${drivers[$((h - 1))]}" INT; done
    ;;
  *)
    local tr=tmc man="" base=$label sec=""
    case $label in
      tmc-*-auth) sec=authenticate; base=${label%-auth} ;;
      tmc-*-enc) sec=encrypt; base=${label%-enc} ;;
    esac
    case $base in
      epgm) tr=zmq-epgm ;;
      h-raw) tr=raw ;;
      tmc-rel-coal) man=reliable-ordered-coalesced.yaml ;;
      tmc-rel) man=reliable-ordered.yaml ;;
      tmc-be) man=best-effort-ordered.yaml ;;
      tmc-be-coal) man=best-effort-coalesced.yaml ;;
      *) echo "unknown row $label" >&2; return ;;
    esac
    local common=(--transport $tr --size "$size" --group $group --port $port --interface "$PCNET_IF" --peer "$S_IP"
                  --seconds "$SECS" --warmup "$WARMUP" --linger 20 --idle 5 --zmq-rate-kbps 1000000 --zmq-recovery-ms 2000)
    [ -n "$man" ] && common+=(--manifest "$TMC_MANIFESTS/$man")
    [ -n "$sec" ] && common+=(--security "$sec")
    pcnet_bg 2 timeout 60 "$HB" --role recv --name r1 "${common[@]}" >"$d.r1" 2>"$d.r1.err"; p1=$PCNET_LAST_PID
    pcnet_bg 3 timeout 60 "$HB" --role recv --name r2 "${common[@]}" >"$d.r2" 2>"$d.r2.err"; p2=$PCNET_LAST_PID
    wait_line "$d.r1" ready 10 && wait_line "$d.r2" ready 10 || status=noready
    pcnet_bg 1 timeout 60 "$HB" --role send --name sender "${common[@]}" >"$d.s" 2>"$d.s.err"; ps=$PCNET_LAST_PID
    wait_pids 60 "$p1" "$p2" || status=timeout
    stop_pid "$ps" TERM
    ;;
  esac
  [ -n "${p1:-}" ] && stop_pid "$p1" KILL; [ -n "${p2:-}" ] && stop_pid "$p2" KILL
  local drop=""
  if [ "$loss" -gt 0 ]; then
    drop="dropped_r1=$(pcnet_loss_dropped 2) dropped_r2=$(pcnet_loss_dropped 3)"
    pcnet_loss_off 2; pcnet_loss_off 3
  fi
  echo "rep=$rep label=$label size=$size loss=$loss status=$status path=${d#"$OUT"/} $drop" >>"$INDEX"
  PCNET_PIDS=()
  sleep 0.3
}

echo "start $(date -u +%FT%TZ) load=$(cut -d' ' -f1-3 /proc/loadavg) rows=[$ROWS] reps=$REPS secs=$SECS" >>"$LOADLOG"
for rep in $(seq 1 "$REPS"); do
  for size in $SIZES; do
    for loss in $LOSSES; do
      for row in $ROWS; do run_case "$rep" "$row" "$size" "$loss"; done
    done
  done
done
echo "end $(date -u +%FT%TZ) load=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOADLOG"
