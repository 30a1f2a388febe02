#!/usr/bin/env bash
# Job arrays and time limits across nodes, on the shared filesystem:
#   - a 4-element array (slurm/templates/array.sbatch), each element a whole node, so that the
#     elements run on all three nodes: each computes its quarter of the tasks, every task once;
#     the assembly job (assemble.sbatch) computes none and prints a sequential run's table;
#   - a long-run.sbatch chain: its first job runs on node3 with a one-minute limit, is warned by
#     Slurm's limit (USR1), stops and resubmits itself excluding node3; the next job runs as 4
#     MPI ranks on node1 and node2, computes exactly the missing tasks and finishes;
#   - `joblet status`, run on this host (the login node) throughout both, is right each time:
#     its "done" lies between the entries counted just before and just after it.
# Usage: arrays.sh ISING_SWEEP JOBLET
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
begin_cluster_test arrays "ISING_SWEEP JOBLET" "$@"
sweep=${programs[0]}
joblet=${programs[1]}
# info: each element logs which shard it computes, each stopped job what it had done.
export JOBLET_LOG_LEVEL=info

# Samples `joblet status --dir CACHE` until the file `stop-sampling` appears; one line per sample:
# "entries-before done entries-after tasks".
sample_status() { # CACHE OUT
  local before after line
  while [[ ! -e stop-sampling ]]; do
    before=$(entry_snapshot "$1" ising.simulate | grep -c . || true)
    line=$("$joblet" status --dir "$1" 2>/dev/null | grep -E '^ising\.simulate-' || true)
    after=$(entry_snapshot "$1" ising.simulate | grep -c . || true)
    if [[ -n $line ]]; then
      awk -v b="$before" -v a="$after" '{ print b, $3, a, $2 }' <<<"$line" >>"$2"
    elif ((after > 0)); then
      echo "$before none $after -" >>"$2"  # entries but no campaign: status is wrong
    fi
    sleep 0.2
  done
}
# Checks the samples: every one within its bounds, and some taken while tasks were missing.
check_status_samples() { # OUT WHAT
  local wrong under_way
  wrong=$(awk '$2 == "none" || $2 < $1 || $2 > $3 || $2 > $4' "$1" | head -n 3)
  under_way=$(awk '$2 != "none" && $2 < $4' "$1" | wc -l)
  if [[ -z $wrong ]] && ((under_way > 0)); then
    pass "joblet status on the login node during $2: right in all $(wc -l <"$1") samples ($under_way while tasks were missing)"
  else
    fail "joblet status during $2: samples (entries before, done, entries after, tasks) out of bounds: ${wrong:-none}; $under_way taken while under way"
  fi
}
start_sampling() { rm -f stop-sampling; sample_status "$@" & sampler=$!; }
stop_sampling() { touch stop-sampling; wait "$sampler" || true; }
nodes_of() { job_field "$1" NodeList; }

# ---- The array -----------------------------------------------------------------------------
args=(--size 16 --temperatures 24 --sweeps 5000 --verbose 0)
tasks=24
elements=4
export JOBLET_CACHE_DIR=$work/array-cache
"$sweep" "${args[@]}" --backend sequential --no-cache >reference.txt 2>reference.err ||
  { fail "the sequential reference run failed"; show reference.err; }

start_sampling "$JOBLET_CACHE_DIR" array-status.txt
# Static shards (JOBLET_SHARD=static, exported to the elements): each element's count is known.
array=$(JOBLET_SHARD=static sbatch --parsable --array=0-$((elements - 1)) --cpus-per-task=2 -o "$work/array-%A_%a.out" \
  -e "$work/array-%A_%a.err" "$templates/array.sbatch" "$sweep" "${args[@]}")
assemble=$(sbatch --parsable --hold --dependency="afterok:$array" -o "$work/assemble-%j.out" \
  -e "$work/assemble-%j.err" "$templates/assemble.sbatch" "$sweep" "${args[@]}")
wait_for_job "$array" 240 || true
stop_sampling

planned=0
element_nodes=()
for ((k = 0; k < elements; k++)); do
  out=array-${array}_$k.out err=array-${array}_$k.err
  element_nodes+=("$(nodes_of "${array}_$k")")
  if [[ $(job_summary "${array}_$k") == "COMPLETED exit 0:0" ]] &&
    grep -q "shard $k of $elements computes $((tasks / elements)) of its $tasks tasks" "$err"; then
    planned=$((planned + tasks / elements))
  else
    fail "array element $k: $(job_summary "${array}_$k")"
    show "$out" "$err"
  fi
done
used_nodes=$(printf '%s\n' "${element_nodes[@]}" | sort -u | paste -sd' ')
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >array-entries.txt
if ((planned == tasks)) && [[ $used_nodes == "node1 node2 node3" && $(count_lines array-entries.txt) == "$tasks" ]]; then
  pass "array $array: $elements elements on ${element_nodes[*]}, each computed its $((tasks / elements)) tasks; $tasks entries"
else
  fail "array $array: $planned tasks planned by the elements, on nodes ${element_nodes[*]}, $(count_lines array-entries.txt) entries"
fi
check_status_samples array-status.txt "the array"
expect_status_complete "$tasks" "after the array"

scontrol release "$assemble"
wait_for_job "$assemble" 120 || true
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >assembled-entries.txt
recomputed=$(count_new_entries array-entries.txt assembled-entries.txt)
if [[ $(job_summary "$assemble") == "COMPLETED exit 0:0" ]] && ((recomputed == 0)) &&
  diff <(sweep_table "assemble-$assemble.out") reference.txt >/dev/null; then
  pass "assembly job $assemble on $(nodes_of "$assemble"): the sequential run's table, 0 of $tasks recomputed"
else
  fail "assembly job $assemble: $(job_summary "$assemble"), $recomputed recomputed"
  show "assemble-$assemble.out" "assemble-$assemble.err"
fi

# ---- The long-run chain --------------------------------------------------------------------
# About 0.13 s a task on one worker: some 50 s of work for the first job's one CPU, longer than
# Slurm takes to send the limit's warning (its first look at limits, within 30 s).
args=(--size 16 --temperatures 400 --sweeps 10000 --verbose 0)
tasks=400
export JOBLET_CACHE_DIR=$work/chain-cache
# What every job of the chain after the first is submitted with (the template reads it).
export LONG_RUN_SBATCH_OPTIONS="--exclude=node3 --nodes=2 --ntasks=4 --cpus-per-task=1 --error=%x-%j.err"
start_sampling "$JOBLET_CACHE_DIR" chain-status.txt
first=$(sbatch --parsable --time=1 --nodelist=node3 --ntasks=1 --cpus-per-task=1 --error=%x-%j.err \
  "$templates/long-run.sbatch" "$sweep" "${args[@]}")
wait_for_job "$first" 180 || true
done_first=$(entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate | grep -c . || true)
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >chain-before.txt
next=$(sed -n 's/.*resubmitted as job \([0-9]*\),.*/\1/p' "joblet-long-run-$first.out")
if [[ $(job_summary "$first") == "FAILED exit 75:0" && $(nodes_of "$first") == node3 && -n $next ]] &&
  grep -q "stopped by SIGUSR1[^:]*: $done_first of $tasks tasks done" "joblet-long-run-$first.err"; then
  pass "job $first on node3 was warned by its time limit with $done_first of $tasks done, and resubmitted as job $next"
else
  fail "the chain's first job $first: $(job_summary "$first") on $(nodes_of "$first"), $done_first entries, next '$next'"
  show "joblet-long-run-$first.out" "joblet-long-run-$first.err"
  stop_sampling
  finish
fi
wait_for_job "$next" 300 || true
stop_sampling
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >chain-after.txt
computed=$(count_new_entries chain-before.txt chain-after.txt)
if [[ $(job_summary "$next") == "COMPLETED exit 0:0" && $(nodes_of "$next") == "node[1-2]" ]] &&
  ((computed == tasks - done_first)) && grep -q "on backend mpi with 4 workers" "joblet-long-run-$next.err" &&
  [[ $(sweep_table "joblet-long-run-$next.out" | grep -c .) -gt $tasks ]]; then
  pass "job $next resumed on node1 and node2 (4 MPI ranks), computed exactly the $computed missing tasks and printed the table"
else
  fail "the resumed job $next: $(job_summary "$next") on $(nodes_of "$next"), computed $computed of $((tasks - done_first)) missing"
  show "joblet-long-run-$next.out" "joblet-long-run-$next.err"
fi
check_status_samples chain-status.txt "the chain"
expect_status_complete "$tasks" "after the chain"

finish
