#!/usr/bin/env bash
# A secured channel (`security: encrypt`) across namespaces with an outsider blasting it.
#
# h1 sends 2000 reliable, ordered messages of 1400 bytes (fragmented) to h2; h3 holds no key and, for the
# whole run, replays what it captures of the members' datagrams, tampers with them,
# truncates them, puts random sender ids on them and sends junk behind valid headers
# (tests/net/outsider.py). h2 must deliver every message of h1 exactly once, in order, and
# nothing else; its peak resident memory is printed and must stay under a bound.
#
# usage: test_tmc_security.sh <path to tmc_net_member>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=netns.sh
source "$here/netns.sh"
member=${1:?usage: $0 <tmc_net_member>}
[ -x "$member" ] || { echo "FAIL: $member is not executable" >&2; exit 1; }
tmcnet_require
tmcnet_setup

PY=${PYTHON:-/usr/bin/python3}
COUNT=2000
RATE=1000
SIZE=1400
MAX_RSS_KB=262144
GROUP=239.77.1.12
PORT=47496
work=$(mktemp -d "${TMPDIR:-/tmp}/tmc-net-sec.XXXXXX")
TMCNET_CLEANUP_DIRS=("$work")
rc=0

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | sed 's/^/1 /' >"$work/group.keys"
echo >>"$work/group.keys"
chmod 600 "$work/group.keys"
cat >"$work/secure.yaml" <<YAML
id: net-secure
members: [h1, h2]
group: $GROUP
port: $PORT
interface: tmc0
reliability: true
point-to-point ordering: strict
max message bytes: 8192
security: encrypt
key file: $work/group.keys
YAML

tmcnet_bg 2 "$member" --manifest "$work/secure.yaml" --name h2 --receive 40 --idle 4 \
  --log "$work/h2.log" --ready "$work/h2.ready" --counters security.,drops. >"$work/h2.out" 2>&1
h2=$TMCNET_LAST_PID
tmcnet_bg 3 "$PY" "$here/outsider.py" --group $GROUP --port $PORT --iface-addr "$(tmcnet_ip 3)" \
  --duration 8 --ready "$work/h3.ready" >"$work/h3.out" 2>&1
h3=$TMCNET_LAST_PID
tmcnet_wait_files "$work/h2.ready" "$work/h3.ready"
tmcnet_bg 1 "$member" --manifest "$work/secure.yaml" --name h1 --send $COUNT --rate $RATE --size $SIZE \
  --wait-members 1 --outcomes 1 >"$work/h1.out" 2>&1
h1=$TMCNET_LAST_PID
for p in "$h1" "$h2"; do
  if ! wait "$p"; then
    echo "FAIL: a member exited with an error (for the sender: an outcome was not met)" >&2
    rc=1
  fi
done
wait "$h3" || true
sed 's/^/  /' "$work/h1.out" "$work/h2.out" "$work/h3.out"

"$PY" "$here/check_log.py" "$work/h2.log" --sender h1 --count $COUNT --max-loss 0 --in-order || rc=1
others=$(awk '$1 != "h1"' "$work/h2.log" | wc -l)
if [ "$others" -ne 0 ]; then
  echo "FAIL: h2 delivered $others messages not from h1" >&2
  rc=1
fi
auth=$(sed -n 's/^h2: counter drops.auth //p' "$work/h2.out")
if [ -z "$auth" ] || [ "$auth" -eq 0 ]; then
  echo "FAIL: h2 dropped nothing as drops.auth: the outsider's datagrams did not arrive" >&2
  rc=1
fi
rss=$(sed -n 's/^h2: peak rss kB //p' "$work/h2.out")
echo "  h2 peak resident memory: ${rss:-?} kB (bound $MAX_RSS_KB kB), drops.auth: ${auth:-?}"
if [ -z "$rss" ] || [ "$rss" -gt $MAX_RSS_KB ]; then
  echo "FAIL: h2's peak resident memory ${rss:-unknown} kB is over $MAX_RSS_KB kB" >&2
  rc=1
fi

if [ $rc -eq 0 ]; then
  echo "PASS: with an outsider replaying, tampering, truncating and forging, h2 delivered every message of h1 once, in order, and nothing else"
fi
exit $rc
