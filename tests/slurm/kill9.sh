#!/usr/bin/env bash
# SIGKILL of a whole MPI job mid-run (slurm/templates/mpi-job.sbatch, 2 ranks): no signal
# handler runs, so only the tasks in flight are lost. Every result published before the kill
# stays readable; the same job submitted again computes exactly the tasks missing from the cache
# (counted from the cache: a recomputed entry is a new file), takes over the compute-once locks
# the dead ranks left, and prints the table of a sequential run.
# Usage: tests/slurm/kill9.sh ISING_SWEEP JOBLET (wraps itself in with-cluster when needed)
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
ensure_cluster "$(realpath "$0")" "$@"
(($# == 2)) || { echo "usage: $0 ISING_SWEEP JOBLET" >&2; exit 2; }
sweep=$(realpath "$1")
joblet=$(realpath "$2")

work=$(mktemp -d /tmp/joblet-slurm-kill9.XXXXXX)
trap 'rm -rf -- "$work"' EXIT
cd "$work" || exit 1
args=(--size 16 --temperatures 40 --sweeps 10000 --verbose 0)
tasks=40
export JOBLET_CACHE_DIR=$work/cache
cache_files() { find "$JOBLET_CACHE_DIR" -type f -name "$1" 2>/dev/null | grep -c . || true; }

"$sweep" "${args[@]}" --backend sequential --no-cache >reference.txt 2>reference.err ||
  { fail "the sequential reference run failed"; show reference.err; }
pass "sequential reference ($tasks tasks)"

submit() { # NAME
  sbatch --parsable --ntasks=2 --cpus-per-task=1 -o "$work/$1-%j.out" -e "$work/$1-%j.err" \
    "$templates/mpi-job.sbatch" "$sweep" "${args[@]}"
}
first=$(submit killed) || fail "sbatch of mpi-job.sbatch failed"
waited=0
while (($(entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate | grep -c .) < tasks / 4)); do
  if ((waited >= 1200)) || [[ -z $(squeue -h -j "$first") ]]; then
    fail "job $first: fewer than $((tasks / 4)) entries after $((waited / 10)) s ($(job_summary "$first"))"
    show "killed-$first.out" "killed-$first.err"
    finish
  fi
  sleep 0.1
  waited=$((waited + 1))
done
# SIGKILL to every process of the job at once: the batch script, srun and both ranks. Nothing can
# react, as when a node dies or the OOM killer strikes. (`scancel --signal=KILL` would not do:
# Slurm turns it into an ordinary cancel, SIGTERM first.)
mapfile -t pids < <(job_pids "$first")
((${#pids[@]} >= 4)) || fail "found ${#pids[@]} processes of job $first, expected its script, srun and 2 ranks"
kill -KILL "${pids[@]}" 2>/dev/null
wait_for_job "$first" 60
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-killed
survived=$(count_lines entries-killed)
locks=$(cache_files '*.lock')
temporaries=$(cache_files '.*')
if grep -q "stopped by" "killed-$first.err" || [[ $(job_summary "$first") == COMPLETED* ]]; then
  fail "job $first was not killed mid-run: $(job_summary "$first")"
  show "killed-$first.out" "killed-$first.err"
  finish
fi
((survived < tasks)) || fail "every task was done before the kill: nothing left to test (use more tasks)"
pass "job $first: ${#pids[@]} processes killed with SIGKILL mid-run ($(job_summary "$first")): $survived of $tasks results" \
  "published, $locks compute-once locks and $temporaries temporary files left behind"

# Every published entry must still be a complete, readable result.
show_out=$("$joblet" cache --dir "$JOBLET_CACHE_DIR" stats 2>&1) || fail "joblet cache stats failed: $show_out"
if grep -qi "unreadable" <<<"$show_out"; then
  fail "joblet cache stats finds unreadable entries after the kill:"$'\n'"$show_out"
fi

# info: the rerun logs each lock of a dead rank that it takes over.
second=$(JOBLET_LOG_LEVEL=info submit rerun) || fail "the second sbatch failed"
wait_for_job "$second" 180
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-rerun
recomputed=$(count_new_entries entries-killed entries-rerun)
out=rerun-$second.out err=rerun-$second.err
if [[ $(job_summary "$second") != "COMPLETED exit 0:0" ]]; then
  fail "rerun job $second: $(job_summary "$second")"
  show "$out" "$err"
elif ! diff <(sweep_table "$out") reference.txt >/dev/null; then
  fail "rerun job $second printed another table than the sequential run"
  show "$out" "$err"
elif ((recomputed != tasks - survived || $(count_lines entries-rerun) != tasks)); then
  fail "rerun job $second recomputed $recomputed tasks; expected the $((tasks - survived)) missing ones" \
    "(a published result was lost or recomputed)"
  show "$err"
else
  pass "rerun job $second: the sequential table; recomputed $recomputed of $tasks tasks" \
    "(exactly the missing ones), $survived from the cache"
  echo "RESULT resume after kill -9: $recomputed of $tasks tasks recomputed"
fi
# The dead ranks' locks: on their own host a dead holder is recognised at once (elsewhere a
# lock goes stale after LockOptions::stale_after), so the rerun takes them over instead of
# waiting. None may remain on a key the rerun computed.
takeovers=$(grep -c "took over the stale compute-once lock" "$err" || true)
stuck=0
while read -r _ path; do
  [[ -e $JOBLET_CACHE_DIR/ising.simulate/$path.lock ]] && stuck=$((stuck + 1))
done < <(comm -13 entries-killed entries-rerun)
if ((stuck)); then
  fail "$stuck compute-once locks remain on entries the rerun computed"
else
  pass "compute-once locks: $locks left by the killed ranks, $takeovers taken over by the rerun, none remain on" \
    "what it computed"
fi

finish
