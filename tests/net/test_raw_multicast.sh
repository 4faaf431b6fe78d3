#!/usr/bin/env bash
# Prove the netns test network with plain UDP multicast (no libTMC): host 1 sends, hosts 2
# and 3 receive. Then host 3 drops 20% of incoming datagrams with nftables and must see
# loss while host 2 still sees everything. If this test fails, the libTMC net tests
# cannot mean anything on this machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=netns.sh
source "$here/netns.sh"
tmcnet_require
tmcnet_require_nft
tmcnet_setup

PY=${PYTHON:-/usr/bin/python3}
GROUP=239.77.0.1
PORT=47470
COUNT=2000
work=$(mktemp -d "${TMPDIR:-/tmp}/tmc-net-raw.XXXXXX")
TMCNET_CLEANUP_DIRS=("$work")

wait_ready() {
  local f tries=0
  for f in "$@"; do
    while [ ! -s "$f" ]; do
      tries=$((tries + 1))
      [ $tries -lt 100 ] || { echo "FAIL: receiver did not become ready ($f)" >&2; exit 1; }
      sleep 0.05
    done
  done
}

# field <name> <file>: the value of name=<v> in the receiver's summary line.
field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" "$2"; }

round() {
  local label=$1
  rm -f "$work"/*.ready
  tmcnet_bg 2 "$PY" "$here/mcast_probe.py" recv --group $GROUP --port $PORT --duration 15 \
    --iface-addr "$(tmcnet_ip 2)" --ready "$work/h2.ready" >"$work/h2.$label"
  local p2=$TMCNET_LAST_PID
  tmcnet_bg 3 "$PY" "$here/mcast_probe.py" recv --group $GROUP --port $PORT --duration 15 \
    --iface-addr "$(tmcnet_ip 3)" --ready "$work/h3.ready" >"$work/h3.$label"
  local p3=$TMCNET_LAST_PID
  wait_ready "$work/h2.ready" "$work/h3.ready"
  tmcnet_exec 1 "$PY" "$here/mcast_probe.py" send --group $GROUP --port $PORT --count $COUNT \
    --iface-addr "$(tmcnet_ip 1)" >/dev/null
  wait "$p2" "$p3"
  echo "raw multicast ($label): host2 $(cat "$work/h2.$label"); host3 $(cat "$work/h3.$label")"
}

rc=0
round clean
for h in 2 3; do
  got=$(field distinct "$work/h$h.clean")
  if [ "${got:-0}" -ne $COUNT ]; then
    echo "FAIL: host $h received $got of $COUNT datagrams on a loss-free network" >&2
    rc=1
  fi
done

tmcnet_loss 3 $PORT 200
round loss
got2=$(field distinct "$work/h2.loss")
got3=$(field distinct "$work/h3.loss")
dropped=$(tmcnet_loss_dropped 3)
echo "nftables on host 3 dropped ${dropped:-?} datagrams"
if [ "${got2:-0}" -ne $COUNT ]; then
  echo "FAIL: host 2 (no loss rule) received $got2 of $COUNT" >&2
  rc=1
fi
# 20% of 2000 is 400 expected drops; 200..600 is far outside any plausible random spread.
lost3=$((COUNT - ${got3:-0}))
if [ $lost3 -lt 200 ] || [ $lost3 -gt 600 ]; then
  echo "FAIL: host 3 lost $lost3 of $COUNT with a 20% drop rule (expected about 400)" >&2
  rc=1
fi
[ $rc -eq 0 ] && echo "PASS: raw UDP multicast across namespaces, with and without nftables loss"
exit $rc
