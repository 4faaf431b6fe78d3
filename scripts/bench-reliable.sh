#!/usr/bin/env bash
# Reliable-multicast benchmark across network namespaces (docs/benchmarks.md).
#
#   sudo scripts/bench-reliable.sh [BUILD_DIR] [--quick] [--seconds S] [--only LABEL,...] [--keep DIR]
#                                  [--sizes 64,1024] [--losses 0,10] [--zmq-rate-kbps N] [--no-raw]
#
# One sender -> two receivers, each in its own namespace on a bridge (tests/net/netns.sh),
# 64 B and 1 KiB messages, 0 % and 1 % loss on receiver r2 (nftables on r2's input:
# `ip saddr <sender> numgen random mod 1000 < 10 drop`, which hits UDP multicast, PGM and
# TCP segments alike). In ONE run it compares:
#   raw        UDP multicast, one message per datagram (sendmmsg/recvmmsg)
#   zmq-epgm   ZeroMQ PUB/SUB over epgm:// (OpenPGM), ZMQ_RATE and ZMQ_RECOVERY_IVL below
#   zmq-tcp    ZeroMQ PUB/SUB over tcp://
#   tmc-*      libTMC channels from bench/manifests/*.yaml; a row runs when
#              `BUILD_DIR/tools/tmc plan <manifest>` compiles, and otherwise prints
#              "not available yet: <the compiler's reason>"
# and prints a Markdown table (messages/s per receiver, goodput, delivered/sent, CPU time
# per delivered message, each as a ratio against raw UDP at the same size and loss).
#
# --only runs the raw row too (the table's ratios are against it) unless --no-raw is given
# (short comparison runs of one libTMC row; the "vs raw" columns then say n/a).
# --quick: a smoke run for CTest (64 B, 0 % loss, 0.2 s per row, five of the rows, under 20 s).
# Needs root (network namespaces, nftables); otherwise it skips with exit code 77.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
quick=0
seconds=2
only=""
keep=""
no_raw=0
sizes_opt=()
losses_opt=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --zmq-rate-kbps) zmq_rate_kbps=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --only) only=$2; shift ;;
    --no-raw) no_raw=1 ;;
    --keep) keep=$2; shift ;;
    --sizes) IFS=, read -r -a sizes_opt <<<"$2"; shift ;;
    --losses) IFS=, read -r -a losses_opt <<<"$2"; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) build=$1 ;;
  esac
  shift
done

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: bench-reliable needs root (it creates network namespaces and nftables rules); run it with sudo" >&2
  exit 77
fi
build=$(cd "$build" && pwd)
bin="$build/bench/tmc-reliable-mcast"
tmc_tool="$build/tools/tmc"
if [ ! -x "$bin" ]; then
  echo "bench-reliable: $bin is not built (cmake --build $build --target tmc-reliable-mcast tmc_tool)" >&2
  exit 1
fi

# Namespaces with names unlikely to collide with anything else ("tmcbr-<pid>-<random>-").
TMCNET_PREFIX_OVERRIDE="tmcbr-$$-$(printf '%04x' $((RANDOM % 65536)))-"
# shellcheck source=tests/net/netns.sh disable=SC1091
source "$here/tests/net/netns.sh"
# shellcheck disable=SC2034  # read by netns.sh's functions
TMCNET_PREFIX=$TMCNET_PREFIX_OVERRIDE
tmcnet_require
tmcnet_require_nft
work=$(mktemp -d "${TMPDIR:-/tmp}/tmcbr.XXXXXX")
TMCNET_CLEANUP_DIRS+=("$work")
tmcnet_setup >&2  # traps EXIT/INT/TERM: namespaces, processes and $work go away on any exit

zmq_rate_kbps=${zmq_rate_kbps:-1000000}   # 1 Gbit/s
zmq_recovery_ms=2000
sizes=(64 1024)
losses=(0 10)  # per mille on r2
warmup=0.5
linger=20   # the most a sender waits for the receivers to finish (repairs)
idle=5      # a receiver that saw no end marker stops after this long without a message
if [ $quick -eq 1 ]; then
  sizes=(64); losses=(0); seconds=0.2; warmup=0.1; linger=5; idle=1
  [ -n "$only" ] || only="zmq-epgm,zmq-tcp,tmc-best-effort-ordered,tmc-reliable-ordered-coalesced"
fi
[ ${#sizes_opt[@]} -eq 0 ] || sizes=("${sizes_opt[@]}")
[ ${#losses_opt[@]} -eq 0 ] || losses=("${losses_opt[@]}")

# label transport manifest
rows=(
  "raw raw -"
  "zmq-epgm zmq-epgm -"
  "zmq-tcp zmq-tcp -"
  "tmc-best-effort-ordered tmc $here/bench/manifests/best-effort-ordered.yaml"
  "tmc-best-effort-coalesced tmc $here/bench/manifests/best-effort-coalesced.yaml"
  "tmc-reliable-ordered tmc $here/bench/manifests/reliable-ordered.yaml"
  "tmc-reliable-ordered-coalesced tmc $here/bench/manifests/reliable-ordered-coalesced.yaml"
)

sender_ip=$(tmcnet_ip 1)
results="$work/results.txt"
: >"$results"

# Why a manifest cannot run yet (empty when it compiles).
declare -A na_reason=()
for row in "${rows[@]}"; do
  read -r label transport manifest <<<"$row"
  [ "$transport" = tmc ] || continue
  if [ ! -x "$tmc_tool" ]; then
    na_reason[$label]="$tmc_tool is not built"
  elif ! out=$("$tmc_tool" plan "$manifest" 2>&1); then
    # The compiler's problems, one per line, "file: CODE: text"; keep the texts.
    na_reason[$label]=$(printf '%s\n' "$out" | sed 's/^[^:]*: [A-Z_]*: //' | paste -sd ';' - | sed 's/;/; /g')
  fi
done

# wait_ready FILE...: until each file's first line is "ready" (10 s at most).
wait_ready() {
  local f tries=0
  for f in "$@"; do
    while [ "$(head -n1 "$f" 2>/dev/null)" != "ready" ]; do
      tries=$((tries + 1))
      [ $tries -lt 200 ] || return 1
      sleep 0.05
    done
  done
}

index=0
run_case() {
  local label=$1 transport=$2 manifest=$3 size=$4 loss=$5
  index=$((index + 1))
  local group="239.255.91.$index" port=$((48600 + index))
  echo "case label=$label transport=$transport size=$size loss=$loss" >>"$results"
  if [ -n "${na_reason[$label]:-}" ]; then
    echo "na ${na_reason[$label]}" >>"$results"
    return
  fi
  echo "bench-reliable: $label, $size B, loss $loss/1000 on r2 ..." >&2
  local common=(--transport "$transport" --size "$size" --group "$group" --port "$port" --interface "$TMCNET_IF"
                --peer "$sender_ip" --seconds "$seconds" --warmup "$warmup" --linger "$linger" --idle "$idle"
                --zmq-rate-kbps "$zmq_rate_kbps" --zmq-recovery-ms "$zmq_recovery_ms")
  [ "$manifest" = - ] || common+=(--manifest "$manifest")
  if [ "$loss" -gt 0 ]; then
    tmcnet_exec 3 nft add table inet tmcloss
    tmcnet_exec 3 nft add chain inet tmcloss input '{ type filter hook input priority 0 ; }'
    tmcnet_exec 3 nft add rule inet tmcloss input ip saddr "$sender_ip" numgen random mod 1000 '<' "$loss" counter drop
  fi
  local r1="$work/$index.r1" r2="$work/$index.r2" s="$work/$index.s"
  tmcnet_bg 2 "$bin" --role recv --name r1 "${common[@]}" >"$r1" 2>"$r1.err"
  local p1=$TMCNET_LAST_PID
  tmcnet_bg 3 "$bin" --role recv --name r2 "${common[@]}" >"$r2" 2>"$r2.err"
  local p2=$TMCNET_LAST_PID
  local ok=1 reason=""
  if ! wait_ready "$r1" "$r2"; then
    ok=0; reason="a receiver did not start: $(cat "$r1.err" "$r2.err" | head -n2 | tr '\n' ' ')"
  fi
  if [ $ok -eq 1 ]; then
    tmcnet_bg 1 "$bin" --role send --name sender "${common[@]}" >"$s" 2>"$s.err"
    local ps=$TMCNET_LAST_PID
    # The receivers end by themselves (end marker, idle or hard limit); the sender lingers
    # for repairs until told the receivers are done. If the sender dies first, that is a
    # failure and the receivers are stopped.
    while kill -0 "$p1" 2>/dev/null || kill -0 "$p2" 2>/dev/null; do
      if ! kill -0 "$ps" 2>/dev/null; then
        if ! wait "$ps"; then
          ok=0; reason="sender failed: $(head -n2 "$s.err" | tr '\n' ' ')"
          kill "$p1" "$p2" 2>/dev/null || true
          break
        fi
        ps=""
        break
      fi
      sleep 0.05
    done
    if [ -n "$ps" ] && [ $ok -eq 1 ]; then
      kill -TERM "$ps" 2>/dev/null || true
      # A sender stuck inside a blocking send cannot see the signal: give it a moment, then
      # kill it and call the row failed.
      local waited=0
      while kill -0 "$ps" 2>/dev/null && [ $waited -lt 100 ]; do sleep 0.05; waited=$((waited + 1)); done
      if kill -0 "$ps" 2>/dev/null; then
        kill -KILL "$ps" 2>/dev/null || true
        wait "$ps" 2>/dev/null || true
        ok=0; reason="the sender was still blocked in send() 5 s after both receivers had stopped"
      elif ! wait "$ps"; then
        ok=0; reason="sender failed: $(head -n2 "$s.err" | tr '\n' ' ')"
      fi
    fi
  fi
  [ $ok -eq 1 ] || kill "$p1" "$p2" 2>/dev/null || true
  wait "$p1" 2>/dev/null || true
  wait "$p2" 2>/dev/null || true
  if [ $ok -eq 1 ]; then
    if ! grep -q '^result' "$r1" || ! grep -q '^result' "$r2"; then
      ok=0; reason="a receiver reported nothing: $(cat "$r1.err" "$r2.err" | head -n2 | tr '\n' ' ')"
    fi
  fi
  if [ $ok -eq 1 ]; then
    {
      echo "send $(sed -n 's/^result //p' "$s")"
      echo "recv $(sed -n 's/^result //p' "$r1")"
      echo "recv $(sed -n 's/^result //p' "$r2")"
    } >>"$results"
  else
    echo "failed $reason" >>"$results"
  fi
  if [ "$loss" -gt 0 ]; then
    echo "nft dropped=$(tmcnet_loss_dropped 3)" >>"$results"
    tmcnet_loss_clear 3
  fi
  # Forget the finished PIDs so teardown does not wait on them again.
  # shellcheck disable=SC2034  # read by netns.sh's teardown
  TMCNET_PIDS=()
}

echo "# Reliable multicast, 1 sender -> 2 receivers across network namespaces — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "network: sender $(tmcnet_ip 1), r1 $(tmcnet_ip 2), r2 $(tmcnet_ip 3) (veth pairs on one bridge); loss on r2 by nftables"
echo "per row: ${seconds} s of sending after a warm-up; ZeroMQ epgm: ZMQ_RATE ${zmq_rate_kbps} kbit/s, ZMQ_RECOVERY_IVL ${zmq_recovery_ms} ms; ZeroMQ sender is XPUB with ZMQ_XPUB_NODROP (blocks at the high-water mark instead of dropping)"
echo

for size in "${sizes[@]}"; do
  for loss in "${losses[@]}"; do
    for row in "${rows[@]}"; do
      read -r label transport manifest <<<"$row"
      if [ -n "$only" ] && [ "$label" != raw ] && [[ ",$only," != *",$label,"* ]]; then continue; fi
      if [ "$no_raw" -eq 1 ] && [ "$label" = raw ]; then continue; fi
      run_case "$label" "$transport" "$manifest" "$size" "$loss"
    done
  done
done

cp "$results" "$build/bench/reliable_mcast_results.txt" 2>/dev/null || true
# --keep DIR: every row's outputs (N.s, N.r1, N.r2 and their .err files with the libTMC
# counters), N being the row's index in the results file.
if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi
"$bin" --role report --input "$results"
