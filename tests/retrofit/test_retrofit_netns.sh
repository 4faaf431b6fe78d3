#!/usr/bin/env bash
# Retrofit across network namespaces with 5% loss (nftables at the receiving host h2):
# the same unmodified programs without the shim (plain UDP: losses show) and under
# `tmc run` with a reliable, ordered manifest (nothing lost or reordered). Both counts are
# printed. Programs: udp_numbers.py (socket + selectors), udp_numbers_asyncio.py, socat.
#
# usage: test_retrofit_netns.sh <path to the tmc tool>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../net/netns.sh
source "$here/../net/netns.sh"
tmc=${1:?usage: $0 <tmc tool>}
PY=${PYTHON:-/usr/bin/python3}
tmcnet_require
tmcnet_require_nft
command -v socat >/dev/null 2>&1 || tmcnet_skip "socat is not installed (scripts/install-deps.sh installs it)"
tmcnet_setup

manifest=$here/net-reliable.yaml
app_port=9000
channel_port=$(sed -n 's/^port: *//p' "$manifest")
count=600
rate=2000
h1=$(tmcnet_ip 1)
h2=$(tmcnet_ip 2)
work=$(mktemp -d "${TMPDIR:-/tmp}/tmc-net-retrofit.XXXXXX")
TMCNET_CLEANUP_DIRS=("$work")
rc=0
fail() { echo "FAIL: $*" >&2; rc=1; }
start=$(date +%s%N)
ms() { echo $((($(date +%s%N) - start) / 1000000)); }
# loss_at_h2 PORT — 5% of incoming UDP to PORT at h2 dropped (the rule is replaced).
loss_at_h2() {
  tmcnet_loss_clear 2
  tmcnet_loss 2 "$1" 50
}
got_of() { sed -n 's/^recv: got \([0-9]*\) distinct.*/\1/p' "$1"; }
reordered_of() { sed -n 's/.*reordered \([0-9]*\),.*/\1/p' "$1"; }

# on HOST MODE — the command prefix that runs a program on host h<HOST> with (shim) or
# without (plain) the retrofit shim, in the array `prefix`.
on() {
  if [ "$2" = shim ]; then
    prefix=("$tmc" run --manifest "$manifest" --name "h$1" --)
  else
    prefix=(env --)
  fi
}

# python_phase TAG PROGRAM shim|plain — h1 sends $count datagrams to h2's address.
python_phase() {
  local tag=$1 prog=$2 mode=$3 recv_pid prefix
  if [ "$mode" = shim ]; then loss_at_h2 "$channel_port"; else loss_at_h2 "$app_port"; fi
  on 2 "$mode"
  tmcnet_bg 2 "${prefix[@]}" "$PY" "$here/$prog" recv $app_port --ready "$work/$tag.ready" >"$work/$tag-recv.out" 2>&1
  recv_pid=$TMCNET_LAST_PID
  tmcnet_wait_files "$work/$tag.ready"
  on 1 "$mode"
  tmcnet_exec 1 "${prefix[@]}" "$PY" "$here/$prog" send "$h2" $app_port --count $count --rate $rate --idle 1 \
    >"$work/$tag-send.out" 2>&1 || fail "$tag: the sender exited with an error: $(cat "$work/$tag-send.out")"
  wait "$recv_pid" || fail "$tag: the receiver exited with an error"
  echo "  $tag: $(cat "$work/$tag-recv.out"); nftables drops at h2: $(tmcnet_loss_dropped 2) [$(ms) ms]"
}

# socat_phase TAG shim|plain — "line 1".."line $count" from h1's socat to h2's; prints the
# lines h2 wrote and how many are missing or out of place.
socat_phase() {
  local tag=$1 mode=$2 recv_pid prefix
  if [ "$mode" = shim ]; then loss_at_h2 "$channel_port"; else loss_at_h2 "$app_port"; fi
  on 2 "$mode"
  tmcnet_bg 2 "${prefix[@]}" socat -u UDP4-RECV:$app_port "OPEN:$work/$tag.txt,creat,trunc"
  recv_pid=$TMCNET_LAST_PID
  sleep 0.3
  on 1 "$mode"
  "$PY" -c "
import sys, time
for i in range(1, $count + 1):
    sys.stdout.write('line %d\n' % i); sys.stdout.flush(); time.sleep(1.0 / $rate)
" | tmcnet_exec 1 "${prefix[@]}" socat -u - UDP4-SENDTO:"$h2":$app_port || fail "$tag: the socat sender failed"
  # Wait until every line is there, or nothing more came for half a second.
  local n=0 last=-1 still=0
  while [ $still -lt 10 ]; do
    n=$(wc -l <"$work/$tag.txt" 2>/dev/null || echo 0)
    [ "$n" -ge $count ] && break
    if [ "$n" -eq "$last" ]; then still=$((still + 1)); else still=0; fi
    last=$n
    sleep 0.05
  done
  kill "$recv_pid" 2>/dev/null || true
  wait "$recv_pid" 2>/dev/null || true
  n=$(grep -c '^line [0-9]*$' "$work/$tag.txt" || true)
  if seq 1 $count | sed 's/^/line /' | cmp -s - "$work/$tag.txt"; then
    echo "  $tag: socat wrote all $count lines in order; nftables drops at h2: $(tmcnet_loss_dropped 2) [$(ms) ms]"
    socat_ok=yes
  else
    echo "  $tag: socat wrote $n whole lines of $count (not the exact sequence); nftables drops at h2: $(tmcnet_loss_dropped 2) [$(ms) ms]"
    socat_ok=no
  fi
}

echo "1. plain socket program, 5% loss at h2"
python_phase plain-socket udp_numbers.py plain
python_phase shim-socket udp_numbers.py shim
g=$(got_of "$work/plain-socket-recv.out")
[ -n "$g" ] && [ "$g" -lt $count ] || fail "without the shim nothing was lost: is the loss rule working?"
grep -Eq "^recv: got $count distinct of max $count, duplicates 0, reordered 0, from $h1:[0-9]+$" \
  "$work/shim-socket-recv.out" || fail "with the shim: $(cat "$work/shim-socket-recv.out")"
echo "  without the shim: $g of $count; with it: $(got_of "$work/shim-socket-recv.out") of $count, reordered $(reordered_of "$work/shim-socket-recv.out")"

echo "2. asyncio program, 5% loss at h2"
python_phase plain-asyncio udp_numbers_asyncio.py plain
python_phase shim-asyncio udp_numbers_asyncio.py shim
grep -Eq "^recv: got $count distinct of max $count, duplicates 0, reordered 0, from $h1:[0-9]+$" \
  "$work/shim-asyncio-recv.out" || fail "asyncio with the shim: $(cat "$work/shim-asyncio-recv.out")"
grep -Eq "^send: sent $count, echoes $count$" "$work/shim-asyncio-send.out" ||
  fail "asyncio sender with the shim: $(cat "$work/shim-asyncio-send.out")"
echo "  without the shim: $(got_of "$work/plain-asyncio-recv.out") of $count; with it: $(got_of "$work/shim-asyncio-recv.out") of $count"

echo "3. socat, 5% loss at h2"
socat_phase plain-socat plain
[ "$socat_ok" = no ] || fail "socat without the shim lost nothing: is the loss rule working?"
socat_phase shim-socat shim
[ "$socat_ok" = yes ] || fail "socat with the shim lost or reordered lines"

[ $rc -eq 0 ] && echo "PASS: under 5% loss the unmodified programs lose datagrams over plain UDP and none, in order, over the shim's reliable ordered channel"
exit $rc
