#!/usr/bin/env bash
# FEC across network namespaces (docs/benchmarks.md, "FEC across namespaces"): reliability
# alone against reliability + fec.xor loaded from the signed module repository, in one run.
#
#   sudo bench/fec-netns.sh [BUILD_DIR] [--quick] [--runs N] [--count N] [--rate R]
#                           [--size BYTES] [--loss PER_10000] [--k K] [--rto-us US]
#
# One sender (h1) and two receivers (h2, h3), each in its own namespace on a bridge
# (tests/net/netns.sh); nftables drops --loss/10000 (default 100: 1 %) of the UDP arriving
# at each receiver. Both channels are the same reliable channel (ack from all, strict
# order, retransmission timeout at least --rto-us, default 50 ms); the second adds
# `modules: [fec]` and `stages: {fec.xor: {k: K}}`, verified and loaded from
# BUILD_DIR/modules-repo with the build's trust file, and lets its receivers
# wait 1.5 blocks (`reliability: {nack delay us: ...}`) before they NACK a gap; a partial
# block's parity waits 1.25 blocks (flush_us), so paced blocks fill. The runs alternate
# between the two (A B, B A, ...), --runs times each; the table gives medians over runs of:
# the sender's retransmissions, the receivers' delivery latency p50 and p99 (the worse
# receiver of each run), the delivery rate, and the bytes on the wire per payload byte.
# --quick: a smoke run for CTest (one run each, 300 messages).
# Needs root (network namespaces, nftables); otherwise it skips with exit code 77.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
runs=5
count=4000
rate=2000
size=1024
loss=100
k=8
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --runs) runs=$2; shift ;;
    --count) count=$2; shift ;;
    --rate) rate=$2; shift ;;
    --size) size=$2; shift ;;
    --loss) loss=$2; shift ;;
    --k) k=$2; shift ;;
    --rto-us) rto_us=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) build=$1 ;;
  esac
  shift
done
if [ "$quick" -eq 1 ]; then runs=1; count=300; fi
# A block of k datagrams takes k/rate seconds to send; the FEC channel's receivers NACK a gap
# only after 1.5 blocks (reliability alone keeps the stage's default).
nack_us=$(( (k * 1500000) / rate ))
# A partial block's parity waits 1.25 blocks, so that paced blocks fill (parity every k).
flush_us=$(( (k * 1250000) / rate ))
# Both channels: a retransmission timeout of at least 50 ms, so that a loaded machine's
# scheduling delays do not fire timeouts and the retransmissions count losses (--rto-us).
rto_us=${rto_us:-50000}

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: fec-netns needs root (network namespaces, nftables); run it with sudo" >&2
  exit 77
fi
build=$(cd "$build" && pwd)
bin="$build/bench/tmc-fec-netns"
repo="$build/modules-repo"
trust="$build/modules-repo-key/trust.yaml"
for f in "$bin" "$repo/index.yaml.sig" "$trust"; do
  [ -e "$f" ] || { echo "fec-netns: $f is missing (cmake --build $build --target tmc-fec-netns tmc_test_module_repo)" >&2; exit 1; }
done

# shellcheck source=tests/net/netns.sh disable=SC1091
source "$here/tests/net/netns.sh"
tmcnet_require
tmcnet_require_nft
work=$(mktemp -d "${TMPDIR:-/tmp}/tmc-fec.XXXXXX")
TMCNET_CLEANUP_DIRS+=("$work")
tmcnet_setup >&2
tmcnet_loss_ip 2 "$loss"
tmcnet_loss_ip 3 "$loss"

# manifest <file> <port> <with fec: 0|1>
manifest() {
  cat >"$1" <<EOF
id: bench-fec
members: [h1, h2, h3]
group: 239.77.1.9
port: $2
interface: $TMCNET_IF
point-to-point ordering: strict
ordering hold us: 5000000
max message bytes: $size
EOF
  if [ "$3" -eq 1 ]; then
    # A receiver waits longer than a block's sending time before it NACKs, so that what the
    # parity rebuilds is never asked for (modules/fec/README.md).
    printf 'reliability: {min timeout us: %s, nack delay us: %s}\nmodules: [fec]\nstages:\n  fec.xor: {k: %s, flush_us: %s}\n' \
      "$rto_us" "$nack_us" "$k" "$flush_us" >>"$1"
  else
    printf 'reliability: {min timeout us: %s}\n' "$rto_us" >>"$1"
  fi
}

results="$work/results"
: >"$results"
port=47600
# run <label> <with fec> <run index>
run() {
  local label=$1 fec=$2 i=$3 m="$work/$1-$3.yaml" pids=() h
  port=$((port + 1))
  manifest "$m" "$port" "$fec"
  local repo_args=(--repo "$repo" --trust "$trust" --state "$work/state.yaml")
  for h in 2 3; do
    tmcnet_bg "$h" "$bin" --role recv --manifest "$m" --name "h$h" --count "$count" --idle 5 \
      --ready "$work/$label-$i-h$h.ready" "${repo_args[@]}" >"$work/$label-$i-h$h.out" 2>&1
    pids+=("$TMCNET_LAST_PID")
  done
  tmcnet_wait_files "$work/$label-$i-h2.ready" "$work/$label-$i-h3.ready"
  tmcnet_bg 1 "$bin" --role send --manifest "$m" --name h1 --count "$count" --rate "$rate" --size "$size" \
    --members 2 "${repo_args[@]}" >"$work/$label-$i-h1.out" 2>&1
  pids+=("$TMCNET_LAST_PID")
  local rc=0 p
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  for h in 1 2 3; do
    sed -n "s/^result /label=$label run=$i /p" "$work/$label-$i-h$h.out" >>"$results"
  done
  if [ "$rc" -ne 0 ]; then
    echo "fec-netns: run $label $i: a member failed:" >&2
    cat "$work/$label-$i"-h*.out >&2
    return 1
  fi
}

uptime >&2
for i in $(seq 1 "$runs"); do
  if [ $((i % 2)) -eq 1 ]; then run reliable 0 "$i"; run reliable+fec 1 "$i"; else run reliable+fec 1 "$i"; run reliable 0 "$i"; fi
  echo "fec-netns: run $i of $runs done" >&2
done
uptime >&2

python3 - "$results" "$loss" "$count" "$rate" "$size" "$k" "$runs" <<'EOF'
import statistics, sys
path, loss, count, rate, size, k, runs = sys.argv[1:]
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(path) if line.strip()]
def med(xs): return statistics.median(xs) if xs else float("nan")
print(f"{count} messages of {size} B at {rate}/s, {int(loss) / 100:g} % loss at each of 2 receivers, "
      f"fec.xor k = {k}; medians of {runs} run(s) each, interleaved.\n")
print("| channel | retransmissions | delivery p50 (us) | delivery p99 (us) | delivered/s | wire bytes per payload byte | parity datagrams |")
print("|---|---|---|---|---|---|---|")
for label in ("reliable", "reliable+fec"):
    send = [r for r in rows if r["label"] == label and r["role"] == "send"]
    recv = [r for r in rows if r["label"] == label and r["role"] == "recv"]
    per_run = {}
    for r in recv: per_run.setdefault(r["run"], []).append(r)
    p50 = med([max(float(r["p50_us"]) for r in v) for v in per_run.values()])
    p99 = med([max(float(r["p99_us"]) for r in v) for v in per_run.values()])
    rate_ = med([min(float(r["rate"]) for r in v) for v in per_run.values()])
    retx = med([int(s["retransmits"]) for s in send])
    over = med([int(s["wire_bytes"]) / max(1, int(s["payload_bytes"])) for s in send])
    parity = med([int(s["parity"]) for s in send])
    print(f"| {label} | {retx:g} | {p50:.0f} | {p99:.0f} | {rate_:.0f} | {over:.3f} | {parity:g} |")
EOF
