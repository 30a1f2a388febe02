#!/usr/bin/env bash
# A job array sharding one campaign (slurm/templates/array.sbatch, 4 elements) and the dependent
# assembly job (assemble.sbatch, afterok): each element computes its quarter of the tasks into
# the shared cache; `joblet status` then shows the campaign complete; the assembly job computes
# nothing and prints exactly the table of a sequential run.
# Usage: tests/slurm/array.sh ISING_SWEEP JOBLET (wraps itself in with-cluster when needed)
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
ensure_cluster "$(realpath "$0")" "$@"
begin_scenario array "$@"
args=(--size 16 --temperatures 16 --sweeps 5000 --verbose 0)
tasks=16
elements=4
export JOBLET_CACHE_DIR=$work/cache
# info: each element logs which shard it computes ("campaign ...: shard k of K computes ...").
export JOBLET_LOG_LEVEL=info

"$sweep" "${args[@]}" --backend sequential --no-cache >reference.txt 2>reference.err ||
  { fail "the sequential reference run failed"; show reference.err; }
pass "sequential reference"

# One CPU per element, so that the 4 elements run at once on the 4-CPU test node.
# Static shards (JOBLET_SHARD=static, exported to the elements); the default, dynamic mode, is
# tested in tests/launch/elastic.sh and tests/cluster/elastic.sh.
array=$(JOBLET_SHARD=static sbatch --parsable --array=0-$((elements - 1)) --cpus-per-task=1 -o "$work/array-%A_%a.out" \
  -e "$work/array-%A_%a.err" "$templates/array.sbatch" "$sweep" "${args[@]}") || fail "sbatch of array.sbatch failed"
# Held, so that the cache can be inspected between the array and the assembly; released below.
assemble=$(sbatch --parsable --hold --dependency="afterok:$array" -o "$work/assemble-%j.out" \
  -e "$work/assemble-%j.err" "$templates/assemble.sbatch" "$sweep" "${args[@]}") || fail "sbatch of assemble.sbatch failed"
wait_for_job "$array" 120

# Every element: status 0, and it computed its own shard only. The element that finished last
# may have found the campaign complete and printed the full table; the others end after their shard.
planned=0
assembled_by=()
for ((k = 0; k < elements; k++)); do
  out=array-${array}_$k.out err=array-${array}_$k.err
  if [[ $(job_summary "${array}_$k") != "COMPLETED exit 0:0" ]]; then
    fail "array element $k: $(job_summary "${array}_$k")"
    show "$out" "$err"
    continue
  fi
  if ! grep -q "shard $k of $elements computes $((tasks / elements)) of its $tasks tasks" "$err"; then
    fail "array element $k did not compute shard $k of $elements"
    show "$out" "$err"
    continue
  fi
  planned=$((planned + tasks / elements))
  if grep -q "shard $k of $elements done ($((tasks / elements)) tasks)" "$err"; then
    [[ -z $(sweep_table "$out") ]] || fail "array element $k ended after its shard but printed a table"
  elif diff <(sweep_table "$out") reference.txt >/dev/null; then
    assembled_by+=("$k")
  else
    fail "array element $k neither ended after its shard nor printed the full table"
    show "$out" "$err"
  fi
done
((planned == tasks)) && pass "array job $array: $elements elements COMPLETED 0:0, each computed its" \
  "$((tasks / elements)) tasks (elements that also assembled the full table: ${assembled_by[*]:-none})"

expect_status_complete "$tasks" "after the array"
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-before
(($(count_lines entries-before) == tasks)) || fail "the cache holds $(count_lines entries-before) entries, not $tasks"

scontrol release "$assemble" || fail "scontrol release $assemble failed"
wait_for_job "$assemble" 120
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-after
out=assemble-$assemble.out err=assemble-$assemble.err
recomputed=$(count_new_entries entries-before entries-after)
if [[ $(job_summary "$assemble") != "COMPLETED exit 0:0" ]]; then
  fail "assembly job $assemble: $(job_summary "$assemble")"
  show "$out" "$err"
elif ! diff <(sweep_table "$out") reference.txt >/dev/null; then
  fail "assembly job $assemble printed another table than the sequential run"
  show "$out" "$err"
elif ((recomputed != 0)) || ! grep -q "$tasks hits in this process" "$err"; then
  fail "assembly job $assemble recomputed $recomputed tasks; it should take all $tasks from the cache"
  show "$err"
else
  pass "assembly job $assemble (afterok:$array): the sequential table, $tasks of $tasks from the cache, 0 recomputed"
fi

finish
