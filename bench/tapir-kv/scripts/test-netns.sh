#!/usr/bin/env bash
# test-netns.sh BUILD — short real-network runs for CTest (root; exit 77 otherwise):
# tuned at 1% loss and udp (unicast fan-out) at 0%, 2 clients, 2 s each. Every client
# must commit, and every transaction must finish within 5 s (liveness under loss).
set -euo pipefail
BUILD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the TAPIR-KV netns test needs root (network namespaces)" >&2; exit 77; }
command -v nft >/dev/null 2>&1 || { echo "SKIP: nftables ('nft') is not installed" >&2; exit 77; }
work=$(mktemp -d -t tapir-netns.XXXXXX)
trap 'rm -rf "$work"' EXIT
for spec in "tuned 100" "udp 0"; do
  set -- $spec
  rc=0
  "$HERE/run-netns.sh" "$BUILD" "$1" "$2" 2 2 "$work/$1" >"$work/$1.log" 2>&1 || rc=$?
  [ $rc -eq 77 ] && { cat "$work/$1.log" >&2; exit 77; }
  [ $rc -eq 0 ] || { echo "FAIL: $1 run failed" >&2; cat "$work/$1.log" "$work/$1"/*.log >&2; exit 1; }
  /usr/bin/python3 - "$work/$1" "$1" <<'PY'
import glob, json, sys
d, variant = sys.argv[1], sys.argv[2]
clients = [c for f in glob.glob(d + "/client*.json") for c in json.load(open(f))["client_reports"]]
assert len(clients) == 2, f"{variant}: {len(clients)} client reports, expected 2"
for c in clients:
    assert c["committed"] > 0, f"{variant}: client {c['index']} committed nothing"
    worst = max(t[1] for t in c["txns"]) / 1e9
    assert worst < 5, f"{variant}: client {c['index']} had a transaction take {worst:.2f} s (liveness bound 5 s)"
    print(f"{variant}: client {c['index']} committed {c['committed']}, slowest txn {worst * 1000:.1f} ms")
PY
done
