#!/usr/bin/env bash
# Ordered-multicast benchmark across network namespaces (docs/benchmarks.md).
#
#   sudo scripts/bench-ordered.sh [BUILD_DIR] [--quick] [--seconds S] [--loads R,R,...,max]
#                                 [--size B] [--only LABEL,...] [--keep DIR]
#
# Three members m1, m2, m3 on hosts h1..h3 (tests/net/netns.sh), all sending and all
# delivering, plus a fourth host h4 on the same bridge for tmc-sequencer (the stand-in for
# the paper's programmable switch). In ONE run it compares:
#   no-ordering     bench/manifests/ordered-none.yaml: reliability + point-to-point ordering
#   sw-sequencer    bench/manifests/ordered-group.yaml: group ordering + reliability, member
#                   sequencer (m1, the smallest name)
#   tmc-sequencer   the same manifest with a capability file declaring
#                   network.sequencer = h4's tmc-sequencer, which stamps and multicasts
# each at several loads (--loads, messages/s per member, default 1000,4000,max): every
# member sends at that rate for --seconds, "max" as fast as its channel's send() returns.
# One-way latency is measured from the send() call to delivery with the monotonic clock
# the namespaces share. The table gives delivered messages/s per member and p50/p99
# latency, each as a ratio to no-ordering at the same load, and whether every member
# delivered the same order. A row whose plan does not compile prints the compiler's reason.
#
# --quick: a smoke run for CTest (0.3 s per load, loads 200 and max, under 30 s).
# Needs root (network namespaces); otherwise it skips with exit code 77.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
quick=0
seconds=2
loads="1000,4000,max"
size=64
only=""
keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --seconds) seconds=$2; shift ;;
    --loads) loads=$2; shift ;;
    --size) size=$2; shift ;;
    --only) only=$2; shift ;;
    --keep) keep=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) build=$1 ;;
  esac
  shift
done

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: bench-ordered needs root (it creates network namespaces); run it with sudo" >&2
  exit 77
fi
build=$(cd "$build" && pwd)
bin="$build/bench/tmc-ordered-mcast"
tmc_tool="$build/tools/tmc"
seq_bin="$build/tools/tmc-sequencer"
for f in "$bin" "$tmc_tool" "$seq_bin"; do
  if [ ! -x "$f" ]; then
    echo "bench-ordered: $f is not built (cmake --build $build --target tmc-ordered-mcast tmc_tool tmc-sequencer)" >&2
    exit 1
  fi
done

TMCNET_PREFIX_OVERRIDE="tmcbo-$$-$(printf '%04x' $((RANDOM % 65536)))-"
# shellcheck source=tests/net/netns.sh disable=SC1091
source "$here/tests/net/netns.sh"
# shellcheck disable=SC2034  # read by netns.sh's functions
TMCNET_PREFIX=$TMCNET_PREFIX_OVERRIDE
tmcnet_require
work=$(mktemp -d "${TMPDIR:-/tmp}/tmcbo.XXXXXX")
TMCNET_CLEANUP_DIRS+=("$work")
tmcnet_setup >&2  # traps EXIT/INT/TERM: namespaces, processes and $work go away on any exit

# A fourth host for tmc-sequencer, built like netns.sh builds h1..h3; appending it to
# TMCNET_NS makes tmcnet_exec/tmcnet_bg/teardown handle it like the others.
ns4="${TMCNET_PREFIX}h4"
ip netns add "$ns4"
TMCNET_NS+=("$ns4")
ip -n "$ns4" link set lo up
ip -n "$TMCNET_BR_NS" link add p4 type veth peer name "$TMCNET_IF" netns "$ns4"
ip -n "$TMCNET_BR_NS" link set p4 master br0 up
ip -n "$ns4" addr add "$(tmcnet_ip 4)/24" dev "$TMCNET_IF"
ip -n "$ns4" link set "$TMCNET_IF" up
ip -n "$ns4" route add 224.0.0.0/4 dev "$TMCNET_IF"
for _ in $(seq 50); do
  ip -n "$ns4" link show "$TMCNET_IF" | grep -q 'state UP' && break
  sleep 0.1
done

idle=3
linger=30
if [ $quick -eq 1 ]; then
  seconds=0.3; loads="200,max"; idle=1; linger=10
fi

# label manifest caps(yes|no)
rows=(
  "no-ordering $here/bench/manifests/ordered-none.yaml no"
  "sw-sequencer $here/bench/manifests/ordered-group.yaml no"
  "tmc-sequencer $here/bench/manifests/ordered-group.yaml yes"
)
IFS=, read -r -a modes <<<"$loads"
results="$work/results.txt"
: >"$results"

# Whether a row's plan compiles (the reason when it does not). The capability file names
# the sequencer's address; the port differs per case, the plan does not depend on it.
seq_port_base=48800
caps_for() { # caps_for <index>: writes and prints the capability file of case <index>
  local f="$work/caps-$1.yaml"
  printf 'network:\n  multicast: true\n  sequencer: "%s:%d"\n' "$(tmcnet_ip 4)" $((seq_port_base + $1)) >"$f"
  echo "$f"
}
declare -A na_reason=()
for row in "${rows[@]}"; do
  read -r label manifest use_caps <<<"$row"
  args=("$manifest")
  [ "$use_caps" = no ] || args+=(--caps "$(caps_for 0)")
  if ! out=$("$tmc_tool" plan "${args[@]}" 2>&1); then
    na_reason[$label]=$(printf '%s\n' "$out" | sed 's/^[^:]*: [A-Z_]*: //' | paste -sd ';' - | sed 's/;/; /g')
  fi
done

# udp_rcvbuf_errors <host>: datagrams the host's kernel dropped because a socket's receive
# buffer was full (per namespace; /proc/net/snmp's Udp RcvbufErrors).
# shellcheck disable=SC2016  # the awk program is meant to be literal
udp_rcvbuf_errors() {
  tmcnet_exec "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) n[i] = $i; h = 1 }
                                   else { for (i = 1; i <= NF; i++) if (n[i] == "RcvbufErrors") print $i } }' /proc/net/snmp
}

# has_line FILE PREFIX: whether FILE has a line starting with PREFIX.
has_line() { grep -q "^$2" "$1" 2>/dev/null; }

index=0
run_case() {
  local label=$1 manifest=$2 use_caps=$3 load=$4
  index=$((index + 1))
  local group="239.255.92.$index" port=$((48700 + index)) rate=$4
  [ "$load" != max ] || rate=0
  echo "case label=$label load=$load" >>"$results"
  if [ -n "${na_reason[$label]:-}" ]; then
    echo "na ${na_reason[$label]}" >>"$results"
    return
  fi
  echo "bench-ordered: $label, load $load ..." >&2
  local caps_args=() seq_pid=""
  if [ "$use_caps" = yes ]; then
    caps_args=(--caps "$(caps_for $index)")
    tmcnet_bg 4 "$seq_bin" --listen "$(tmcnet_ip 4):$((seq_port_base + index))" --group "$group:$port" \
      --interface "$TMCNET_IF" >"$work/$index.seq" 2>&1
    seq_pid=$TMCNET_LAST_PID
  fi
  local go="$work/$index.go" h pids=() ok=1 reason="" rcvbuf_before=()
  for h in 1 2 3 4; do rcvbuf_before[h]=$(udp_rcvbuf_errors $h); done
  for h in 1 2 3; do
    tmcnet_bg "$h" "$bin" --role member --name "m$h" --index $((h - 1)) --members 3 --manifest "$manifest" \
      "${caps_args[@]}" --group "$group" --port "$port" --interface "$TMCNET_IF" \
      --seconds "$seconds" --rate "$rate" --size "$size" --idle "$idle" --linger "$linger" --start-after "$go" \
      >"$work/$index.m$h" 2>"$work/$index.m$h.err"
    pids+=("$TMCNET_LAST_PID")
  done
  # Every member joined and sees the others (25 s at most), then all start together.
  local tries=0
  while :; do
    local ready=0
    for h in 1 2 3; do has_line "$work/$index.m$h" ready && ready=$((ready + 1)); done
    [ $ready -eq 3 ] && break
    tries=$((tries + 1))
    if [ $tries -gt 500 ]; then
      ok=0; reason="a member did not become ready: $(cat "$work/$index".m*.err | head -n2 | tr '\n' ' ')"
      break
    fi
    for p in "${pids[@]}"; do
      if ! kill -0 "$p" 2>/dev/null; then
        ok=0; reason="a member exited early: $(cat "$work/$index".m*.err | head -n2 | tr '\n' ' ')"
        break 2
      fi
    done
    sleep 0.05
  done
  if [ $ok -eq 1 ]; then
    touch "$go"
    # Each member reports once it has every other member's end marker (or went idle).
    local limit=$(( $(printf '%.0f' "$seconds") * 20 + idle * 20 + 1200 )) tries=0
    while :; do
      local done_n=0
      for h in 1 2 3; do
        if has_line "$work/$index.m$h" result || ! kill -0 "${pids[$((h - 1))]}" 2>/dev/null; then
          done_n=$((done_n + 1))
        fi
      done
      [ $done_n -eq 3 ] && break
      tries=$((tries + 1))
      if [ $tries -gt $limit ]; then ok=0; reason="a member never reported"; break; fi
      sleep 0.05
    done
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$seq_pid" ]; then
    kill -TERM "$seq_pid" 2>/dev/null || true
    wait "$seq_pid" 2>/dev/null || true
  fi
  if [ $ok -eq 1 ]; then
    for h in 1 2 3; do
      if ! has_line "$work/$index.m$h" result; then
        ok=0; reason="m$h reported nothing: $(head -n2 "$work/$index.m$h.err" | tr '\n' ' ')"
      fi
    done
  fi
  if [ $ok -eq 1 ]; then
    for h in 1 2 3; do
      echo "member $(sed -n 's/^result //p' "$work/$index.m$h") udp_rcvbuf_errors=$(( $(udp_rcvbuf_errors $h) - rcvbuf_before[h] ))" >>"$results"
    done
    if [ -n "$seq_pid" ]; then
      echo "sequencer $(sed -n 's/^ *\(stamped\|received\|stale\|send_errors\) *\([0-9]*\)$/\1=\2/p' "$work/$index.seq" | paste -sd ' ' -) udp_rcvbuf_errors=$(( $(udp_rcvbuf_errors 4) - rcvbuf_before[4] ))" >>"$results"
    fi
  else
    echo "failed $reason" >>"$results"
  fi
  # shellcheck disable=SC2034  # read by netns.sh's teardown
  TMCNET_PIDS=()
}

echo "# Ordered multicast, 3 members all sending, across network namespaces — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "network: m1 $(tmcnet_ip 1), m2 $(tmcnet_ip 2), m3 $(tmcnet_ip 3), tmc-sequencer $(tmcnet_ip 4) (veth pairs on one bridge), no loss"
echo "per load: ${seconds} s of sending by every member, ${size} B messages; loads (msg/s per member): $loads"
echo

for row in "${rows[@]}"; do
  read -r label manifest use_caps <<<"$row"
  if [ -n "$only" ] && [ "$label" != no-ordering ] && [[ ",$only," != *",$label,"* ]]; then continue; fi
  for load in "${modes[@]}"; do
    run_case "$label" "$manifest" "$use_caps" "$load"
  done
done

echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
cp "$results" "$build/bench/ordered_mcast_results.txt" 2>/dev/null || true
if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi
"$bin" --role report --input "$results"
