#!/usr/bin/env bash
# Stop and resume with the self-resubmitting template slurm/templates/long-run.sbatch: a job is
# sent SIGTERM mid-campaign (what Slurm sends at the time limit; `scancel --signal=TERM` signals
# the job's program the same way without waiting a minute for a real limit). The program lets its
# running tasks finish, logs "stopped by SIGTERM: D of N tasks done, R remaining", exits 75; the
# template resubmits itself; the second job computes exactly the R missing tasks (counted from
# the cache: a recomputed entry is a new file) and prints the table of a sequential run.
# Usage: tests/slurm/resume.sh ISING_SWEEP JOBLET (wraps itself in with-cluster when needed)
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
ensure_cluster "$(realpath "$0")" "$@"
(($# == 2)) || { echo "usage: $0 ISING_SWEEP JOBLET" >&2; exit 2; }
sweep=$(realpath "$1")
joblet=$(realpath "$2")

work=$(mktemp -d /tmp/joblet-slurm-resume.XXXXXX)
trap 'rm -rf -- "$work"' EXIT
cd "$work" || exit 1
# About 0.15 s per task here: 40 tasks keep 2 workers busy for a few seconds.
args=(--size 16 --temperatures 40 --sweeps 10000 --verbose 0)
tasks=40
export JOBLET_CACHE_DIR=$work/cache

"$sweep" "${args[@]}" --backend sequential --no-cache >reference.txt 2>reference.err ||
  { fail "the sequential reference run failed"; show reference.err; }
pass "sequential reference ($tasks tasks)"

# Options for every job of the chain, as a user would pass an account: 2 CPUs, stderr apart
# from the table, and --hold so that the test can look at the cache between the two jobs
# (released below).
export LONG_RUN_SBATCH_OPTIONS="--cpus-per-task=2 --error=%x-%j.err --hold"
# shellcheck disable=SC2086  # split on purpose, as the template does
first=$(sbatch --parsable ${LONG_RUN_SBATCH_OPTIONS/--hold/} "$templates/long-run.sbatch" "$sweep" "${args[@]}") ||
  fail "sbatch of long-run.sbatch failed"

# Signal once a quarter of the tasks is in the cache: mid-run, with work done and work left.
waited=0
while (($(entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate | grep -c .) < tasks / 4)); do
  if ((waited >= 1200)) || [[ -z $(squeue -h -j "$first") ]]; then
    fail "job $first: fewer than $((tasks / 4)) entries after $((waited / 10)) s ($(job_summary "$first"))"
    show "joblet-long-run-$first.out" "joblet-long-run-$first.err"
    finish
  fi
  sleep 0.1
  waited=$((waited + 1))
done
scancel --signal=TERM "$first" || fail "scancel --signal=TERM $first failed"
wait_for_job "$first" 60
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-stopped
stopped=$(count_lines entries-stopped)
out=joblet-long-run-$first.out err=joblet-long-run-$first.err

stop_line=$(grep -o "stopped by SIGTERM: [0-9]* of $tasks tasks done, [0-9]* remaining" "$err")
done_count=$(sed -n 's/^stopped by SIGTERM: \([0-9]*\) of .*/\1/p' <<<"$stop_line")
remaining=$(sed -n 's/.*done, \([0-9]*\) remaining$/\1/p' <<<"$stop_line")
next=$(sed -n 's/.*resubmitted as job \([0-9]*\),.*/\1/p' "$out")
if [[ $(job_summary "$first") != "FAILED exit 75:0" || -z $stop_line || -z $next ]]; then
  fail "job $first after SIGTERM: $(job_summary "$first") (expected FAILED exit 75:0), stop line '$stop_line'," \
    "resubmitted as '${next:-nothing}'"
  show "$out" "$err"
  [[ -n $next ]] && scancel "$next"
  finish
fi
pass "job $first after SIGTERM: exit 75, '$stop_line', resubmitted as job $next"
if ((done_count + remaining != tasks || done_count != stopped)); then
  fail "job $first reported $done_count done and $remaining remaining, and the cache holds $stopped entries"
fi
if ((stopped == tasks)); then
  fail "every task was done before the signal arrived: nothing left to resume (use more tasks)"
fi
"$joblet" status --dir "$JOBLET_CACHE_DIR" >status-stopped.txt 2>&1
if grep -Eq "^ising\.simulate-[0-9a-f]+ +$tasks +$stopped +$((tasks - stopped)) " status-stopped.txt; then
  pass "joblet status between the jobs: $stopped done, $((tasks - stopped)) missing"
else
  fail "joblet status between the jobs does not show $stopped done:"; show status-stopped.txt
fi

scontrol release "$next" || fail "scontrol release $next failed"
wait_for_job "$next" 120
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-resumed
recomputed=$(count_new_entries entries-stopped entries-resumed)
out=joblet-long-run-$next.out err=joblet-long-run-$next.err
if [[ $(job_summary "$next") != "COMPLETED exit 0:0" ]]; then
  fail "resubmitted job $next: $(job_summary "$next")"
  show "$out" "$err"
elif ! grep -q "resubmission 1 of" "$out"; then
  fail "job $next does not know it is the first resubmission"; show "$out"
elif ! diff <(sweep_table "$out") reference.txt >/dev/null; then
  fail "resubmitted job $next printed another table than the sequential run"
  show "$out" "$err"
elif ((recomputed != tasks - stopped || $(count_lines entries-resumed) != tasks)) ||
  ! grep -q "$stopped hits in this process" "$err"; then
  fail "resubmitted job $next recomputed $recomputed tasks (expected the $((tasks - stopped)) missing ones)"
  show "$err"
else
  pass "resubmitted job $next: the sequential table; recomputed $recomputed of $tasks tasks" \
    "(exactly the missing ones), $stopped from the cache"
  echo "RESULT resume after SIGTERM: $recomputed of $tasks tasks recomputed"
fi

finish
