#!/usr/bin/env bash
# Run libTMC's benchmarks from a build tree (`make bench` calls this with the build dir).
#
#   scripts/run-benchmarks.sh [BUILD_DIR] [--netns] [--quick]
#
# 1. Stage microbenchmarks (bench/micro_stages.cpp), briefly.
# 2. End-to-end throughput: raw UDP multicast vs libTMC best effort vs libTMC ordered +
#    checked, 64 B and 1 KiB, 1 -> 1 and 1 -> 2 receivers, every participant its own process.
# 3. End-to-end ping-pong latency, raw UDP vs libTMC.
# By default everything runs over loopback multicast on this host. With --netns (root),
# the participants run in three network namespaces joined by a bridge (tests/net/netns.sh),
# so datagrams cross veth pairs and a bridge like they would cross a real network.
# The whole run takes under a minute; results are printed as Markdown tables
# (docs/benchmarks.md records them with the machine they came from).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=build
netns=0
quick=0
for a in "$@"; do
  case "$a" in
    --netns) netns=1 ;;
    --quick) quick=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) build=$a ;;
  esac
done
build=$(cd "$build" && pwd)
tput_bin="$build/bench/tmc-e2e-throughput"
lat_bin="$build/bench/tmc-e2e-latency"
micro_bin="$build/bench/tmc_micro_stages"

seconds=0.7
repeat=3
lat_seconds=1
lat_repeat=3
if [ $quick -eq 1 ]; then seconds=0.5; repeat=1; lat_seconds=1; lat_repeat=1; fi

tput_args=(--seconds "$seconds" --repeat "$repeat")
lat_args=(--seconds "$lat_seconds" --repeat "$lat_repeat")
where="loopback multicast on this host"
if [ $netns -eq 1 ]; then
  # shellcheck source=../tests/net/netns.sh
  source "$here/tests/net/netns.sh"
  tmcnet_require
  tmcnet_setup
  tput_args+=(--interface "$TMCNET_IF" --netns "$(tmcnet_ns 1),$(tmcnet_ns 2),$(tmcnet_ns 3)")
  lat_args+=(--interface "$TMCNET_IF" --netns "$(tmcnet_ns 1),$(tmcnet_ns 2)")
  where="three network namespaces on a bridge (veth), interface $TMCNET_IF"
fi

echo "# libTMC benchmarks — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "network: $where"
echo

if [ -x "$micro_bin" ]; then
  echo "## Stage microbenchmarks"
  echo
  echo '```'
  "$micro_bin" --benchmark_min_time=0.05 2>/dev/null
  echo '```'
  echo
fi

if [ ! -x "$tput_bin" ] || [ ! -x "$lat_bin" ]; then
  echo "end-to-end benchmarks not built (need include/tmc/channel.hpp and TMC_BUILD_BENCH=ON)" >&2
  exit 1
fi

rc=0
echo "## End-to-end throughput (median of $repeat interleaved runs of ${seconds} s each)"
echo
echo "command: $tput_bin ${tput_args[*]}"
echo
"$tput_bin" "${tput_args[@]}" 2>"$build/bench/e2e_throughput.log" || rc=1
echo
echo "## End-to-end ping-pong latency (median of $lat_repeat interleaved runs of ${lat_seconds} s each)"
echo
echo "command: $lat_bin ${lat_args[*]}"
echo
"$lat_bin" "${lat_args[@]}" 2>"$build/bench/e2e_latency.log" || rc=1
echo
echo "(participant counters and progress: $build/bench/e2e_throughput.log, $build/bench/e2e_latency.log)"
exit $rc
