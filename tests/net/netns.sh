# shellcheck shell=bash
# tests/net/netns.sh — a three-host IP multicast network built from network namespaces.
#
# Source it from a bash test script:
#
#   source "$(dirname "$0")/netns.sh"
#   tmcnet_require            # exit 77 (CTest "skipped") unless root with ip netns
#   tmcnet_require_nft        # the same for nftables, when the test injects loss
#   tmcnet_setup              # build the network; teardown is trapped on EXIT/INT/TERM
#   tmcnet_exec 1 cmd ...     # run cmd inside host 1 (1..3)
#   tmcnet_bg 2 cmd ...       # the same in the background; the PID is in $TMCNET_LAST_PID
#   tmcnet_loss 3 4747 200    # host 3 drops 200/1000 of incoming UDP to port 4747
#   tmcnet_loss_ip 3 25       # host 3 drops 25/10000 of all incoming UDP and TCP
#
# TMCNET_HOSTS (default 3) sets the number of hosts, set before tmcnet_setup.
#
# Layout. Hosts 1..3 are namespaces "${TMCNET_PREFIX}h1".."h3"; a fourth namespace
# "${TMCNET_PREFIX}br" holds a bridge, so the host's own network is never touched. Each
# host has one veth, named $TMCNET_IF inside the host, whose peer is enslaved to the
# bridge. Host i has the address ${TMCNET_SUBNET}.i/24 and routes 224.0.0.0/4 out of that
# veth, so a multicast sender needs no IP_MULTICAST_IF to pick the right interface. IGMP
# snooping is off on the bridge: it floods multicast to every port, so a missed join
# report cannot make a test flaky.
#
# Names are unique per run (the shell's PID plus a random suffix), so concurrent runs and
# leftovers from a killed run never collide. Everything this file creates is removed by
# tmcnet_teardown, which the trap runs on success, failure and interruption alike.

TMCNET_SKIP=77
TMCNET_HOSTS=${TMCNET_HOSTS:-3}
TMCNET_IF=tmc0
TMCNET_PREFIX="tmc$$-$(printf '%04x' $((RANDOM % 65536)))-"
TMCNET_SUBNET="10.77.$((($$ % 250) + 1))"
TMCNET_NS=()
TMCNET_BR_NS=""
TMCNET_PIDS=()
TMCNET_LAST_PID=""
TMCNET_UP=0
TMCNET_CLEANUP_DIRS=()  # scratch directories the test wants removed on teardown

tmcnet_skip() {
  echo "SKIP: $*" >&2
  exit "$TMCNET_SKIP"
}

tmcnet_require() {
  [ "$(id -u)" -eq 0 ] || tmcnet_skip "netns tests need root (they create network namespaces); run as root or in CI"
  command -v ip >/dev/null 2>&1 || tmcnet_skip "'ip' (iproute2) is not installed"
  local probe="${TMCNET_PREFIX}probe"
  if ! ip netns add "$probe" 2>/dev/null; then
    tmcnet_skip "cannot create network namespaces here (ip netns add failed: no CAP_SYS_ADMIN?)"
  fi
  local veth_ok=1
  ip -n "$probe" link add tmcp0 type veth peer name tmcp1 2>/dev/null || veth_ok=0
  local br_ok=1
  ip -n "$probe" link add tmcpb type bridge 2>/dev/null || br_ok=0
  ip netns del "$probe" 2>/dev/null || true
  [ "$veth_ok" -eq 1 ] || tmcnet_skip "this kernel cannot create veth pairs"
  [ "$br_ok" -eq 1 ] || tmcnet_skip "this kernel cannot create bridges"
}

tmcnet_require_nft() {
  command -v nft >/dev/null 2>&1 || tmcnet_skip "nftables ('nft') is not installed; loss injection needs it"
  local probe="${TMCNET_PREFIX}nftprobe" ok=1
  ip netns add "$probe" 2>/dev/null || tmcnet_skip "cannot create network namespaces here"
  ip netns exec "$probe" nft add table inet tmcprobe 2>/dev/null || ok=0
  ip netns del "$probe" 2>/dev/null || true
  [ "$ok" -eq 1 ] || tmcnet_skip "nftables is installed but the kernel refused a table (no nf_tables?)"
}

tmcnet_ns() { echo "${TMCNET_NS[$(($1 - 1))]}"; }
tmcnet_ip() { echo "${TMCNET_SUBNET}.$1"; }

tmcnet_teardown() {
  local pid ns
  for pid in "${TMCNET_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${TMCNET_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  TMCNET_PIDS=()
  # Deleting a namespace destroys its veth ends (and with them their peers) and its
  # nftables tables; nothing is left behind in the host namespace.
  for ns in "${TMCNET_NS[@]}" "$TMCNET_BR_NS"; do
    [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
  done
  TMCNET_NS=()
  TMCNET_BR_NS=""
  TMCNET_UP=0
  local d
  for d in "${TMCNET_CLEANUP_DIRS[@]}"; do
    [ -n "$d" ] && rm -rf "$d"
  done
  TMCNET_CLEANUP_DIRS=()
}

tmcnet_on_exit() {
  local rc=$?
  tmcnet_teardown
  exit "$rc"
}

tmcnet_setup() {
  trap tmcnet_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  TMCNET_BR_NS="${TMCNET_PREFIX}br"
  ip netns add "$TMCNET_BR_NS"
  ip -n "$TMCNET_BR_NS" link set lo up
  ip -n "$TMCNET_BR_NS" link add br0 type bridge mcast_snooping 0 stp_state 0
  ip -n "$TMCNET_BR_NS" link set br0 up
  local i ns
  for ((i = 1; i <= TMCNET_HOSTS; i++)); do
    ns="${TMCNET_PREFIX}h$i"
    ip netns add "$ns"
    TMCNET_NS+=("$ns")
    ip -n "$ns" link set lo up
    # Create the pair inside the bridge namespace with the host end moved straight into
    # the host namespace, so no interface ever appears in the root namespace.
    ip -n "$TMCNET_BR_NS" link add "p$i" type veth peer name "$TMCNET_IF" netns "$ns"
    ip -n "$TMCNET_BR_NS" link set "p$i" master br0 up
    ip -n "$ns" addr add "$(tmcnet_ip "$i")/24" dev "$TMCNET_IF"
    # A veth carries a UDP GSO send as one packet all the way to the receiving socket. A
    # real wire carries each datagram (the NIC, or the kernel without one, segments before
    # it), and that is what nftables loss rules and the stack's per-packet costs must
    # see: segment at the host's own interface.
    ip -n "$ns" link set dev "$TMCNET_IF" gso_max_segs 1 2>/dev/null ||
      echo "netns: could not set gso_max_segs 1 on $ns's $TMCNET_IF: GSO sends cross the bridge unsegmented" >&2
    ip -n "$ns" link set "$TMCNET_IF" up
    ip -n "$ns" route add 224.0.0.0/4 dev "$TMCNET_IF"
  done
  TMCNET_UP=1
  # Wait until every host reaches the others (veth carrier and bridge forwarding come up
  # asynchronously); ping is not always installed, so a UDP round trip is not assumed either:
  # the link state is enough.
  local tries=0
  local up addrs=""
  while [ $tries -lt 50 ]; do
    up=0
    for ((i = 1; i <= TMCNET_HOSTS; i++)); do
      ip -n "$(tmcnet_ns "$i")" link show "$TMCNET_IF" | grep -q 'state UP' && up=$((up + 1))
    done
    [ "$up" -eq "$TMCNET_HOSTS" ] && break
    sleep 0.1
    tries=$((tries + 1))
  done
  for ((i = 1; i <= TMCNET_HOSTS; i++)); do addrs="$addrs $(tmcnet_ip "$i")"; done
  echo "netns: hosts ${TMCNET_NS[*]} on bridge $TMCNET_BR_NS/br0, addresses$addrs, interface $TMCNET_IF"
}

# tmcnet_exec <host 1..3> cmd args...
tmcnet_exec() {
  local host=$1
  shift
  ip netns exec "$(tmcnet_ns "$host")" "$@"
}

# tmcnet_bg <host 1..3> cmd args... — background; PID in TMCNET_LAST_PID, killed on teardown.
tmcnet_bg() {
  local host=$1
  shift
  ip netns exec "$(tmcnet_ns "$host")" "$@" &
  TMCNET_LAST_PID=$!
  TMCNET_PIDS+=("$TMCNET_LAST_PID")
}

# tmcnet_loss <host> <udp port> <per mille> — drop that share of incoming UDP to the port,
# at random, inside the host's namespace. (This kernel has no netem; nftables' numgen does.)
tmcnet_loss() {
  local host=$1 port=$2 permille=$3
  tmcnet_exec "$host" nft add table inet tmcloss
  tmcnet_exec "$host" nft add chain inet tmcloss input '{ type filter hook input priority 0 ; }'
  tmcnet_exec "$host" nft add rule inet tmcloss input udp dport "$port" numgen random mod 1000 '<' "$permille" counter drop
}

# tmcnet_loss_ip <host> <per 10000> — drop that share of all incoming UDP and TCP (every
# datagram and segment, any port) at random inside the host's namespace. Basis points, so
# that 0.25% is expressible.
tmcnet_loss_ip() {
  local host=$1 bp=$2
  tmcnet_exec "$host" nft add table inet tmcloss
  tmcnet_exec "$host" nft add chain inet tmcloss input '{ type filter hook input priority 0 ; }'
  tmcnet_exec "$host" nft add rule inet tmcloss input meta l4proto '{ udp, tcp }' numgen random mod 10000 '<' "$bp" counter drop
}

# tmcnet_loss_clear <host> — remove the loss rule again.
tmcnet_loss_clear() {
  tmcnet_exec "$1" nft delete table inet tmcloss 2>/dev/null || true
}

# tmcnet_loss_dropped <host> — packets the loss rule has dropped so far.
tmcnet_loss_dropped() {
  tmcnet_exec "$1" nft list table inet tmcloss 2>/dev/null | sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | head -n1
}

# tmcnet_wait_files FILE... — wait (up to 10 s each) until every FILE exists and is not
# empty, e.g. the --ready files of members started in the background; fail otherwise.
tmcnet_wait_files() {
  local f tries
  for f in "$@"; do
    tries=0
    while [ ! -s "$f" ]; do
      tries=$((tries + 1))
      [ $tries -lt 200 ] || { echo "FAIL: $f never appeared (a member did not start)" >&2; exit 1; }
      sleep 0.05
    done
  done
}
