#!/usr/bin/env bash
# Job-array shards of one cached campaign (JOBLET_SHARD=k/K, as SLURM_ARRAY_* would give):
# each shard computes its part and exits 0; `joblet status` shows the progress; the last shard
# assembles the whole result, identical to an uncached run; JOBLET_SHARD=static takes the shard
# from SLURM_ARRAY_*, and outside an array warns and runs whole calls; a malformed JOBLET_SHARD
# is an error.
# Usage: shards.sh SWEEP JOBLET [LAUNCHER...]
set -uo pipefail
sweep=$1 joblet=$2
shift 2
launcher=("$@")
cache=$(mktemp -d /tmp/joblet-shards-XXXXXX)
trap 'rm -rf "$cache"' EXIT
args=(--size 16 --temperatures 12 --sweeps 2000 --verbose 0 --cache "$cache/cache")
fail() { echo "FAIL: $*" >&2; exit 1; }

for k in 0 1; do
  JOBLET_SHARD=$k/3 "${launcher[@]}" "$sweep" "${args[@]}" >"$cache/out-$k" 2>"$cache/err-$k" || fail "shard $k exited $?: $(cat "$cache/err-$k")"
  [[ -s $cache/out-$k ]] && fail "shard $k printed a table before every shard was done"
  grep -q "shard $k of 3 done (4 tasks)" "$cache/err-$k" || fail "shard $k did not say what it did: $(cat "$cache/err-$k")"
done
status=$("$joblet" status --dir "$cache/cache"); code=$?
echo "$status"
((code == 3)) || fail "joblet status exited $code while tasks are missing"
grep -Eq "^ising\.simulate-[0-9a-f]{8} +12 +8 +4 " <<<"$status" || fail "status does not show 8 of 12 done"

JOBLET_SHARD=2/3 "${launcher[@]}" "$sweep" "${args[@]}" >"$cache/out-2" 2>"$cache/err-2" || fail "the last shard exited $?"
"$joblet" status --dir "$cache/cache" >/dev/null || fail "joblet status should exit 0 once the campaign is complete"
"${launcher[@]}" "$sweep" "${args[@]/$cache\/cache/$cache/none}" --no-cache >"$cache/reference" 2>/dev/null
cmp -s "$cache/reference" "$cache/out-2" || fail "the assembled table differs from an uncached run"

# static: element 1 of a 3-element array takes shard 1 of 3 (the campaign is complete, so it then
# returns the whole table); outside an array, a warning that says what to do, and whole calls.
JOBLET_SHARD=static SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_COUNT=3 JOBLET_LOG_LEVEL=info \
  "$sweep" "${args[@]}" >"$cache/out-static" 2>"$cache/err-static" || fail "the static array element exited $?"
grep -q "shard 1 of 3 computes 4 of its 12 tasks" "$cache/err-static" ||
  fail "JOBLET_SHARD=static did not take shard 1 of 3 from SLURM_ARRAY_*: $(cat "$cache/err-static")"
cmp -s "$cache/reference" "$cache/out-static" || fail "the static array element's table differs from an uncached run"
env -u SLURM_ARRAY_TASK_ID JOBLET_SHARD=static "$sweep" "${args[@]}" >"$cache/out-static" 2>"$cache/err-static" ||
  fail "JOBLET_SHARD=static outside an array exited $?"
grep -q "JOBLET_SHARD=static, but this process is no job-array element.*sbatch --array" "$cache/err-static" ||
  fail "no clear warning for JOBLET_SHARD=static outside an array: $(cat "$cache/err-static")"
cmp -s "$cache/reference" "$cache/out-static" || fail "JOBLET_SHARD=static outside an array printed another table"

JOBLET_SHARD=3/3 "$sweep" "${args[@]}" >/dev/null 2>"$cache/err-bad" && fail "JOBLET_SHARD=3/3 was accepted"
grep -q "JOBLET_SHARD='3/3' is not valid" "$cache/err-bad" || fail "no clear error for JOBLET_SHARD=3/3"
for bad in 1/3x 1x/3 0/2/5 -1/3; do
  JOBLET_SHARD=$bad "$sweep" "${args[@]}" >/dev/null 2>"$cache/err-bad" && fail "JOBLET_SHARD=$bad was accepted"
  grep -q "JOBLET_SHARD='$bad' is not valid: write k/K" "$cache/err-bad" || fail "no clear error for JOBLET_SHARD=$bad"
done
echo "ok: 3 shards, status tracked, the last shard assembled the uncached result"
