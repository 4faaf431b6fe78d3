#!/usr/bin/env bash
# tmc's refusals name what is wrong: the unknown subcommand (and the known ones), a
# directory given as a manifest, nesting too deep for the YAML parser.
# Usage: test_refusals.sh PATH/TO/tmc SOURCE_DIR
set -u
tmc=$1
src=$2
failures=0

# expect NAME WANT_RC WANT_STDERR_SUBSTRING -- ARGS...
expect() {
  local name=$1 want_rc=$2 want=$3
  shift 4
  local err rc
  err=$("$tmc" "$@" 2>&1 >/dev/null)
  rc=$?
  if [[ $rc -ne $want_rc ]]; then
    echo "FAIL $name: exit $rc, want $want_rc; stderr: $err"
    failures=$((failures + 1))
  elif [[ $err != *"$want"* ]]; then
    echo "FAIL $name: stderr lacks \"$want\": $err"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

expect "unknown subcommand is named" 2 "unknown subcommand 'frobnicate'" -- frobnicate
expect "known subcommands are listed" 2 "(known: plan, check," -- frobnicate x
expect "plan of a directory" 1 "$src: is a directory, not a file" -- plan "$src"
expect "check of a directory" 1 "$src: is a directory, not a file" -- check "$src"
expect "plan of a missing file" 1 "cannot open file" -- plan "$src/no-such-manifest.yaml"
expect "nesting too deep" 1 "bad-deep-nesting.yaml:3:" -- plan "$src/tests/manifests/bad-deep-nesting.yaml"
expect "nesting too deep names the limit" 1 "nesting deeper than 32 levels" -- \
  plan "$src/tests/manifests/bad-deep-nesting.yaml"
expect "a good manifest still plans" 0 "" -- plan "$src/tests/manifests/unicast-explicit.yaml"

if [[ $failures -ne 0 ]]; then
  echo "$failures failure(s)"
  exit 1
fi
