#!/usr/bin/env bash
# Reliable multicast to many member processes on real sockets: one sender, every other
# member a receiving process, several per network namespace, 1% loss (nftables) at every
# receiving namespace. Each group size in SCALE_MEMBERS runs in turn in the same run (same
# network, same load), so the sender's rates are comparable.
#
#   bench/scale/scale-netns.sh <path to tmc_net_member>
#
# Per group size n (sender included) it prints one line:
#   members=n receivers=n-1 hosts=H delivered=D/E complete=yes|no rate=R msg/s cpu_us_per_msg=C ...
# where D counts (receiver, message) pairs delivered exactly once, E = (n-1) x count, rate is
# count / the time until every message's outcome was met (acknowledged by every receiver),
# and CPU is the sender process's user + system time over the whole send. Exits 1 unless
# every group size delivered everything (and, when SCALE_MIN_RATIO is set, unless the
# largest size kept that share of the smallest size's median rate).
#
# Knobs (environment): SCALE_MEMBERS (default "3 100"), SCALE_PER_HOST receiving processes
# per namespace (10), SCALE_COUNT messages (5000), SCALE_SIZE bytes (64), SCALE_LOSS_PERMILLE
# at each receiving namespace (10 = 1%), SCALE_REPS repetitions, interleaved (1),
# SCALE_MIN_RATIO (unset), SCALE_RECEIVE_S most seconds a receiver waits (120). Needs root, ip netns and nftables; exits 77 otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
net_dir=$(cd "$here/../../tests/net" && pwd)
member=${1:?usage: $0 <tmc_net_member>}
[ -x "$member" ] || { echo "FAIL: $member is not executable" >&2; exit 1; }

MEMBERS=${SCALE_MEMBERS:-3 100}
PER_HOST=${SCALE_PER_HOST:-10}
COUNT=${SCALE_COUNT:-5000}
SIZE=${SCALE_SIZE:-64}
LOSS=${SCALE_LOSS_PERMILLE:-10}
REPS=${SCALE_REPS:-1}

largest=0
for n in $MEMBERS; do [ "$n" -gt "$largest" ] && largest=$n; done
[ "$largest" -ge 2 ] || { echo "FAIL: SCALE_MEMBERS needs a size of at least 2" >&2; exit 1; }
# Host 1 holds the sender alone; receivers fill hosts 2.. PER_HOST at a time.
TMCNET_HOSTS=$((1 + (largest - 1 + PER_HOST - 1) / PER_HOST))
[ "$TMCNET_HOSTS" -ge 2 ] || TMCNET_HOSTS=2
# shellcheck source=../../tests/net/netns.sh
source "$net_dir/netns.sh"
tmcnet_require
tmcnet_require_nft
tmcnet_setup

work=$(mktemp -d "${TMPDIR:-/tmp}/tmc-scale.XXXXXX")
TMCNET_CLEANUP_DIRS=("$work")
rc=0
PORT_BASE=47600
for ((h = 2; h <= TMCNET_HOSTS; h++)); do
  # One rule per namespace covers every phase's port (PORT_BASE..PORT_BASE+99).
  tmcnet_exec "$h" nft add table inet tmcloss
  tmcnet_exec "$h" nft add chain inet tmcloss input '{ type filter hook input priority 0 ; }'
  tmcnet_exec "$h" nft add rule inet tmcloss input udp dport "$PORT_BASE-$((PORT_BASE + 99))" \
    numgen random mod 1000 '<' "$LOSS" counter drop
done

# The sender's user + system CPU in microseconds, from its exit summary.
cpu_us_of() { sed -n 's/^.*: cpu user \([0-9]*\) us, system \([0-9]*\) us$/\1 \2/p' "$1" | awk '{print $1 + $2}'; }

declare -A RATE
run_phase() {
  local n=$1 rep=$2 tag="n$1-r$2" phase_no=$3
  local port=$((PORT_BASE + phase_no % 100)) manifest="$work/$tag.yaml" pids=() i h r
  cat >"$manifest" <<EOF
id: scale-$tag
group: 239.77.$((phase_no % 200 + 20)).1
port: $port
interface: tmc0
reliability: true
max message bytes: 1024
EOF
  for ((i = 1; i < n; i++)); do
    h=$((2 + (i - 1) / PER_HOST))
    tmcnet_bg "$h" nice -n 1 "$member" --manifest "$manifest" --name "r$i" --receive "${SCALE_RECEIVE_S:-120}" --idle 10 \
      --log "$work/$tag-r$i.log" --ready "$work/$tag-r$i.ready" >"$work/$tag-r$i.out" 2>&1
    pids+=("$TMCNET_LAST_PID")
  done
  for ((i = 1; i < n; i++)); do tmcnet_wait_files "$work/$tag-r$i.ready"; done
  tmcnet_bg 1 "$member" --manifest "$manifest" --name s --send "$COUNT" --rate 1e9 --size "$SIZE" \
    --wait-members $((n - 1)) --outcomes 1 >"$work/$tag-s.out" 2>&1
  local sender=$TMCNET_LAST_PID sender_rc=0
  wait "$sender" || sender_rc=$?
  for r in "${pids[@]}"; do wait "$r" || true; done
  local settled cpu delivered=0 complete=yes rate cpu_per got
  settled=$(sed -n 's/^s: outcomes met \([0-9]*\), failed \([0-9]*\).*all settled after \([0-9.]*\) s$/\1 \2 \3/p' \
    "$work/$tag-s.out")
  cpu=$(cpu_us_of "$work/$tag-s.out")
  for ((i = 1; i < n; i++)); do
    # Distinct messages of the sender delivered with the right payload.
    got=$(awk '$1 == "s" && $5 == "ok" {print $2}' "$work/$tag-r$i.log" 2>/dev/null | sort -u | wc -l)
    delivered=$((delivered + got))
    [ "$got" -eq "$COUNT" ] || complete=no
  done
  [ "$sender_rc" -eq 0 ] || complete=no
  read -r met failed secs <<<"${settled:-0 0 0}"
  [ "$met" = "$COUNT" ] || complete=no
  rate=$(awk -v c="$COUNT" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? c / s : 0) }')
  cpu_per=$(awk -v c="$COUNT" -v u="${cpu:-0}" 'BEGIN { printf "%.2f", u / c }')
  RATE[$n]="${RATE[$n]:-} $rate"
  echo "members=$n receivers=$((n - 1)) hosts=$((1 + (n - 1 + PER_HOST - 1) / PER_HOST)) delivered=$delivered/$(((n - 1) * COUNT))" \
    "complete=$complete rate=$rate msg/s cpu_us_per_msg=$cpu_per outcomes_met=$met failed=$failed" \
    "settled_s=$secs retransmits=$(sed -n 's/^s: reliability retransmits \([0-9]*\),.*/\1/p' "$work/$tag-s.out")" \
    "load=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
  if [ "$complete" != yes ]; then
    rc=1
    echo "  sender:" && sed 's/^/    /' "$work/$tag-s.out"
    for ((i = 1; i < n; i++)); do
      got=$(awk '$1 == "s" && $5 == "ok" {print $2}' "$work/$tag-r$i.log" 2>/dev/null | sort -u | wc -l)
      [ "$got" -eq "$COUNT" ] || { echo "  r$i delivered $got:" && sed 's/^/    /' "$work/$tag-r$i.out"; }
    done
  fi
}

echo "scale-netns: sizes [$MEMBERS], $COUNT messages of $SIZE B, ${LOSS}/1000 loss at each receiving namespace," \
  "$PER_HOST receivers per namespace, $REPS repetition(s), $(nproc) cores"
phase_no=0
for ((rep = 1; rep <= REPS; rep++)); do
  for n in $MEMBERS; do
    phase_no=$((phase_no + 1))
    run_phase "$n" "$rep" "$phase_no"
  done
done
smallest=$(echo "$MEMBERS" | tr ' ' '\n' | sort -n | head -n1)
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR] = $1} END {print NR ? a[int((NR + 1) / 2)] : 0}'; }
small_rate=$(echo "${RATE[$smallest]}" | median)
large_rate=$(echo "${RATE[$largest]}" | median)
ratio=$(awk -v a="$large_rate" -v b="$small_rate" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
echo "summary: median rate at $smallest members $small_rate msg/s, at $largest members $large_rate msg/s," \
  "ratio $ratio"
if [ -n "${SCALE_MIN_RATIO:-}" ]; then
  if awk -v r="$ratio" -v m="$SCALE_MIN_RATIO" 'BEGIN { exit !(r < m) }'; then
    echo "FAIL: the rate at $largest members is under $SCALE_MIN_RATIO of the rate at $smallest" >&2
    rc=1
  fi
fi
exit "$rc"
