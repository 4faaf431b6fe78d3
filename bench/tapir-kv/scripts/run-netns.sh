#!/usr/bin/env bash
# run-netns.sh BUILD VARIANT LOSS_BP CLIENTS SECONDS OUTDIR [tapir-kv options...]
#
# One TAPIR-KV run on a real network: 3 replicas and CLIENTS closed-loop clients, each
# process in its own network namespace on one bridge (tests/net/netns.sh; IGMP snooping
# off, so the bridge replicates multicast to every port). Loss: nftables in every
# namespace drops LOSS_BP/10000 of all incoming UDP datagrams and TCP segments at random
# (i.i.d. per receiver: a multicast datagram is lost at each replica independently).
# Writes OUTDIR/{replica0..2,client0..}.json and .log, and OUTDIR/drops.txt (the nftables
# counters per host). Needs root; exits 77 (skipped) otherwise.
# RETROFIT=MANIFEST runs every process unmodified under `tmc run --manifest` (docs/retrofit.md)
# with that manifest plus this network's `interface:` (VARIANT udp-socket: plain UDP sockets
# the shim rewires onto libTMC channels).
set -euo pipefail
[ $# -ge 6 ] || { sed -n 2,15p "$0"; exit 2; }
BUILD=$(cd "$1" && pwd); VARIANT=$2; LOSS_BP=$3; CLIENTS=$4; SECONDS_=$5; OUT=$6
shift 6
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
BIN=$BUILD/bench/tapir-kv/tapir-kv
[ -x "$BIN" ] || { echo "run-netns: $BIN not built (cmake --build $BUILD --target tapir-kv)" >&2; exit 1; }
mkdir -p "$OUT"

# shellcheck source=../../../tests/net/netns.sh
source "$ROOT/tests/net/netns.sh"
tmcnet_require
tmcnet_require_nft
TMCNET_HOSTS=$((3 + CLIENTS))
PRE=()
prefix() { [ -z "${RETROFIT:-}" ] || PRE=("$BUILD/tools/tmc" run --manifest "$OUT/retrofit.yaml" --name "$1" --); }
if [ -n "${RETROFIT:-}" ]; then
  [ -x "$BUILD/tools/tmc" ] || { echo "run-netns: $BUILD/tools/tmc not built (targets tmc_tool tmc_retrofit)" >&2; exit 1; }
  { cat "$RETROFIT"; echo "interface: $TMCNET_IF"; } >"$OUT/retrofit.yaml"
fi
tmcnet_setup >"$OUT/netns.log"
# IGMP snooping, as a switched network has it: the bridge forwards a group's datagrams to
# the ports that joined it (the replicas), not to every host. The bridge is the querier,
# so it learns the joins. TAPIR_SNOOPING=0 floods every port, as the bridge does without.
# A group's membership is learned from the hosts' IGMP reports; one that is missed (a join's
# unsolicited reports race the bridge learning its ports) is learned again only when the
# querier asks: at once here (startup queries every 0.25 s, then every 1 s), not after the
# default 125 s, during which the bridge forwards that group to the other replicas only.
if [ "${TAPIR_SNOOPING:-1}" = 1 ]; then
  ip -n "$TMCNET_BR_NS" link set br0 type bridge mcast_snooping 1 mcast_querier 1 mcast_query_interval 100 \
    mcast_query_response_interval 50 mcast_startup_query_interval 25 mcast_startup_query_count 4 \
    >>"$OUT/netns.log" 2>&1 ||
    echo "run-netns: could not turn IGMP snooping on: multicast floods every port" >&2
fi

replicas="$(tmcnet_ip 1),$(tmcnet_ip 2),$(tmcnet_ip 3)"
client_ips=""
for ((j = 0; j < CLIENTS; j++)); do client_ips="$client_ips${client_ips:+,}$(tmcnet_ip $((4 + j)))"; done
if [ "$LOSS_BP" -gt 0 ]; then
  for ((h = 1; h <= TMCNET_HOSTS; h++)); do tmcnet_loss_ip "$h" "$LOSS_BP"; done
fi
LOSS_PCT=$(awk -v b="$LOSS_BP" 'BEGIN { printf "%g", b / 100 }')
common=(--variant "$VARIANT" --replicas "$replicas" --client-ips "$client_ips" --interface "$TMCNET_IF"
        --loss "$LOSS_PCT" --loss-model "nftables numgen, every receiver, UDP and TCP" --seconds "$SECONDS_" "$@")

rpids=()
for r in 0 1 2; do
  prefix "r$r"
  tmcnet_bg $((r + 1)) "${PRE[@]}" "$BIN" replica --index "$r" "${common[@]}" --out "$OUT/replica$r.json" 2>"$OUT/replica$r.log"
  rpids+=("$TMCNET_LAST_PID")
done
for r in 0 1 2; do
  tries=0
  until grep -q "tapir-kv: ready" "$OUT/replica$r.log" 2>/dev/null; do
    tries=$((tries + 1))
    [ $tries -lt 600 ] || { echo "run-netns: replica $r did not start" >&2; cat "$OUT/replica$r.log" >&2; exit 1; }
    sleep 0.05
  done
done
# With snooping, the clients start once the bridge forwards every client's request group to
# every replica (variants that use multicast: the replicas joined one group per client), so
# that no run begins with a replica cut off from a client's requests.
if [ "${TAPIR_SNOOPING:-1}" = 1 ] && { [ "$VARIANT" = mcast ] || [ "$VARIANT" = tuned ] || [ "$VARIANT" = tuned-flagged ]; }; then
  want=$((3 * CLIENTS)); tries=0
  until [ "$(bridge -n "$TMCNET_BR_NS" mdb show 2>/dev/null | grep -cE 'port p[123] grp 239\.77\.0\.')" -ge "$want" ]; do
    tries=$((tries + 1))
    [ $tries -lt 100 ] || { echo "run-netns: the bridge did not learn every replica's groups in 5 s" >&2; break; }
    sleep 0.05
  done
fi
cpids=()
for ((j = 0; j < CLIENTS; j++)); do
  prefix "c$j"
  tmcnet_bg $((4 + j)) "${PRE[@]}" "$BIN" client --index "$j" "${common[@]}" --out "$OUT/client$j.json" 2>"$OUT/client$j.log"
  cpids+=("$TMCNET_LAST_PID")
done
rc=0
for p in "${cpids[@]}"; do wait "$p" || rc=1; done
for p in "${rpids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${rpids[@]}"; do wait "$p" || true; done
: >"$OUT/drops.txt"
for ((h = 1; h <= TMCNET_HOSTS; h++)); do
  d=$(tmcnet_loss_dropped "$h" || true); echo "host$h ${d:-0}" >>"$OUT/drops.txt"
done
# What the bridge forwarded to each host's port, and the groups it learned.
{ ip -n "$TMCNET_BR_NS" -s link show; bridge -n "$TMCNET_BR_NS" mdb show; } >"$OUT/bridge.txt" 2>&1 || true
exit $rc
