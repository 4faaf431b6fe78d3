# shellcheck shell=bash
# pc_netns.sh - source it: three "hosts" (network namespaces pc<pid>-h1..h3) on a bridge that
# lives in its own namespace (pc<pid>-br), modelled on libTMC's tests/net/netns.sh so that
# every transport sees the same network libTMC's own benchmarks use:
#   - veth per host, named pc0 inside the host, 10.79.0.<i>/24, route 224.0.0.0/4 via pc0
#   - IGMP snooping off on the bridge (multicast floods every port)
#   - gso_max_segs 1 on each host's pc0: a UDP GSO send is segmented at the host, so the
#     bridge, the loss rule and the receivers see one packet per datagram (as on a wire)
# Everything is removed by pcnet_teardown, which a trap runs on EXIT/INT/TERM.
#
#   source bench/peers/pc_netns.sh; pcnet_setup
#   pcnet_ns 2            -> namespace name of host 2
#   pcnet_ip 2            -> 10.79.0.2
#   pcnet_loss_on 2 10    -> host 2 drops 10/1000 of what it receives from host 1 (nftables)
#   pcnet_loss_dropped 2  -> packets dropped so far;  pcnet_loss_off 2
PCNET_PREFIX="pc$$-"
PCNET_IF=pc0
PCNET_SUBNET=10.79.0
PCNET_UP=0
PCNET_PIDS=()

pcnet_ns() { echo "${PCNET_PREFIX}h$1"; }
pcnet_ip() { echo "${PCNET_SUBNET}.$1"; }

pcnet_teardown() {
  local pid
  for pid in "${PCNET_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PCNET_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PCNET_PIDS=()
  local i
  for i in 1 2 3; do ip netns del "$(pcnet_ns $i)" 2>/dev/null || true; done
  ip netns del "${PCNET_PREFIX}br" 2>/dev/null || true
  PCNET_UP=0
}

pcnet_on_exit() {
  local rc=$?
  pcnet_teardown
  exit "$rc"
}

pcnet_setup() {
  trap pcnet_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local br="${PCNET_PREFIX}br" i ns
  ip netns add "$br"
  ip -n "$br" link set lo up
  ip -n "$br" link add pcbr0 type bridge mcast_snooping 0 stp_state 0
  ip -n "$br" link set pcbr0 up
  for i in 1 2 3; do
    ns=$(pcnet_ns $i)
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$br" link add "pcp$i" type veth peer name "$PCNET_IF" netns "$ns"
    ip -n "$br" link set "pcp$i" master pcbr0 up
    ip -n "$ns" addr add "$(pcnet_ip $i)/24" dev "$PCNET_IF"
    ip -n "$ns" link set dev "$PCNET_IF" gso_max_segs 1
    ip -n "$ns" link set "$PCNET_IF" up
    ip -n "$ns" route add 224.0.0.0/4 dev "$PCNET_IF"
  done
  PCNET_UP=1
  local tries=0
  while [ $tries -lt 50 ]; do
    local up=0
    for i in 1 2 3; do ip -n "$(pcnet_ns $i)" link show "$PCNET_IF" | grep -q 'state UP' && up=$((up + 1)); done
    [ $up -eq 3 ] && break
    sleep 0.1; tries=$((tries + 1))
  done
  echo "pcnet: hosts $(pcnet_ns 1) $(pcnet_ns 2) $(pcnet_ns 3), bridge ${br}/pcbr0, $(pcnet_ip 1)..3, interface $PCNET_IF" >&2
}

# pcnet_bg <host> cmd... : background inside host; PID in PCNET_LAST_PID (killed on teardown)
pcnet_bg() {
  local h=$1; shift
  ip netns exec "$(pcnet_ns "$h")" "$@" &
  PCNET_LAST_PID=$!
  PCNET_PIDS+=("$PCNET_LAST_PID")
}

pcnet_loss_on() {
  local h=$1 permille=$2 ns
  ns=$(pcnet_ns "$h")
  ip netns exec "$ns" nft add table inet pcloss
  ip netns exec "$ns" nft add chain inet pcloss input '{ type filter hook input priority 0 ; }'
  ip netns exec "$ns" nft add rule inet pcloss input ip saddr "$(pcnet_ip 1)" numgen random mod 1000 '<' "$permille" counter drop
}
pcnet_loss_dropped() {
  ip netns exec "$(pcnet_ns "$1")" nft list table inet pcloss 2>/dev/null | sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | head -n1
}
pcnet_loss_off() { ip netns exec "$(pcnet_ns "$1")" nft delete table inet pcloss 2>/dev/null || true; }
