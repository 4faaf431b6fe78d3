#!/usr/bin/env bash
# Load hints across two namespaces: h1 sends 1000 reliable, ordered 200-byte messages at
# 5000/s with flow control (policy min, 32 KiB window) to h2, whose application thread takes
# one message off a 512-message receive queue every 2 ms (tmc_net_member
# --consumer-thread-us), ten times slower than h1 sends.
#
#   phase 1, load hints on (the default): h2's window shrinks as its receive queue fills,
#            so flow control holds h1 back before the queue overflows: h2 delivers all
#            1000 exactly once, in order, and drops nothing (shell.receive_queue_full 0).
#   phase 2, 'load hints: false': the same run. Flow control sees only what h2's pipeline
#            consumed, which is everything at once: the queue overflows and messages that
#            reliability already acknowledged are dropped (shell.receive_queue_full > 0).
#
# Both drop counts are printed; the assertions are that phase 1 dropped and lost nothing
# and that phase 2 dropped more than phase 1. Never a time.
# usage: test_tmc_load_hints.sh <path to tmc_net_member>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=netns.sh
source "$here/netns.sh"
member=${1:?usage: $0 <tmc_net_member>}
[ -x "$member" ] || { echo "FAIL: $member is not executable" >&2; exit 1; }
tmcnet_require
tmcnet_setup

PY=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/tmc-net-load.XXXXXX")
TMCNET_CLEANUP_DIRS=("$work")
rc=0
count=1000

# counter <file> <member> <name> — a value printed by tmc_net_member --counters (0 if absent).
counter() { sed -n "s/^$2: counter $3 \\([0-9]*\\)\$/\\1/p" "$1" | head -n1 | grep . || echo 0; }
fail() { echo "FAIL ($1): $2" >&2; rc=1; }

# run_phase <tag> <manifest> — prints h2's receive-queue-full drops on the last line.
run_phase() {
  local tag=$1 manifest=$2 pids=()
  tmcnet_bg 2 "$member" --manifest "$manifest" --name h2 --receive 60 --idle 3 --consumer-thread-us 2000 \
    --receive-queue 512 --log "$work/$tag-h2.log" --ready "$work/$tag-h2.ready" --counters shell.,flow. \
    >"$work/$tag-h2.out" 2>&1
  pids+=("$TMCNET_LAST_PID")
  tmcnet_wait_files "$work/$tag-h2.ready"
  tmcnet_bg 1 "$member" --manifest "$manifest" --name h1 --send $count --rate 5000 --size 200 --wait-members 1 \
    --outcomes 1 --receive 1 --counters flow. >"$work/$tag-h1.out" 2>&1
  pids+=("$TMCNET_LAST_PID")
  local p
  for p in "${pids[@]}"; do wait "$p" || true; done
  sed 's/^/  /' "$work/$tag"-h*.out >&2
}

echo "phase 1: load hints on, slow consumer thread at h2"
run_phase p1 "$here/load-hints.yaml"
sed 's/^\(flow control:\)$/\1\n  load hints: false/' "$here/load-hints.yaml" >"$work/no-hints.yaml"
grep -q 'load hints: false' "$work/no-hints.yaml" || { echo "FAIL: could not write the no-hints manifest" >&2; exit 1; }
echo "phase 2: load hints off, the same slow consumer"
run_phase p2 "$work/no-hints.yaml"

q1=$(counter "$work/p1-h2.out" h2 shell.receive_queue_full)
q2=$(counter "$work/p2-h2.out" h2 shell.receive_queue_full)
d1=$(wc -l <"$work/p1-h2.log")
d2=$(wc -l <"$work/p2-h2.log")
w1=$(counter "$work/p1-h1.out" h1 flow.waits)
w2=$(counter "$work/p2-h1.out" h1 flow.waits)
echo "with load hints:    h2 delivered $d1 of $count, receive-queue-full drops $q1, h1 flow.waits $w1"
echo "without load hints: h2 delivered $d2 of $count, receive-queue-full drops $q2, h1 flow.waits $w2"
"$PY" "$here/check_log.py" "$work/p1-h2.log" --sender h1 --count $count --max-loss 0 --in-order || fail p1 "h2 lost or reordered messages with load hints"
[ "$q1" -eq 0 ] || fail p1 "h2 dropped $q1 messages (receive queue full) with load hints"
[ "$q2" -gt "$q1" ] || fail p2 "without load hints h2 dropped $q2, no more than with them ($q1): the slow consumer was not overrun"

if [ $rc -eq 0 ]; then
  echo "PASS: with load hints the slow consumer lost nothing ($q1 drops); without them it was overrun ($q2 drops)"
fi
exit $rc
