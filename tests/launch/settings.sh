#!/usr/bin/env bash
# The settings catalogue is the one list of JOBLET_* variables: `joblet info` prints it, the README's
# table matches it, every variable the sources read is in it; Session rejects a malformed value by
# name before anything runs and warns about an unknown JOBLET_* name.
# Usage: settings.sh SOURCE_DIR JOBLET SWEEP
set -uo pipefail
source_dir=$1 joblet=$2 sweep=$3
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/joblet-settings-XXXXXX)
trap 'rm -rf "$work"' EXIT

"$joblet" info --dir "$work" >"$work/info" || fail "joblet info exited $?"
catalogue=$(grep -oE '^  JOBLET_[A-Z_]+' "$work/info" | tr -d ' ' | sort -u)
[[ -n $catalogue ]] || fail "joblet info lists no settings: $(cat "$work/info")"
readme=$(grep -oE '^\| `JOBLET_[A-Z_]+`' "$source_dir/README.md" | grep -oE 'JOBLET_[A-Z_]+' | sort -u)
[[ $catalogue == "$readme" ]] || fail "the README's table differs from the catalogue: $(diff <(echo "$catalogue") <(echo "$readme"))"
# Every variable the library reads by name (macros and CMake options are not variables it reads).
read_by_sources=$(grep -rhoE '"JOBLET_[A-Z_]+"' "$source_dir"/{core,engine,storage,launch,mpi_backend} --include='*.cpp' \
  | tr -d '"' | sort -u | grep -vx 'JOBLET_VERSION_STRING')
missing=$(comm -23 <(echo "$read_by_sources") <(echo "$catalogue"))
[[ -z $missing ]] || fail "read by the sources but not in the catalogue: $missing"

args=(--size 8 --temperatures 2 --sweeps 10 --verbose 0 --no-cache)
JOBLET_LOG_LEVEL=loud "$sweep" "${args[@]}" >"$work/out" 2>"$work/err" && fail "JOBLET_LOG_LEVEL=loud was accepted"
grep -q "JOBLET_LOG_LEVEL='loud' is not valid: use trace, debug" "$work/err" || fail "no clear error: $(cat "$work/err")"
[[ -s $work/out ]] && fail "the program ran despite a malformed setting"

JOBLET_MPI_LOST_AFTER=-1 "$sweep" "${args[@]}" >"$work/out" 2>"$work/err" && fail "JOBLET_MPI_LOST_AFTER=-1 was accepted"
grep -q "JOBLET_MPI_LOST_AFTER='-1' is not valid: give whole seconds" "$work/err" || fail "no clear error: $(cat "$work/err")"

JOBLET_ELASTIC=yes "$sweep" "${args[@]}" >"$work/out" 2>"$work/err" && fail "JOBLET_ELASTIC=yes was accepted"
grep -q "JOBLET_ELASTIC='yes' is not valid: use on (processes running the same campaign share it) or off" "$work/err" ||
  fail "no clear error: $(cat "$work/err")"

JOBLET_NJOBS=2 "$sweep" "${args[@]}" >"$work/out" 2>"$work/err" || fail "an unknown JOBLET_ name stopped the program: $(cat "$work/err")"
grep -q "JOBLET_NJOBS is set but joblet has no such variable (did you mean JOBLET_N_JOBS?)" "$work/err" ||
  fail "no warning about JOBLET_NJOBS: $(cat "$work/err")"
echo "ok: $(wc -l <<<"$catalogue") settings, README and sources agree; malformed rejected, unknown warned"
