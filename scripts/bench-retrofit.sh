#!/usr/bin/env bash
# socat over the retrofit shim vs socat over plain UDP, in the same run (docs/benchmarks.md).
#
#   scripts/bench-retrofit.sh [BUILD_DIR] [--seconds S] [--size B] [--rounds N]
#
# On loopback, one socat reads B-byte blocks from /dev/zero and sends each as a datagram
# (`socat -u -b B /dev/zero UDP4-SENDTO:127.0.0.1:PORT`) for S seconds, flat out; another
# (`socat -u UDP4-RECV:PORT OPEN:file`) writes what it receives to a file on tmpfs. The
# rate is the messages the receiving socat wrote per second of sending. Rows alternate
# (plain, shim, plain, shim, ...) N rounds, so both see the same machine; the medians and
# their ratio are printed. The shim row runs both programs under `tmc run` with
# bench/retrofit/socat-best-effort.yaml.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
seconds=3
size=64
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift ;;
    --size) size=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) build=$1 ;;
  esac
  shift
done
tmc="$build/tools/tmc"
manifest="$here/bench/retrofit/socat-best-effort.yaml"
port=47593
[ -x "$tmc" ] || { echo "build the tmc tool first (cmake --build $build --target tmc_tool)" >&2; exit 1; }
command -v socat >/dev/null || { echo "socat is not installed (scripts/install-deps.sh)" >&2; exit 1; }
dir=$(mktemp -d /dev/shm/tmc-bench-retrofit.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$dir"' EXIT

# one_run plain|shim — prints messages/s delivered to the receiving socat
one_run() {
  local prefix=()
  [ "$1" = shim ] && prefix=("$tmc" run --manifest "$manifest" --)
  rm -f "$dir/out"
  "${prefix[@]}" socat -u -b 65536 UDP4-RECV:$port "OPEN:$dir/out,creat,trunc" 2>/dev/null &
  local recv=$!
  sleep 0.5
  timeout "$seconds" "${prefix[@]}" socat -u -b "$size" /dev/zero UDP4-SENDTO:127.0.0.1:$port 2>/dev/null || true
  sleep 0.3
  kill "$recv" 2>/dev/null || true
  wait "$recv" 2>/dev/null || true
  local bytes
  bytes=$(stat -c %s "$dir/out" 2>/dev/null || echo 0)
  echo $((bytes / size / seconds))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

plain=()
shim=()
for r in $(seq 1 "$rounds"); do
  p=$(one_run plain)
  s=$(one_run shim)
  echo "round $r: plain UDP $p msg/s, shim $s msg/s"
  plain+=("$p")
  shim+=("$s")
done
mp=$(printf '%s\n' "${plain[@]}" | median)
ms=$(printf '%s\n' "${shim[@]}" | median)
ratio=$(awk -v a="$ms" -v b="$mp" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
echo
echo "| socat, $size B datagrams, loopback, ${seconds} s x $rounds rounds | messages/s (median) | vs plain |"
echo "|---|---|---|"
echo "| plain UDP | $mp | 1.00 |"
echo "| over libtmc-retrofit.so (best effort) | $ms | $ratio |"
