#!/usr/bin/env bash
# tmc-sequencer for real: the standalone process stamps and multicasts, two libTMC members
# (tmc_group_order_members, one process, one socket each) send concurrently through it and
# must deliver identical total orders, their own messages included.
#
#   test_group_order_sequencer.sh TMC_SEQUENCER TMC_GROUP_ORDER_MEMBERS
#
# Runs inside a private network namespace (unshare -n) whose loopback gets multicast, so the
# host's network is never touched. Without root or unshare it exits 77 (skipped).
set -u
SEQ=${1:?tmc-sequencer binary}
MEMBERS=${2:?tmc_group_order_members binary}

if [[ ${TMC_GO_INNER:-0} != 1 ]]; then
  if [[ $(id -u) != 0 ]] || ! command -v unshare >/dev/null; then
    echo "SKIP: needs root and unshare" >&2
    exit 77
  fi
  TMC_GO_INNER=1 exec unshare -n bash "$0" "$@"
fi

ip link set lo up || exit 77
ip link set lo multicast on || exit 77
ip route add 224.0.0.0/4 dev lo 2>/dev/null || true

LOG=$(mktemp)
"$SEQ" --listen 127.0.0.1:47001 --group 239.255.77.7:47000 --interface 127.0.0.1 >"$LOG" 2>&1 &
SEQ_PID=$!
trap 'kill $SEQ_PID 2>/dev/null; rm -f "$LOG"' EXIT
sleep 0.3

rc=0
"$MEMBERS" --sequencer 127.0.0.1:47001 --group 239.255.77.7:47000 --members 2 --messages 300 || rc=1

kill -TERM $SEQ_PID
wait $SEQ_PID
seq_rc=$?
cat "$LOG"
if [[ $seq_rc != 0 ]]; then
  echo "FAIL: tmc-sequencer exited with $seq_rc after SIGTERM" >&2
  rc=1
fi
grep -q "stamped      600" "$LOG" || { echo "FAIL: tmc-sequencer did not stamp 600 datagrams" >&2; rc=1; }
exit $rc
