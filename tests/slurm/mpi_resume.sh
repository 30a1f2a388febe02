#!/usr/bin/env bash
# Stop, kill and resume a 2-rank MPI job (slurm/templates/mpi-job.sbatch), the same command
# submitted three times with one cache:
#   1. SIGTERM mid-run (`scancel --signal=TERM`, what the time limit sends): every rank lets its
#      running task finish, logs "stopped by SIGTERM: D of N tasks done" (on stderr and in its
#      per-rank log file) and exits 75; D results are in the cache.
#   2. SIGKILL of the whole job mid-run (batch script, srun and both ranks at once: no handler
#      runs, as when a node dies): only the tasks in flight are lost; every result published
#      before stays readable and untouched.
#   3. The rerun computes exactly the tasks missing from the cache (counted from the cache: a
#      recomputed entry is a new file), takes over the compute-once locks the killed ranks left,
#      and prints the table of a sequential run.
# Nothing here waits for a duration (lib.sh, "Synchronising on states"): the test holds the
# compute-once locks of the tasks it needs unfinished (the gate), so a job provably cannot end
# before the signal or the kill, and it delivers SIGTERM while the ranks are stopped, so that
# they have it before they run on.
# Usage: tests/slurm/mpi_resume.sh ISING_SWEEP JOBLET (wraps itself in with-cluster when needed)
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
ensure_cluster "$(realpath "$0")" "$@"
begin_scenario mpi-resume "$@"
# About 0.15 s per task here, some 5 s for 2 ranks. The gates, not the number of tasks, keep the
# jobs from ending before the signal and the kill.
args=(--size 16 --temperatures 60 --sweeps 10000 --verbose 0)
tasks=60
export JOBLET_CACHE_DIR=$work/cache
cache_files() { find "$JOBLET_CACHE_DIR" -type f -name "$1" 2>/dev/null | grep -c . || true; }

# The reference, with a cache of its own: its entries give the task keys in task order.
"$sweep" "${args[@]}" --backend sequential --cache "$work/reference-cache" >reference.txt 2>reference.err ||
  { fail "the sequential reference run failed"; show reference.err; }
mapfile -t keys < <(task_keys "$work/reference-cache")
((${#keys[@]} == tasks)) || { fail "the sequential reference run left ${#keys[@]} entries, expected $tasks"; finish; }
pass "sequential reference ($tasks tasks)"

submit() { # NAME
  sbatch --parsable --ntasks=2 --cpus-per-task=1 -o "$work/$1-%j.out" -e "$work/$1-%j.err" \
    "$templates/mpi-job.sbatch" "$sweep" "${args[@]}"
}

# --- 1. SIGTERM ------------------------------------------------------------------------------
# Every task from task G on is gated: the job computes tasks 0 to G-1 and then waits, each rank
# on a gated task. SIGTERM comes while the ranks are stopped; then the gate opens: each rank
# finishes the task it was waiting for and stops, D = G + (tasks in flight) < N.
gate_at=$((tasks / 5))
hold_gate "${keys[@]:gate_at}" || finish
stopped_job=$(submit stopped) || { fail "sbatch of mpi-job.sbatch failed"; finish; }
wait_for_entries "$stopped_job" "$gate_at" stopped || finish
stop_program "$stopped_job" "$sweep" || finish
signal_stopped_program "$stopped_job" TERM --signal=TERM || finish
close_gate
wait_for_job "$stopped_job" 60
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-stopped
stopped=$(count_lines entries-stopped)
err=stopped-$stopped_job.err
# The gate held back what it should: tasks 0 to G-1 are in the cache (the job's keys are the
# sequential run's, and it took the tasks in their order).
present=()
for ((i = 0; i < tasks; i++)); do
  grep -q " ${keys[i]}\$" entries-stopped && present+=("$i")
done
if [[ ${present[*]:0:gate_at} != "$(seq -s ' ' 0 $((gate_at - 1)))" ]]; then
  fail "job $stopped_job left tasks ${present[*]} in the cache, not 0 to $((gate_at - 1)) and a few gated ones:" \
    "the gate did not hold back the tasks it should"
fi
# "[joblet warning rank R host] stopped by SIGTERM: D of N tasks done, R remaining; ..."
declare -A reported
for rank in 0 1; do
  line=$(grep -o "rank $rank [^]]*\] stopped by SIGTERM: [0-9]* of $tasks tasks done" "$err")
  reported[$rank]=$(sed -n 's/.*: \([0-9]*\) of .*/\1/p' <<<"$line")
  grep -q "stopped by SIGTERM: ${reported[$rank]:-x} of $tasks tasks done" "joblet-$stopped_job-$rank.log" 2>/dev/null ||
    fail "rank $rank of job $stopped_job: no stop line in its log file joblet-$stopped_job-$rank.log"
done
done_count=${reported[0]}
# Every task done is in the cache, and nothing else: the tasks running when the signal came
# finish and are counted by every rank before it says D.
if [[ -z $done_count || ${reported[1]} != "$done_count" ]] || ((stopped != done_count)); then
  fail "job $stopped_job: ranks 0 and 1 reported '${reported[0]}' and '${reported[1]}' tasks done, and the cache" \
    "holds $stopped entries (expected the same D on both ranks, and D entries)"
  show "$err"
elif [[ $(job_summary "$stopped_job") != "FAILED exit 75:0" ]] || ! grep -q "tasks 0-1: Exited with exit code 75" "$err"; then
  fail "job $stopped_job after SIGTERM: $(job_summary "$stopped_job") (expected FAILED exit 75:0, both ranks exiting 75)"
  show "stopped-$stopped_job.out" "$err"
elif ((stopped == tasks)); then
  fail "every task was done before SIGTERM arrived: nothing left to test (use more tasks)"
else
  pass "job $stopped_job after SIGTERM: both ranks logged 'stopped by SIGTERM: $done_count of $tasks tasks done'" \
    "(stderr and per-rank log files) and exited 75; $stopped entries in the cache"
fi

# --- 2. kill -9 ------------------------------------------------------------------------------
# The last task not in the cache is gated: the job cannot end, whenever the kill comes. It comes
# once the job has computed tasks/5 more (or all but the gated one), most likely while both
# ranks compute (their locks are left behind).
for ((last = tasks - 1; last >= 0; last--)); do
  grep -q " ${keys[last]}\$" entries-stopped || break
done
((last >= 0)) || { fail "no task left for the kill: job $stopped_job did everything"; finish; }
hold_gate "${keys[last]}" || finish
killed_job=$(submit killed) || { fail "the second sbatch failed"; finish; }
target=$((stopped + tasks / 5))
((target <= tasks - 1)) || target=$((tasks - 1))
wait_for_entries "$killed_job" "$target" killed || finish
# SIGKILL to every process of the job at once: the batch script, srun and both ranks. (Not
# `scancel --signal=KILL`: Slurm turns that into an ordinary cancel, SIGTERM first.)
mapfile -t pids < <(job_pids "$killed_job")
((${#pids[@]} >= 4)) || fail "found ${#pids[@]} processes of job $killed_job, expected its script, srun and 2 ranks"
kill -KILL "${pids[@]}" 2>/dev/null
wait_for_job "$killed_job" 60
# The job is gone: the gate's lock goes too (the locks counted below are the killed ranks').
close_gate
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-killed
survived=$(count_lines entries-killed)
locks=$(cache_files '*.lock')
temporaries=$(cache_files '.*')
rewritten=$(($(count_new_entries entries-stopped entries-killed) - (survived - stopped)))
if grep -q "stopped by" "killed-$killed_job.err" || [[ $(job_summary "$killed_job") == COMPLETED* ]]; then
  fail "job $killed_job was not killed mid-run: $(job_summary "$killed_job")"
  show "killed-$killed_job.out" "killed-$killed_job.err"
  finish
fi
((survived < tasks)) || fail "every task was done before the kill: nothing left to test (use more tasks)"
((rewritten == 0)) || fail "job $killed_job recomputed $rewritten of the $stopped results job $stopped_job had left"
pass "job $killed_job: ${#pids[@]} processes killed with SIGKILL mid-run ($(job_summary "$killed_job")):" \
  "$survived of $tasks results published, $locks compute-once locks of tasks in flight and $temporaries" \
  "temporary files left behind"
stats=$("$joblet" cache --dir "$JOBLET_CACHE_DIR" stats 2>&1) || fail "joblet cache stats failed: $stats"
grep -qi "unreadable" <<<"$stats" && fail "joblet cache stats finds unreadable entries after the kill:"$'\n'"$stats"

# --- 3. the rerun -----------------------------------------------------------------------------
# info: the rerun logs each lock of a killed rank that it takes over.
rerun_job=$(JOBLET_LOG_LEVEL=info submit rerun) || { fail "the third sbatch failed"; finish; }
wait_for_job "$rerun_job" 180
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-rerun
recomputed=$(count_new_entries entries-killed entries-rerun)
out=rerun-$rerun_job.out err=rerun-$rerun_job.err
if [[ $(job_summary "$rerun_job") != "COMPLETED exit 0:0" ]]; then
  fail "rerun job $rerun_job: $(job_summary "$rerun_job")"
  show "$out" "$err"
elif ! diff <(sweep_table "$out") reference.txt >/dev/null; then
  fail "rerun job $rerun_job printed another table than the sequential run"
  show "$out" "$err"
elif ((recomputed != tasks - survived || $(count_lines entries-rerun) != tasks)); then
  fail "rerun job $rerun_job computed $recomputed tasks; expected the $((tasks - survived)) missing ones" \
    "(a published result was lost or recomputed)"
  show "$err"
else
  pass "rerun job $rerun_job: the sequential table; computed $recomputed of $tasks tasks (exactly the missing" \
    "ones), $survived from the cache"
  echo "RESULT 2-rank job: SIGTERM after $stopped of $tasks tasks; kill -9 after $survived ($locks tasks in" \
    "flight lost); the rerun computed the $recomputed missing, recomputed nothing"
fi

# The killed ranks' locks: on their own host a dead holder is recognised at once (on another
# host the lock goes stale after LockOptions::stale_after), so the rerun takes them over instead
# of waiting. None may remain on a key the rerun computed.
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
