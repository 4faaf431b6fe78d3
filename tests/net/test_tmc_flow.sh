#!/usr/bin/env bash
# Flow control and congestion control across three namespaces.
#
#   phase 1, flow control policy min, h3 consumes slowly (its handler sleeps per message):
#            h1 sends 600 reliable messages much faster than h3 consumes them. Every message
#            must reach h2 and h3 exactly once, in order; h3 must drop nothing for lack of
#            room (no receive-queue-full drops, no UDP receive-buffer errors in its
#            namespace), every outcome at h1 must be met, and h1's flow stage must really
#            have held data back (flow.waits > 0) and reported h3 as slow.
#   phase 2, flow control policy max, same slow h3 (ack from [h2]): h2 gets everything
#            while h3 is still far from done (the fast receiver is not held back: h3 needs
#            at least 600 x 10 ms to consume; the check is against that lower bound, not a
#            clock), h1 reports h3 (slow_member) and never h2.
#   phase 3/4, congestion control aimd / cubic, 5% nftables loss at h3: 2000 reliable
#            messages reach h2 and h3 exactly once, in order, every outcome is met, and
#            h1's congestion stage saw and reacted to losses (congestion.losses > 0).
#
# Every assertion is about counts and order, never about elapsed time.
# usage: test_tmc_flow.sh <path to tmc_net_member>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=netns.sh
source "$here/netns.sh"
member=${1:?usage: $0 <tmc_net_member>}
[ -x "$member" ] || { echo "FAIL: $member is not executable" >&2; exit 1; }
tmcnet_require
tmcnet_require_nft
tmcnet_setup

PY=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/tmc-net-flow.XXXXXX")
TMCNET_CLEANUP_DIRS=("$work")
rc=0

port_of() { sed -n 's/^port: *//p' "$1"; }
# counter <file> <member> <name> — a value printed by tmc_net_member --counters (0 if absent).
counter() { sed -n "s/^$2: counter $3 \\([0-9]*\\)\$/\\1/p" "$1" | head -n1 | grep . || echo 0; }
# UDP receive-buffer errors in host $1's namespace (the kernel dropped datagrams: overrun).
rcvbuf_errors() { tmcnet_exec "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) n[$i] = i; h = 1 } else print $n["RcvbufErrors"] }' /proc/net/snmp; }
fail() { echo "FAIL ($1): $2" >&2; rc=1; }

# flow_phase <tag> <manifest> <policy>
flow_phase() {
  local tag=$1 manifest=$2 policy=$3 count=600 p pids=() h3pid
  local errs_before
  errs_before=$(rcvbuf_errors 3)
  tmcnet_bg 2 "$member" --manifest "$manifest" --name h2 --receive 50 --idle 1 --log "$work/$tag-h2.log" \
    --ready "$work/$tag-h2.ready" --counters shell. >"$work/$tag-h2.out" 2>&1
  pids+=("$TMCNET_LAST_PID")
  tmcnet_bg 3 "$member" --manifest "$manifest" --name h3 --receive 50 --idle 3 --consume-us 10000 \
    --log "$work/$tag-h3.log" --ready "$work/$tag-h3.ready" --counters shell.,flow. >"$work/$tag-h3.out" 2>&1
  h3pid=$TMCNET_LAST_PID
  tmcnet_wait_files "$work/$tag-h2.ready" "$work/$tag-h3.ready"
  # The sender stays 2 s after sending (an idle --receive), so that it can still see who
  # is behind (with policy max its outcomes only wait for h2, and settle quickly).
  tmcnet_bg 1 "$member" --manifest "$manifest" --name h1 --send $count --rate 3000 --size 200 --wait-members 2 \
    --outcomes 1 --receive 2 --events "$work/$tag-h1.events" --counters flow. >"$work/$tag-h1.out" 2>&1
  pids+=("$TMCNET_LAST_PID")
  for p in "${pids[@]}"; do
    wait "$p" || fail "$tag" "a member exited with an error (for the sender: an outcome was not met)"
  done
  if [ "$policy" = max ]; then
    # h2 and the sender are done; h3 (>= 6 s of sleeping) must still be far behind.
    local h3_now
    h3_now=$(wc -l <"$work/$tag-h3.log")
    echo "  when h2 and h1 were done, slow h3 had delivered $h3_now of $count"
    [ "$h3_now" -lt $((count * 3 / 4)) ] || fail "$tag" "policy max: h3 had $h3_now of $count when the fast h2 was done (was h3 the slow one?)"
  fi
  wait "$h3pid" || fail "$tag" "h3 exited with an error"
  sed 's/^/  /' "$work/$tag"-h*.out
  sed 's/^/  h1 event: /' "$work/$tag-h1.events" | grep -v delivery_ || true
  "$PY" "$here/check_log.py" "$work/$tag-h2.log" --sender h1 --count $count --max-loss 0 --in-order || rc=1
  "$PY" "$here/check_log.py" "$work/$tag-h3.log" --sender h1 --count $count --max-loss 0 --in-order || rc=1
  local waits qfull errs_after slow_h3 slow_h2
  waits=$(counter "$work/$tag-h1.out" h1 flow.waits)
  qfull=$(counter "$work/$tag-h3.out" h3 shell.receive_queue_full)
  errs_after=$(rcvbuf_errors 3)
  slow_h3=$(grep -c '^slow_member .*members=h3$' "$work/$tag-h1.events" || true)
  slow_h2=$(grep -c '^slow_member .*members=.*h2' "$work/$tag-h1.events" || true)
  echo "  h1 flow.waits $waits; h3 receive-queue-full drops $qfull, UDP receive-buffer errors $((errs_after - errs_before)); slow_member h3 $slow_h3, h2 $slow_h2"
  [ "$qfull" -eq 0 ] || fail "$tag" "h3 dropped $qfull messages: receive queue full"
  [ "$slow_h3" -ge 1 ] || fail "$tag" "h1 never reported the slow h3 (slow_member)"
  if [ "$policy" = max ]; then
    [ "$slow_h2" -eq 0 ] || fail "$tag" "policy max: h1 reported the fast h2 as slow"
  else
    [ "$waits" -gt 0 ] || fail "$tag" "policy min: h1's flow stage never held data back (flow.waits 0)"
    [ "$errs_after" -eq "$errs_before" ] || fail "$tag" "policy min: the kernel dropped $((errs_after - errs_before)) datagrams at h3 (overrun)"
  fi
}

# cc_phase <tag> <manifest>
cc_phase() {
  local tag=$1 manifest=$2 count=2000 p pids=()
  tmcnet_loss_clear 3
  tmcnet_loss 3 "$(port_of "$manifest")" 50
  for h in 2 3; do
    tmcnet_bg "$h" "$member" --manifest "$manifest" --name "h$h" --receive 50 --idle 3 \
      --log "$work/$tag-h$h.log" --ready "$work/$tag-h$h.ready" >"$work/$tag-h$h.out" 2>&1
    pids+=("$TMCNET_LAST_PID")
  done
  tmcnet_wait_files "$work/$tag-h2.ready" "$work/$tag-h3.ready"
  tmcnet_bg 1 "$member" --manifest "$manifest" --name h1 --send $count --rate 4000 --size 200 --wait-members 2 \
    --outcomes 1 --counters congestion. >"$work/$tag-h1.out" 2>&1
  pids+=("$TMCNET_LAST_PID")
  for p in "${pids[@]}"; do
    wait "$p" || fail "$tag" "a member exited with an error (for the sender: an outcome was not met)"
  done
  sed 's/^/  /' "$work/$tag"-h*.out
  echo "  nftables drops at h3: $(tmcnet_loss_dropped 3)"
  "$PY" "$here/check_log.py" "$work/$tag-h2.log" --sender h1 --count $count --max-loss 0 --in-order || rc=1
  "$PY" "$here/check_log.py" "$work/$tag-h3.log" --sender h1 --count $count --max-loss 0 --in-order || rc=1
  local losses
  losses=$(counter "$work/$tag-h1.out" h1 congestion.losses)
  [ "$losses" -gt 0 ] || fail "$tag" "h1's congestion stage reported no loss event under 5% loss (congestion.losses 0)"
}

echo "phase 1: flow control policy min, h3 consumes slowly"
flow_phase p1 "$here/flow-min.yaml" min
echo "phase 2: flow control policy max, h3 consumes slowly"
flow_phase p2 "$here/flow-max.yaml" max
echo "phase 3: congestion control aimd, 5% loss at h3"
cc_phase p3 "$here/congestion-aimd.yaml"
echo "phase 4: congestion control cubic, 5% loss at h3"
cc_phase p4 "$here/congestion-cubic.yaml"

if [ $rc -eq 0 ]; then
  echo "PASS: flow control held the sender back for a slow receiver without overrunning it (min) and let the fast one run while reporting the slow one (max); aimd and cubic reacted to 5% loss and every reliable message arrived exactly once, in order"
fi
exit $rc
