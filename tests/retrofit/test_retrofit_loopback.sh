#!/usr/bin/env bash
# Retrofit on loopback (no root needed): unmodified programs — a plain-socket Python
# program, an asyncio one and Debian's socat — run under `tmc run` with a reliable, ordered
# manifest whose fault stage drops 5% of every member's datagrams. Every datagram must
# arrive once and in order, and the address a receiver reads back must be the sender's.
# Then: a socket the manifest does not name stays plain UDP, and a rewired port is not a
# kernel UDP port (a datagram sent there without the shim is not received). A program's
# own multicast group (IP_ADD_MEMBERSHIP, sendto the group) is carried too;
# `unicast: fan-out`: the same bytes sent to two peers leave as one multicast; after
# fork() the child cannot send on an inherited rewired socket but can on its own.
#
# usage: test_retrofit_loopback.sh <path to the tmc tool>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmc=${1:?usage: $0 <tmc tool>}
PY=${PYTHON:-/usr/bin/python3}
command -v socat >/dev/null 2>&1 || { echo "SKIP: socat is not installed (scripts/install-deps.sh installs it)" >&2; exit 77; }
manifest=$here/loopback-reliable.yaml
port=47591
count=600
work=$(mktemp -d "${TMPDIR:-/tmp}/tmc-retrofit.XXXXXX")
pids=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
rc=0
fail() { echo "FAIL: $*" >&2; rc=1; }
start=$(date +%s%N)
elapsed() { echo "  ($(( ($(date +%s%N) - start) / 1000000 )) ms so far)"; }

wait_file() {
  local i=0
  while [ ! -s "$1" ]; do
    i=$((i + 1))
    [ $i -lt 200 ] || { echo "FAIL: $1 never appeared" >&2; exit 1; }
    sleep 0.05
  done
}

# expect_line FILE REGEX WHAT
expect_line() {
  grep -Eq "$2" "$1" || fail "$3: expected /$2/ in: $(cat "$1")"
}

# --- 1. plain socket + selectors ---------------------------------------------------------
echo "1. udp_numbers.py (socket + selectors), $count datagrams, 5% injected loss, echoes"
"$tmc" run --manifest "$manifest" -- "$PY" "$here/udp_numbers.py" recv $port --echo --ready "$work/r1" \
  >"$work/recv1.out" 2>&1 &
pids+=("$!")
wait_file "$work/r1"
"$tmc" run --manifest "$manifest" -- "$PY" "$here/udp_numbers.py" send 127.0.0.1 $port --count $count \
  --rate 5000 --echo --my-ip 127.0.0.1 >"$work/send1.out" 2>&1 || fail "the sender exited with an error"
wait "${pids[-1]}" || fail "the receiver exited with an error"
sed 's/^/  /' "$work/send1.out" "$work/recv1.out"
expect_line "$work/recv1.out" "^recv: got $count distinct of max $count, duplicates 0, reordered 0, from 127\.0\.0\.1:[0-9]+$" \
  "plain receiver"
expect_line "$work/send1.out" "^send: sent $count, echoes $count, address ok" "plain sender"

elapsed
# --- 2. asyncio datagram endpoints -------------------------------------------------------
echo "2. udp_numbers_asyncio.py (asyncio datagram endpoints, connected sender)"
"$tmc" run --manifest "$manifest" -- "$PY" "$here/udp_numbers_asyncio.py" recv $port --ready "$work/r2" \
  >"$work/recv2.out" 2>&1 &
pids+=("$!")
wait_file "$work/r2"
"$tmc" run --manifest "$manifest" -- "$PY" "$here/udp_numbers_asyncio.py" send 127.0.0.1 $port --count $count \
  --rate 5000 >"$work/send2.out" 2>&1 || fail "the asyncio sender exited with an error"
wait "${pids[-1]}" || fail "the asyncio receiver exited with an error"
sed 's/^/  /' "$work/send2.out" "$work/recv2.out"
expect_line "$work/recv2.out" "^recv: got $count distinct of max $count, duplicates 0, reordered 0, from 127\.0\.0\.1:[0-9]+$" \
  "asyncio receiver"
expect_line "$work/send2.out" "^send: sent $count, echoes $count$" "asyncio sender"

elapsed
# --- 3. socat ------------------------------------------------------------------------------
echo "3. socat UDP4-SENDTO -> socat UDP4-RECV, $count lines"
"$tmc" run --manifest "$manifest" -- socat -u UDP4-RECV:$port "OPEN:$work/socat.txt,creat,trunc" 2>"$work/socat-recv.err" &
recv_pid=$!
pids+=("$recv_pid")
"$PY" -c "
import sys, time
for i in range(1, $count + 1):
    sys.stdout.write('line %d\n' % i); sys.stdout.flush(); time.sleep(0.0002)
" | "$tmc" run --manifest "$manifest" -- socat -u - UDP4-SENDTO:127.0.0.1:$port 2>"$work/socat-send.err" ||
  fail "the socat sender exited with an error: $(cat "$work/socat-send.err")"
for _ in $(seq 1 100); do
  [ "$(wc -l <"$work/socat.txt" 2>/dev/null || echo 0)" -ge $count ] && break
  sleep 0.05
done
kill $recv_pid 2>/dev/null || true
wait $recv_pid 2>/dev/null || true
got=$(wc -l <"$work/socat.txt")
echo "  socat receiver wrote $got of $count lines"
seq 1 $count | sed 's/^/line /' | cmp -s - "$work/socat.txt" || fail "socat: the lines differ from 'line 1'..'line $count' ($got lines)"

elapsed
# --- 4. what is not rewired --------------------------------------------------------------
echo "4. a socket the manifest does not name stays plain UDP; a rewired port is not a kernel port"
other=$((port + 7))
socat -u UDP4-RECV:$other "OPEN:$work/plain.txt,creat,trunc" &
plain_pid=$!
pids+=("$plain_pid")
sleep 0.3
echo "plain hello" | "$tmc" run --manifest "$manifest" -- socat -u - UDP4-SENDTO:127.0.0.1:$other
for _ in $(seq 1 40); do [ -s "$work/plain.txt" ] && break; sleep 0.05; done
kill $plain_pid 2>/dev/null || true
wait $plain_pid 2>/dev/null || true
if [ "$(cat "$work/plain.txt" 2>/dev/null)" = "plain hello" ]; then
  echo "  unnamed destination: delivered by plain UDP"
else
  fail "a datagram to a port the manifest does not name did not arrive over plain UDP"
fi
"$tmc" run --manifest "$manifest" -- "$PY" "$here/udp_numbers.py" recv $port --first 1.5 --ready "$work/r4" \
  >"$work/recv4.out" 2>&1 &
pids+=("$!")
wait_file "$work/r4"
"$PY" "$here/udp_numbers.py" send 127.0.0.1 $port --count 20 >/dev/null
wait "${pids[-1]}" || true
sed 's/^/  without the shim at the sender: /' "$work/recv4.out"
expect_line "$work/recv4.out" "^recv: got 0 distinct" "rewired port reached by plain UDP"

elapsed
# --- 5. a program's own multicast group --------------------------------------------------
echo "5. two receivers join 239.77.9.5 (IP_ADD_MEMBERSHIP), the sender sends to the group"
for i in 1 2; do
  "$tmc" run --manifest "$manifest" -- "$PY" "$here/udp_numbers.py" recv 47597 --join 239.77.9.5 \
    --ready "$work/m$i" >"$work/mcast$i.out" 2>&1 &
  pids+=("$!")
done
wait_file "$work/m1"
wait_file "$work/m2"
sleep 0.5  # the sender's membership view has both receivers (it waits for one)
"$tmc" run --manifest "$manifest" -- "$PY" "$here/udp_numbers.py" send 239.77.9.5 47597 --count 200 --rate 5000 \
  >"$work/mcast-send.out" 2>&1 || fail "the multicast sender failed: $(cat "$work/mcast-send.out")"
wait "${pids[-1]}" "${pids[-2]}" || true
sed 's/^/  /' "$work/mcast1.out" "$work/mcast2.out"
for i in 1 2; do
  expect_line "$work/mcast$i.out" "^recv: got 200 distinct of max 200, duplicates 0, reordered 0," "group receiver $i"
done
elapsed
# --- 6. fan-out -----------------------------------------------------------------------
echo "6. unicast: fan-out — the same bytes to two peers leave as one multicast"
fanout=$here/loopback-fanout.yaml
for p in 47595 47596; do
  "$tmc" run --manifest "$fanout" -- "$PY" "$here/udp_numbers.py" recv $p --ready "$work/f$p" >"$work/fan$p.out" 2>&1 &
  pids+=("$!")
done
wait_file "$work/f47595"
wait_file "$work/f47596"
sleep 0.3  # both members joined before the first send (best effort: no membership wait)
TMC_RETROFIT_VERBOSE=1 "$tmc" run --manifest "$fanout" -- "$PY" -c "
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(1, 201):
    for port in (47595, 47596):
        s.sendto(b'seq %d' % i, ('127.0.0.1', port))
    time.sleep(0.0005)
s.close()
" 2>"$work/fan-send.err" || fail "the fan-out sender failed: $(cat "$work/fan-send.err")"
wait "${pids[-1]}" "${pids[-2]}" || true
sed 's/^/  /' "$work/fan47595.out" "$work/fan47596.out" "$work/fan-send.err"
for p in 47595 47596; do
  expect_line "$work/fan$p.out" "^recv: got 200 distinct of max 200, duplicates 0, reordered 0," "fan-out receiver $p"
done
expect_line "$work/fan-send.err" "sent 200 \(absorbed by fan-out 200\)" "fan-out sender"
elapsed
# --- 7. fork -----------------------------------------------------------------------------
echo "7. after fork(): the child's sends on an inherited rewired socket fail; its own socket works"
"$tmc" run --manifest "$manifest" -- "$PY" "$here/udp_numbers.py" recv $port --ready "$work/r7" \
  >"$work/recv7.out" 2>&1 &
pids+=("$!")
wait_file "$work/r7"
"$tmc" run --manifest "$manifest" -- "$PY" -c "
import os, socket
dst = ('127.0.0.1', $port)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b'seq 1', dst)
pid = os.fork()
if pid == 0:
    try:
        s.sendto(b'seq 2', dst)
        print('child: inherited socket sent')
    except OSError as e:
        print('child: inherited socket: errno', e.errno)
    s.close()
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.sendto(b'seq 4', dst)
    c.close()
    os._exit(0)
os.waitpid(pid, 0)
s.sendto(b'seq 3', dst)
s.close()
" >"$work/fork.out" 2>&1 || fail "the forking program failed: $(cat "$work/fork.out")"
wait "${pids[-1]}" || true
sed 's/^/  /' "$work/fork.out" "$work/recv7.out"
expect_line "$work/fork.out" "^child: inherited socket: errno $("$PY" -c 'import errno; print(errno.EOPNOTSUPP)')$" "fork: inherited socket"
expect_line "$work/recv7.out" "^recv: got 3 distinct of max 4, duplicates 0," "fork: receiver (seq 1, 3 and 4)"
elapsed
[ $rc -eq 0 ] && echo "PASS: plain-socket, asyncio and socat programs ran unmodified over a reliable ordered channel (5% injected loss): nothing lost, duplicated or reordered; peer addresses real; other sockets untouched; fan-out sends one multicast per datagram; fork handled"
exit $rc
