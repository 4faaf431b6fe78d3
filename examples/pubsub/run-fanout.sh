#!/usr/bin/env bash
# One publisher, N subscribers (separate processes) on this host.
#   run-fanout.sh <dir with tmc-pubsub-publisher and tmc-pubsub-subscriber> [N] [port]
set -euo pipefail
bin=$1
n=${2:-3}
port=${3:-4760}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for i in $(seq 1 "$n"); do
  "$bin/tmc-pubsub-subscriber" --name "subscriber-$i" --port "$port" --idle 5 &
  pids+=($!)
done
sleep 0.5  # let every subscriber join before the first quote
"$bin/tmc-pubsub-publisher" --count 1000 --rate 5000 --port "$port"
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
pids=()
exit $rc
