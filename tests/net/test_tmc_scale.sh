#!/usr/bin/env bash
# A small run of the group-size benchmark (bench/scale/scale-netns.sh): one sender and 19
# receiving processes, several per namespace, 1% loss at every receiving namespace; every
# receiver must deliver every message exactly once, at 3 members and at 20 (the reliable
# variant alone, to keep it short: SCALE_VARIANTS="reliable reliable-coalesced" adds the
# coalesced one, about twice the time).
#
# usage: test_tmc_scale.sh <path to tmc_net_member>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export SCALE_MEMBERS="${SCALE_MEMBERS:-3 20}" SCALE_COUNT="${SCALE_COUNT:-1000}" SCALE_PER_HOST="${SCALE_PER_HOST:-5}"
export SCALE_VARIANTS="${SCALE_VARIANTS:-reliable}" SCALE_LINGER_S="${SCALE_LINGER_S:-2}"
exec bash "$here/../../bench/scale/scale-netns.sh" "$@"
