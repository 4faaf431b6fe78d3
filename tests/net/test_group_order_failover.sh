#!/usr/bin/env bash
# Group ordering with reliability across three namespaces, every member sending
# concurrently, nftables loss on one member that is not the sequencer.
#
#   phase 1, 3% loss at h3, no kill:  h1, h2 and h3 each send COUNT messages while
#            delivering; all three delivery logs must be identical (same messages, same
#            order), with no duplicates, each sender's messages in order, and complete
#            (every message of every sender).
#   phase 2, 3% loss at h3, the sequencer's process killed (SIGKILL) mid-run: the two
#            survivors' logs must be identical, with no duplicates, per-sender order, and
#            every message the survivors sent in both logs. The killed member's messages
#            may be partly missing, but the same ones at both survivors.
#   phase 3, 3% loss at h3, the tmc-sequencer offload: a capability file declares
#            network.sequencer, a tmc-sequencer process on a fourth host (h4) stamps and
#            multicasts; all three logs identical and complete, as in phase 1.
#   phase 4, as phase 3, and tmc-sequencer is killed (SIGKILL) mid-run and started again
#            at once (a new session, its state lost): the members cut the network
#            sequencer's term and a member sequences the rest; all three logs identical
#            and complete, and every member reports the sequencer change.
#   phase 5, as phase 4, but tmc-sequencer stays dead: the members notice that their own
#            messages stop coming back stamped and fail over the same way.
#
# The sequencer is the member with the smallest name unless the manifest names one; the
# script reads the manifest's members and 'sequencer', checks with 'tmc plan' that a member
# (not the network) sequences, and puts the loss on a member that is not the sequencer.
# On a difference check_group_logs.py prints the first differing position.
#
# usage: test_group_order_failover.sh <tmc_net_member> <tmc tool> [phases: 1,2,3,4,5] [tmc-sequencer]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=netns.sh
source "$here/netns.sh"
member=${1:?usage: $0 <tmc_net_member> <tmc tool> [phases]}
tmc_tool=${2:?usage: $0 <tmc_net_member> <tmc tool> [phases]}
phases=${3:-1,2}
seq_bin=${4:-}
[ -x "$member" ] || { echo "FAIL: $member is not executable" >&2; exit 1; }
[ -x "$tmc_tool" ] || { echo "FAIL: $tmc_tool is not executable" >&2; exit 1; }
tmcnet_require
tmcnet_require_nft

PY=${PYTHON:-/usr/bin/python3}
manifest="$here/group-order.yaml"
COUNT=1000      # messages per member
RATE=400        # per member per second: 2.5 s of sending, three senders at once
LOSS=30         # per mille at the lossy member
KILL_AFTER=900  # deliveries logged by a survivor before the sequencer is killed (of 3*COUNT)
LATE_HANDLER_MS=100  # h3 sets its delivery handler this long after opening: the others'
                     # first messages reach it before, and must still be logged first

# Which member sequences: 'tmc plan' must place ordering.group on a member; its name is the
# manifest's 'sequencer', or else the smallest member name.
plan=$("$tmc_tool" plan "$manifest" 2>&1) || { echo "FAIL: tmc plan $manifest:" >&2; echo "$plan" >&2; exit 1; }
if ! grep -q "sequenced by a member" <<<"$plan"; then
  echo "FAIL: the plan does not sequence by a member:" >&2
  echo "$plan" >&2
  exit 1
fi
seq_name=$(sed -n 's/^sequencer: *//p' "$manifest" | tr -d '"'"'"' ')
members_line=$(sed -n 's/^members: *\[\(.*\)\]/\1/p' "$manifest" | tr -d ' ')
if [ -z "$seq_name" ]; then
  seq_name=$(tr ',' '\n' <<<"$members_line" | LC_ALL=C sort | head -n1)
fi
case "$seq_name" in
  h1) seq_host=1 ;; h2) seq_host=2 ;; h3) seq_host=3 ;;
  *) echo "FAIL: the sequencer '$seq_name' is not one of h1..h3" >&2; exit 1 ;;
esac
lossy_host=$(( seq_host % 3 + 1 ))           # a member that is not the sequencer
others=()
for h in 1 2 3; do [ "$h" -eq "$seq_host" ] || others+=("$h"); done
echo "sequencer: $seq_name (host $seq_host; $(grep -m1 -o "sequenced by a member ([^)]*)" <<<"$plan")); loss ${LOSS}/1000 at h$lossy_host"

tmcnet_setup
work=$(mktemp -d "${TMPDIR:-/tmp}/tmc-net-go.XXXXXX")
TMCNET_CLEANUP_DIRS=("$work")
port=$(sed -n 's/^port: *//p' "$manifest")
rc=0

# start_members <tag> [member options...]: every member sends COUNT messages at RATE while
# delivering; PIDs in pid_of[1..3].
declare -A pid_of=()
start_members() {
  local tag=$1 h
  shift
  for h in 1 2 3; do
    local late=()
    [ "$h" -eq 3 ] && late=(--late-handler-ms $LATE_HANDLER_MS)
    tmcnet_bg "$h" "$member" "$@" "${late[@]}" --manifest "$manifest" --name "h$h" --send $COUNT --rate $RATE \
      --receive 40 --idle 5 --wait-members 2 --log "$work/$tag-h$h.log" --ready "$work/$tag-h$h.ready" \
      --events "$work/$tag-h$h.events" \
      >"$work/$tag-h$h.out" 2>&1
    pid_of[$h]=$TMCNET_LAST_PID
  done
  tmcnet_wait_files "$work/$tag-h1.ready" "$work/$tag-h2.ready" "$work/$tag-h3.ready"
}

# The member process behind a tmcnet_bg PID (ip netns exec normally execs it in place).
member_pid() {
  local pid=$1 child
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = tmc_net_member ]; then echo "$pid"; return; fi
  child=$(pgrep -P "$pid" 2>/dev/null | head -n1 || true)
  echo "${child:-$pid}"
}

phase1() {
  echo "phase 1: group ordering + reliability, all three sending, ${LOSS}/1000 loss at h$lossy_host, no kill"
  tmcnet_loss_clear "$lossy_host"
  tmcnet_loss "$lossy_host" "$port" $LOSS
  start_members p1
  local h
  for h in 1 2 3; do
    if ! wait "${pid_of[$h]}"; then
      echo "FAIL (phase 1): member h$h exited with an error" >&2
      rc=1
    fi
  done
  TMCNET_PIDS=()
  sed 's/^/  /' "$work"/p1-h*.out
  echo "  nftables drops at h$lossy_host: $(tmcnet_loss_dropped "$lossy_host")"
  "$PY" "$here/check_group_logs.py" "$work/p1-h1.log" "$work/p1-h2.log" "$work/p1-h3.log" \
    --complete "h1:$COUNT,h2:$COUNT,h3:$COUNT" --senders h1,h2,h3 || rc=1
}

phase2() {
  echo "phase 2: the same, and the sequencer $seq_name (host $seq_host) killed with SIGKILL mid-run"
  tmcnet_loss_clear "$lossy_host"
  tmcnet_loss "$lossy_host" "$port" $LOSS
  start_members p2
  # Kill once a survivor has delivered KILL_AFTER messages (its log is written through a
  # stdio buffer, so this is approximate), or after 2 s of sending at the latest.
  local watch="$work/p2-h${others[0]}.log" tries=0
  while [ "$(wc -l <"$watch" 2>/dev/null || echo 0)" -lt $KILL_AFTER ] && [ $tries -lt 40 ]; do
    sleep 0.05
    tries=$((tries + 1))
  done
  local victim
  victim=$(member_pid "${pid_of[$seq_host]}")
  echo "  killing $seq_name (pid $victim) after $(wc -l <"$watch") deliveries logged at h${others[0]}"
  kill -KILL "$victim" 2>/dev/null || { echo "FAIL (phase 2): the sequencer had already exited" >&2; rc=1; }
  wait "${pid_of[$seq_host]}" 2>/dev/null || true
  local h
  for h in "${others[@]}"; do
    if ! wait "${pid_of[$h]}"; then
      echo "FAIL (phase 2): survivor h$h exited with an error" >&2
      rc=1
    fi
  done
  TMCNET_PIDS=()
  for h in "${others[@]}"; do sed 's/^/  /' "$work/p2-h$h.out"; done
  echo "  nftables drops at h$lossy_host: $(tmcnet_loss_dropped "$lossy_host")"
  if ! "$PY" "$here/check_group_logs.py" "$work/p2-h${others[0]}.log" "$work/p2-h${others[1]}.log" \
    --complete "h${others[0]}:$COUNT,h${others[1]}:$COUNT" --senders h1,h2,h3; then
    rc=1
    # What the survivors' ordering and membership stages reported around the failure.
    for h in "${others[@]}"; do
      echo "  events at h$h (first 12, without joins and delivery outcomes):"
      grep -v -e '^member_joined' -e '^delivery_' "$work/p2-h$h.events" | head -n 12 | sed 's/^/    /' || true
    done
  fi
}

# A fourth host on the bridge for tmc-sequencer, built as netns.sh builds h1..h3 and
# appended to TMCNET_NS so that tmcnet_bg and the teardown handle it like the others; and a
# capability file that declares it. Sets seq_addr, group and caps.
seq_addr="" group="" caps=""
setup_h4() {
  [ -n "$caps" ] && return 0
  local ns4="${TMCNET_PREFIX}h4"
  ip netns add "$ns4"
  TMCNET_NS+=("$ns4")
  ip -n "$ns4" link set lo up
  ip -n "$TMCNET_BR_NS" link add p4 type veth peer name "$TMCNET_IF" netns "$ns4"
  ip -n "$TMCNET_BR_NS" link set p4 master br0 up
  ip -n "$ns4" addr add "$(tmcnet_ip 4)/24" dev "$TMCNET_IF"
  ip -n "$ns4" link set "$TMCNET_IF" up
  ip -n "$ns4" route add 224.0.0.0/4 dev "$TMCNET_IF"
  seq_addr="$(tmcnet_ip 4):47490"
  group="$(sed -n 's/^group: *//p' "$manifest"):$port"
  caps="$work/caps-sequencer.yaml"
  printf 'network:\n  multicast: true\n  sequencer: "%s"\n' "$seq_addr" >"$caps"
}

# offload_phase <n> <fate: lives|restarts|dies>
offload_phase() {
  local n=$1 fate=$2 h
  case "$fate" in
    lives) echo "phase $n: the same with the tmc-sequencer offload (a fourth host), ${LOSS}/1000 loss at h3, no kill" ;;
    restarts) echo "phase $n: the tmc-sequencer offload, ${LOSS}/1000 loss at h3, tmc-sequencer killed mid-run and restarted" ;;
    dies) echo "phase $n: the tmc-sequencer offload, ${LOSS}/1000 loss at h3, tmc-sequencer killed mid-run for good" ;;
  esac
  [ -x "$seq_bin" ] || { echo "FAIL (phase $n): no tmc-sequencer binary given (4th argument)" >&2; rc=1; return; }
  setup_h4
  local plan3
  plan3=$("$tmc_tool" plan "$manifest" --caps "$caps" 2>&1) || { echo "FAIL (phase $n): tmc plan --caps: $plan3" >&2; rc=1; return; }
  grep -q "sequenced by the network" <<<"$plan3" || { echo "FAIL (phase $n): the plan does not use the network sequencer" >&2; rc=1; return; }
  tmcnet_bg 4 "$seq_bin" --listen "$seq_addr" --group "$group" --interface "$TMCNET_IF" >"$work/p$n-seq.out" 2>&1
  local seq_pid=$TMCNET_LAST_PID
  tmcnet_loss_clear 3
  tmcnet_loss 3 "$port" $LOSS
  start_members "p$n" --caps "$caps"
  if [ "$fate" != lives ]; then
    local watch="$work/p$n-h1.log" tries=0
    while [ "$(wc -l <"$watch" 2>/dev/null || echo 0)" -lt $KILL_AFTER ] && [ $tries -lt 40 ]; do
      sleep 0.05
      tries=$((tries + 1))
    done
    local victim
    victim=$(pgrep -P "$seq_pid" 2>/dev/null | head -n1 || true)
    [ "$(cat "/proc/$seq_pid/comm" 2>/dev/null)" = tmc-sequencer ] && victim=$seq_pid
    victim=${victim:-$seq_pid}
    echo "  killing tmc-sequencer (pid $victim) after $(wc -l <"$watch") deliveries logged at h1"
    kill -KILL "$victim" 2>/dev/null || { echo "FAIL (phase $n): tmc-sequencer had already exited" >&2; rc=1; }
    wait "$seq_pid" 2>/dev/null || true
    if [ "$fate" = restarts ]; then
      tmcnet_bg 4 "$seq_bin" --listen "$seq_addr" --group "$group" --interface "$TMCNET_IF" >"$work/p$n-seq2.out" 2>&1
      seq_pid=$TMCNET_LAST_PID
      echo "  tmc-sequencer restarted (a new session)"
    fi
  fi
  for h in 1 2 3; do
    if ! wait "${pid_of[$h]}"; then
      echo "FAIL (phase $n): member h$h exited with an error" >&2
      rc=1
    fi
  done
  if [ "$fate" != dies ]; then
    kill -TERM "$seq_pid" 2>/dev/null || true
    wait "$seq_pid" 2>/dev/null || true
  fi
  TMCNET_PIDS=()
  sed 's/^/  /' "$work"/p$n-h*.out
  for f in "$work/p$n-seq.out" "$work/p$n-seq2.out"; do
    [ -f "$f" ] && sed -n 's/^ *\(received\|stale\|stamped\|sent\) .*/  tmc-sequencer: &/p' "$f" | tr -s ' '
  done
  echo "  nftables drops at h3: $(tmcnet_loss_dropped 3)"
  "$PY" "$here/check_group_logs.py" "$work/p$n-h1.log" "$work/p$n-h2.log" "$work/p$n-h3.log" \
    --complete "h1:$COUNT,h2:$COUNT,h3:$COUNT" --senders h1,h2,h3 || rc=1
  if [ "$fate" != lives ]; then
    # Every member left the network sequencer's term for a member sequencer's, once.
    for h in 1 2 3; do
      local changes
      changes=$(grep -c '^sequencer_changed' "$work/p$n-h$h.events" || true)
      if [ "$changes" != 1 ]; then
        echo "FAIL (phase $n): h$h reported $changes sequencer changes, expected 1" >&2
        rc=1
      fi
    done
  fi
}

[[ ",$phases," == *",1,"* ]] && phase1
[[ ",$phases," == *",2,"* ]] && phase2
[[ ",$phases," == *",3,"* ]] && offload_phase 3 lives
[[ ",$phases," == *",4,"* ]] && offload_phase 4 restarts
[[ ",$phases," == *",5,"* ]] && offload_phase 5 dies

if [ $rc -eq 0 ]; then
  echo "PASS: group-ordered reliable logs identical and complete under loss (phases $phases)"
else
  echo "FAIL: see above (the first differing position, if any, is printed by check_group_logs.py)"
fi
exit $rc
