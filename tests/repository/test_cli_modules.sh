#!/usr/bin/env bash
# `tmc modules`: keygen, sign, verify, list, info end to end in a scratch directory, and
# what an operator sees for each refusal (exit 1 and the step, file and module named).
# Usage: test_cli_modules.sh PATH/TO/tmc PATH/TO/any-shared-object.so PATH/TO/tally.so
set -u
tmc=$1
object=$2
tally=$3
failures=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
repo=$work/repo
state=$work/state.yaml

# expect NAME WANT_RC WANT_OUTPUT_SUBSTRING -- ARGS...   (stdout and stderr together)
expect() {
  local name=$1 want_rc=$2 want=$3
  shift 4
  local out rc
  out=$("$tmc" "$@" 2>&1)
  rc=$?
  if [[ $rc -ne $want_rc ]]; then
    echo "FAIL $name: exit $rc, want $want_rc; output: $out"
    failures=$((failures + 1))
  elif [[ $out != *"$want"* ]]; then
    echo "FAIL $name: output lacks \"$want\": $out"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

mkdir -p "$repo/lib"
cp "$object" "$repo/lib/fixture.so"
cat >"$repo/index.yaml" <<'YAML'
format: 1
repository: "cli"
modules:
  - name: fixture
    version: "1.0.0"
    abi: 1
    file: lib/fixture.so
    stages: [fixture.noop]
YAML

expect "keygen writes a key and a trust file" 0 "trusted in $work/trust.yaml" -- \
  modules keygen --out "$work/k1" --trust "$work/trust.yaml"
if [[ $(stat -c %a "$work/k1") != 600 ]]; then
  echo "FAIL keygen: the secret key file is mode $(stat -c %a "$work/k1"), want 600"
  failures=$((failures + 1))
fi
expect "keygen never overwrites a key" 1 "never overwritten" -- modules keygen --out "$work/k1"
expect "keygen prints a trust entry" 0 "ed25519:" -- modules keygen --out "$work/k2"
expect "sign fills in digests, version 1" 0 "repository 'cli' version 1, 1 module(s)" -- \
  modules sign "$repo" --key "$work/k1"
expect "sign rejects a bad duration" 1 "--expires '3w': want a duration like 30d" -- \
  modules sign "$repo" --key "$work/k1" --expires 3w
expect "verify passes every step" 0 "verified: repository 'cli' version 1, 1 module(s)" -- \
  modules verify "$repo" --trust "$work/trust.yaml" --state "$state"
expect "verify prints the digest step" 0 "ok    digest: fixture 1.0.0 (lib/fixture.so)" -- \
  modules verify "$repo" --trust "$work/trust.yaml" --state "$state"
expect "list shows the module" 0 "fixture  1.0.0  abi 1  stages: fixture.noop  controllers: -" -- \
  modules list "$repo" --trust "$work/trust.yaml" --state "$state"
expect "info of an object that is no module names the loader's step" 1 "entry point: no symbol 'tmc_module_entry'" -- \
  modules info fixture --repo "$repo" --trust "$work/trust.yaml" --state "$state"
if [[ -f $tally ]]; then
  mkdir -p "$work/tally-repo"
  cp "$tally" "$work/tally-repo/tally.so"
  printf 'format: 1\nrepository: "cli-tally"\nmodules:\n  - name: tally\n    version: "1.0.0"\n    abi: 1\n    file: tally.so\n    stages: [tally.count]\n    controllers: [fixed]\n' \
    >"$work/tally-repo/index.yaml"
  "$tmc" modules sign "$work/tally-repo" --key "$work/k1" >/dev/null
  expect "info shows a module's parameters" 0 '| `fault_after` | int | `0` |' -- \
    modules info tally --repo "$work/tally-repo" --trust "$work/trust.yaml" --state "$state"
  expect "info shows a module's counters" 0 '| `tally.count.sent` |' -- \
    modules info tally --repo "$work/tally-repo" --trust "$work/trust.yaml" --state "$state"
  printf 'id: repo-plan\nmodules: [tally]\nstages: {tally.count: {}}\n' >"$work/plan.yaml"
  expect "plan loads the manifest's modules from the repository" 0 "module tally 1.0.0, sha256" -- \
    plan "$work/plan.yaml" --repo "$work/tally-repo" --trust "$work/trust.yaml" --state "$state"
  expect "plan --repo needs --trust" 2 "--repo requires --trust" -- plan "$work/plan.yaml" --repo "$work/tally-repo"
  printf '\n' >>"$work/tally-repo/tally.so"
  expect "plan refuses a tampered module" 1 "refused at step 'digest' for module 'tally'" -- \
    plan "$work/plan.yaml" --repo "$work/tally-repo" --trust "$work/trust.yaml" --state "$state"
else
  echo "FAIL the tally test module is not at $tally"
  failures=$((failures + 1))
fi
expect "info of an unknown module" 1 "refused at step 'index' for module 'nope'" -- \
  modules info nope --repo "$repo" --trust "$work/trust.yaml" --state "$state"

# Rollback: keep version 1, sign version 2, verify it, then put version 1 back.
cp "$repo/index.yaml" "$work/v1.yaml"
cp "$repo/index.yaml.sig" "$work/v1.sig"
expect "sign --version" 0 "version 2," -- modules sign "$repo" --key "$work/k1" --version 2
expect "version 2 verifies" 0 "verified" -- modules verify "$repo" --trust "$work/trust.yaml" --state "$state"
cp "$work/v1.yaml" "$repo/index.yaml"
cp "$work/v1.sig" "$repo/index.yaml.sig"
expect "a rolled-back index is refused" 1 "refused at step 'rollback': repository 'cli' is at version 1, older than version 2" -- \
  modules verify "$repo" --trust "$work/trust.yaml" --state "$state"
expect "the passed steps are still printed" 1 "ok    expiry: valid until" -- \
  modules verify "$repo" --trust "$work/trust.yaml" --state "$state"
expect "re-signing moves past it" 0 "version 3," -- modules sign "$repo" --key "$work/k1" --version 3

"$tmc" modules sign "$repo" --key "$work/k2" >/dev/null
expect "an index signed by a key not in the trust file" 1 "refused at step 'trust': the index is signed by key" -- \
  modules verify "$repo" --trust "$work/trust.yaml" --state "$state"
"$tmc" modules sign "$repo" --key "$work/k1" >/dev/null

sed -i 's/^version: .*/version: 99/' "$repo/index.yaml"
expect "a tampered index is refused" 1 "refused at step 'signature': bad signature" -- \
  modules verify "$repo" --trust "$work/trust.yaml" --state "$state"
"$tmc" modules sign "$repo" --key "$work/k1" --version 100 >/dev/null

# Flip the low bit of one byte in the middle of the object.
offset=$(( $(stat -c %s "$repo/lib/fixture.so") / 2 ))
byte=$(od -An -tu1 -j "$offset" -N1 "$repo/lib/fixture.so" | tr -d ' ')
printf "\\$(printf %03o $((byte ^ 1)))" | dd of="$repo/lib/fixture.so" bs=1 seek="$offset" conv=notrunc status=none
expect "a tampered object is refused" 1 "refused at step 'digest' for module 'fixture': digest mismatch" -- \
  modules verify "$repo" --trust "$work/trust.yaml" --state "$state"
rm "$repo/lib/fixture.so"
expect "a missing object is refused" 1 "refused at step 'file' for module 'fixture'" -- \
  modules verify "$repo" --trust "$work/trust.yaml" --state "$state"
rm "$repo/index.yaml.sig"
expect "an unsigned index is refused" 1 "refused at step 'signature': the index is unsigned" -- \
  modules verify "$repo" --trust "$work/trust.yaml" --state "$state"
expect "modules needs a subcommand" 2 "" -- modules

if [[ $failures -ne 0 ]]; then
  echo "$failures failure(s)"
  exit 1
fi
