#!/usr/bin/env bash
# Multicast to many member processes on real sockets: one sender, every other member a
# receiving process, several per network namespace, 1% loss (nftables) at every receiving
# namespace. Each channel variant in SCALE_VARIANTS runs at each group size in SCALE_MEMBERS,
# all in the same run (same network, same load, interleaved), so their rates are comparable.
#
#   bench/scale/scale-netns.sh <path to tmc_net_member>
#
# Variants (the manifest each phase uses):
#   reliable               reliability: true (ack from all)
#   best-effort            reliability: false: the baseline of what the machine allows when
#                          every receiving process reads every datagram
#   reliable-quiet         reliable with membership heartbeats every 500 ms (default 100),
#                          failure timeout 5 s: what the heartbeats cost the receivers
#   reliable-coalesced     reliable, and pacing.coalesce us 200 (many messages a datagram)
#   best-effort-coalesced  best-effort, coalesced likewise
# Per variant and group size n (sender included) it prints one line:
#   variant=V members=n receivers=n-1 delivered=D/E complete=yes|no rate=R msg/s
#   done_rate=.. recv_rate=.. cpu_us_per_msg=C recv_cpu_us_per_msg=U
#   recv_busy_cpu_us_per_msg=B datagrams=G acks_received_per_dgram=.. ... load=..
# where D counts (receiver, message) pairs delivered exactly once, E = (n-1) x count, and
# complete means every receiver delivered every message. For reliable, rate is count / the
# time until every message's outcome was met (acknowledged by every receiver); for
# reliable-coalesced (whose messages go alone when their outcome is tracked, so none is)
# it is done_rate: count / the time from the sender's start to the last delivery at any
# receiver (the steady clock is shared by every namespace). A best-effort sender sends as
# fast as it can with no feedback to slow it, so its rate is the receivers' median delivery
# rate (recv_rate: a receiver's deliveries over the time from its first delivery to its
# last; with every receiver saturated, what the cores allow).
# cpu is the sender's user + system time per message sent. recv_cpu is the receivers'
# summed user + system time per message one receiver delivered (process start and idle
# waits included): the receiving CPU one message costs the whole machine; recv_busy_cpu
# is the same summed over each receiver's delivering span only. The per-datagram counters
# are the sender's (reliability.*) over the datagrams it handed to the kernel; recv_dgrams
# in and out are the datagrams the receivers read and sent, over the messages they delivered.
# Exits 1 unless every reliable phase delivered everything (and, when SCALE_MIN_RATIO is
# set, unless each variant's largest size kept that share of its smallest size's rate).
#
# Knobs (environment): SCALE_MEMBERS (default "3 100"), SCALE_VARIANTS (default "reliable
# best-effort"), SCALE_PER_HOST receiving processes per namespace (10), SCALE_COUNT messages
# (20000), SCALE_SIZE bytes (64), SCALE_LOSS_PERMILLE at each receiving namespace (10 = 1%),
# SCALE_REPS repetitions, interleaved (1), SCALE_MIN_RATIO (unset), SCALE_RECEIVE_S most
# seconds a receiver waits (120), SCALE_LINGER_S seconds a coalescing reliable sender stays open
# after its last send for the repairs (5). Needs root, ip netns and nftables; exits 77 otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
net_dir=$(cd "$here/../../tests/net" && pwd)
member=${1:?usage: $0 <tmc_net_member>}
[ -x "$member" ] || { echo "FAIL: $member is not executable" >&2; exit 1; }

MEMBERS=${SCALE_MEMBERS:-3 100}
VARIANTS=${SCALE_VARIANTS:-reliable best-effort}
PER_HOST=${SCALE_PER_HOST:-10}
COUNT=${SCALE_COUNT:-20000}
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
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR] = $1} END {print NR ? a[int((NR + 1) / 2)] : 0}'; }
# The summed user + system CPU of the given members' outputs, in microseconds.
cpu_sum() { cat "$@" 2>/dev/null | sed -n 's/^.*: cpu user \([0-9]*\) us, system \([0-9]*\) us$/\1 \2/p' | awk '{t += $1 + $2} END {print t + 0}'; }
# A counter from the sender's --counters lines, 0 when absent.
counter_of() { awk -v k="$2" '$2 == "counter" && $3 == k {v = $4} END {print v + 0}' "$1"; }
run_phase() {
  local variant=$1 n=$2 rep=$3 phase_no=$4
  local tag="$variant-n$n-r$rep" port=$((PORT_BASE + phase_no % 100)) pids=() i h r reliable=true extra="" idle=10
  local manifest="$work/$tag.yaml" names=()
  case "$variant" in
    reliable) ;;
    best-effort) reliable=false idle=2 names=(--sender-from-payload 1) ;;
    reliable-quiet) extra=$'heartbeat us: 500000\nfailure timeout us: 5000000' ;;
    reliable-coalesced) extra="pacing: {coalesce us: 200}" ;;
    best-effort-coalesced) reliable=false idle=2 names=(--sender-from-payload 1) extra="pacing: {coalesce us: 200}" ;;
    *) echo "FAIL: unknown variant $variant" >&2; exit 1 ;;
  esac
  cat >"$manifest" <<EOF
id: scale-$tag
group: 239.77.$((phase_no % 200 + 20)).1
port: $port
interface: tmc0
reliability: $reliable
max message bytes: 1024
$extra
EOF
  for ((i = 1; i < n; i++)); do
    h=$((2 + (i - 1) / PER_HOST))
    tmcnet_bg "$h" nice -n 1 "$member" --manifest "$manifest" --name "r$i" --receive "${SCALE_RECEIVE_S:-120}" \
      --idle "$idle" "${names[@]}" --log "$work/$tag-r$i.log" --ready "$work/$tag-r$i.ready" >"$work/$tag-r$i.out" 2>&1
    pids+=("$TMCNET_LAST_PID")
  done
  for ((i = 1; i < n; i++)); do tmcnet_wait_files "$work/$tag-r$i.ready"; done
  # A reliable sender waits until it has heard every receiver and tracks each message's
  # outcome, except when coalescing: a message whose outcome is tracked goes alone. A
  # best-effort channel has no membership to wait on: its receivers have joined (ready).
  local wait=()
  case "$variant" in
    reliable | reliable-quiet) wait=(--wait-members $((n - 1)) --outcomes 1) ;;
    reliable-coalesced) wait=(--wait-members $((n - 1)) --linger "${SCALE_LINGER_S:-5}") ;;
    *) sleep 1 ;;
  esac
  tmcnet_bg 1 "$member" --manifest "$manifest" --name s --send "$COUNT" --rate 1e9 --size "$SIZE" \
    "${wait[@]}" --counters reliability. >"$work/$tag-s.out" 2>&1
  local sender=$TMCNET_LAST_PID sender_rc=0
  wait "$sender" || sender_rc=$?
  for r in "${pids[@]}"; do wait "$r" || true; done
  local busy_cpu settled cpu delivered=0 complete=yes rate cpu_per got span rates="" recv_cpu recv_rate recv_cpu_per dgrams
  local counters="" k v start_ns last_ns=0 l done_rate
  settled=$(sed -n 's/^s: outcomes met \([0-9]*\), failed \([0-9]*\).*all settled after \([0-9.]*\) s$/\1 \2 \3/p' \
    "$work/$tag-s.out")
  cpu=$(cpu_sum "$work/$tag-s.out")
  for ((i = 1; i < n; i++)); do
    # Distinct messages of the sender delivered with the right payload.
    got=$(awk '$1 == "s" && $5 == "ok" {print $2}' "$work/$tag-r$i.log" 2>/dev/null | sort -u | wc -l)
    delivered=$((delivered + got))
    [ "$got" -eq "$COUNT" ] || complete=no
    span=$(sed -n 's/^r[0-9]*: delivering for \([0-9.]*\) s,.*/\1/p' "$work/$tag-r$i.out")
    rates+=" $(awk -v g="$got" -v s="${span:-0}" 'BEGIN { printf "%.0f", (s > 0 ? g / s : 0) }')"
    l=$(sed -n 's/^r[0-9]*: delivering for .* to \([0-9]*\) ns$/\1/p' "$work/$tag-r$i.out")
    [ "${l:-0}" -gt "$last_ns" ] && last_ns=$l
  done
  recv_cpu=$(cpu_sum "$work/$tag"-r*.out)
  # Datagrams the receivers read and sent (acks, NACKs, heartbeats) per message delivered.
  local recv_dgrams
  recv_dgrams=$(cat "$work/$tag"-r*.out 2>/dev/null | sed -n 's/^r[0-9]*: sent [0-9]* (send errors [0-9]*), datagrams sent \([0-9]*\), datagrams received \([0-9]*\), delivered \([0-9]*\),.*/\1 \2 \3/p' |
    awk '{s += $1; r += $2; d += $3} END {printf "recv_dgrams_in_per_msg=%.3f recv_dgrams_out_per_msg=%.3f", (d > 0 ? r / d : 0), (d > 0 ? s / d : 0)}')
  # CPU per delivery while delivering, summed over the receivers (start and idle left out).
  busy_cpu=$(cat "$work/$tag"-r*.out 2>/dev/null | awk '$2 == "delivering" && $3 == "cpu" && $7 > 0 {t += $4 / $7} END {printf "%.2f", t}')
  recv_rate=$(echo "$rates" | median)
  [ "$sender_rc" -eq 0 ] || complete=no
  read -r met failed secs <<<"${settled:-0 0 0}"
  # Messages over the time from the sender's start to the last delivery at any receiver.
  start_ns=$(sed -n 's/^s: sending from \([0-9]*\) ns$/\1/p' "$work/$tag-s.out")
  done_rate=$(awk -v c="$COUNT" -v a="${start_ns:-0}" -v b="$last_ns" 'BEGIN { printf "%.0f", (b > a && a > 0 ? c / ((b - a) / 1e9) : 0) }')
  if [ "$variant" = reliable ] || [ "$variant" = reliable-quiet ]; then
    [ "$met" = "$COUNT" ] || complete=no
    rate=$(awk -v c="$COUNT" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? c / s : 0) }')
  elif [ "$reliable" = true ]; then
    rate=$done_rate
  else
    rate=$recv_rate
  fi
  cpu_per=$(awk -v c="$COUNT" -v u="$cpu" 'BEGIN { printf "%.2f", u / c }')
  recv_cpu_per=$(awk -v d="$delivered" -v u="$recv_cpu" -v r="$((n - 1))" 'BEGIN { printf "%.2f", (d > 0 ? u / (d / r) : 0) }')
  dgrams=$(sed -n 's/^s: sent [0-9]* (send errors [0-9]*), datagrams sent \([0-9]*\),.*/\1/p' "$work/$tag-s.out")
  for k in acks_received nacks_received retransmits; do
    v=$(counter_of "$work/$tag-s.out" "reliability.$k")
    counters+=" ${k}_per_dgram=$(awk -v v="$v" -v d="${dgrams:-0}" 'BEGIN { printf "%.3f", (d > 0 ? v / d : 0) }')"
  done
  RATE[$variant,$n]="${RATE[$variant,$n]:-} $rate"
  echo "variant=$variant members=$n receivers=$((n - 1)) delivered=$delivered/$(((n - 1) * COUNT))" \
    "complete=$complete rate=$rate msg/s done_rate=$done_rate msg/s recv_rate=$recv_rate msg/s cpu_us_per_msg=$cpu_per" \
    "recv_cpu_us_per_msg=$recv_cpu_per recv_busy_cpu_us_per_msg=$busy_cpu $recv_dgrams datagrams=${dgrams:-0}$counters outcomes_met=$met failed=$failed" \
    "settled_s=$secs load=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
  if [ "$complete" != yes ] && [ "$reliable" = true ]; then
    rc=1
    echo "  sender:" && sed 's/^/    /' "$work/$tag-s.out"
    for ((i = 1; i < n; i++)); do
      got=$(awk '$1 == "s" && $5 == "ok" {print $2}' "$work/$tag-r$i.log" 2>/dev/null | sort -u | wc -l)
      [ "$got" -eq "$COUNT" ] || { echo "  r$i delivered $got:" && sed 's/^/    /' "$work/$tag-r$i.out"; }
    done
  fi
  # A phase's delivery logs are large at 100 members; the counts above are all they give.
  rm -f "$work/$tag"-r*.log
}

echo "scale-netns: sizes [$MEMBERS], variants [$VARIANTS], $COUNT messages of $SIZE B," \
  "${LOSS}/1000 loss at each receiving namespace, $PER_HOST receivers per namespace, $REPS repetition(s)," \
  "$(nproc) cores"
phase_no=0
for ((rep = 1; rep <= REPS; rep++)); do
  for n in $MEMBERS; do
    for variant in $VARIANTS; do
      phase_no=$((phase_no + 1))
      run_phase "$variant" "$n" "$rep" "$phase_no"
    done
  done
done
smallest=$(echo "$MEMBERS" | tr ' ' '\n' | sort -n | head -n1)
for variant in $VARIANTS; do
  small_rate=$(echo "${RATE[$variant,$smallest]}" | median)
  large_rate=$(echo "${RATE[$variant,$largest]}" | median)
  ratio=$(awk -v a="$large_rate" -v b="$small_rate" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  echo "summary: $variant: median rate at $smallest members $small_rate msg/s, at $largest members" \
    "$large_rate msg/s, ratio $ratio"
  if [ -n "${SCALE_MIN_RATIO:-}" ] && awk -v r="$ratio" -v m="$SCALE_MIN_RATIO" 'BEGIN { exit !(r < m) }'; then
    echo "FAIL: $variant: the rate at $largest members is under $SCALE_MIN_RATIO of the rate at $smallest" >&2
    rc=1
  fi
done
exit "$rc"
