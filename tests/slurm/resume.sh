#!/usr/bin/env bash
# Stop and resume with the self-resubmitting template slurm/templates/long-run.sbatch:
#   job 1 gets SIGTERM mid-campaign, in its program's step, as at a time limit
#         (`scancel --signal=TERM` does that without waiting a minute for a real limit;
#         time_limit.sh waits for one, which also signals the batch script and srun);
#   job 2, which the template submitted, gets the early-warning SIGUSR1 mid-campaign, as
#         `#SBATCH --signal=USR1@120` sends it (to the program's step);
#   job 3, submitted by job 2, is cancelled with a plain scancel: it stops the same way but
#         must not resubmit itself (a user's scancel ends the chain);
#   job 4, the same command submitted again by hand, finishes.
# Each stopped job lets its running tasks finish, logs "stopped by SIG...: D of N tasks done,
# R remaining" with D equal to the entries in the cache and exits 75; each later job computes
# exactly the missing tasks (counted from the cache: a recomputed entry is a new file), and the
# last one prints the table of a sequential run.
# No step waits for a duration (lib.sh, "Synchronising on states"): once a job has computed
# enough tasks, the test stops its program (SIGSTOP) and signals or cancels the job while it is
# stopped; the program runs on only once the signal has reached it. So Slurm's delivery time,
# however long under load, cannot let the job finish first. (The compute-once gates of
# mpi_resume.sh do not apply: one process computes without compute-once locks.)
# Usage: tests/slurm/resume.sh ISING_SWEEP JOBLET (wraps itself in with-cluster when needed)
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
ensure_cluster "$(realpath "$0")" "$@"
begin_scenario resume "$@"
# About 0.15 s per task here: 56 tasks keep 2 workers busy for a few seconds, far longer than
# the test takes to stop the program once it has seen the entries it waits for.
args=(--size 16 --temperatures 56 --sweeps 10000 --verbose 0)
tasks=56
export JOBLET_CACHE_DIR=$work/cache

"$sweep" "${args[@]}" --backend sequential --no-cache >reference.txt 2>reference.err ||
  { fail "the sequential reference run failed"; show reference.err; }
pass "sequential reference ($tasks tasks)"

# Options for every job of the chain, as a user would pass an account: 2 CPUs, stderr apart
# from the table, and --hold so that the test can look at the cache between two jobs (it
# releases each resubmitted job itself).
export LONG_RUN_SBATCH_OPTIONS="--cpus-per-task=2 --error=%x-%j.err --hold"

# Once the cache holds at least COUNT entries while JOB runs, stops the program and sends it
# the signal with SCANCEL-OPTIONS while it is stopped (SIG: the signal that reaches the program).
signal_when() { # JOB COUNT SIG SCANCEL-OPTIONS...
  local job=$1 count=$2 sig=$3
  shift 3
  wait_for_entries "$job" "$count" joblet-long-run || return 1
  stop_program "$job" "$sweep" || return 1
  signal_stopped_program "$job" "$sig" "$@"
}

# Checks a job that was stopped by SIGNAL: exit 75, the stop line, done = entries in the cache,
# resubmitted. Sets done_count and next.
check_stopped() { # JOB SIGNAL-WORD
  local job=$1 word=$2 out=joblet-long-run-$1.out err=joblet-long-run-$1.err stop_line remaining stopped
  stop_line=$(grep -o "stopped by ${word}[^:]*: [0-9]* of $tasks tasks done, [0-9]* remaining" "$err")
  done_count=$(sed -n 's/.*: \([0-9]*\) of .*/\1/p' <<<"$stop_line")
  remaining=$(sed -n 's/.*done, \([0-9]*\) remaining$/\1/p' <<<"$stop_line")
  next=$(sed -n 's/.*resubmitted as job \([0-9]*\),.*/\1/p' "$out")
  stopped=$(entries)
  if [[ $(job_summary "$job") != "FAILED exit 75:0" || -z $stop_line || -z $next ]]; then
    fail "job $job after $word: $(job_summary "$job") (expected FAILED exit 75:0), stop line '$stop_line'," \
      "resubmitted as '${next:-nothing}'"
    show "$out" "$err"
    [[ -n $next ]] && scancel "$next"
    return 1
  fi
  if ((done_count + remaining != tasks || done_count != stopped || stopped == tasks)); then
    fail "job $job reported $done_count done and $remaining remaining; the cache holds $stopped entries" \
      "(all $tasks done means the signal came too late: use more tasks)"
    show "$err"
    return 1
  fi
  pass "job $job after $word: exit 75, '$stop_line', $stopped entries in the cache, resubmitted as job $next"
}

# --- job 1: SIGTERM to the program, as at the time limit --------------------------------------
# Not --full: srun answers a SIGTERM of its own by killing its tasks at once (see time_limit.sh).
# shellcheck disable=SC2086  # split on purpose, as the template does
first=$(sbatch --parsable ${LONG_RUN_SBATCH_OPTIONS/--hold/} "$templates/long-run.sbatch" "$sweep" "${args[@]}") ||
  { fail "sbatch of long-run.sbatch failed"; finish; }
signal_when "$first" $((tasks / 4)) TERM --signal=TERM || finish
wait_for_job "$first" 60
check_stopped "$first" SIGTERM || finish
"$joblet" status --dir "$JOBLET_CACHE_DIR" >status-1.txt 2>&1
grep -Eq "^ising\.simulate-[0-9a-f]+ +$tasks +$done_count +$((tasks - done_count)) " status-1.txt ||
  { fail "joblet status between the jobs does not show $done_count done:"; show status-1.txt; }
done_1=$done_count
second=$next

# --- job 2: the early warning, SIGUSR1 to the program's step ---------------------------------
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-1
scontrol release "$second" || fail "scontrol release $second failed"
signal_when "$second" $((done_1 + tasks / 4)) USR1 --signal=USR1 || finish
wait_for_job "$second" 60
check_stopped "$second" SIGUSR1 || finish
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-2
recomputed_2=$(count_new_entries entries-1 entries-2)
grep -q "resubmission 1 of" "joblet-long-run-$second.out" || fail "job $second does not know it is the first resubmission"
# A new inode for every task job 2 reported done beyond job 1's, and none more: it recomputed
# nothing that job 1 had left in the cache.
if ((recomputed_2 == done_count - done_1)); then
  pass "job $second: computed $recomputed_2 new tasks, recomputed none of the $done_1 from job $first"
else
  fail "job $second wrote $recomputed_2 entries but reported $((done_count - done_1)) new tasks done"
fi
done_2=$done_count
third=$next

# --- job 3: a plain scancel ends the chain ----------------------------------------------------
# A plain scancel: Slurm sends SIGCONT and SIGTERM (and SIGKILL KillWait later).
scontrol release "$third" || fail "scontrol release $third failed"
signal_when "$third" $((done_2 + tasks / 8)) TERM || finish
wait_for_job "$third" 60
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-3
done_3=$(count_lines entries-3)
out=joblet-long-run-$third.out
if [[ $(job_summary "$third") != "CANCELLED exit 75:0" ]] || ! grep -q "not resubmitting" "$out" ||
  grep -q "resubmitted as" "$out"; then
  fail "job $third after scancel: $(job_summary "$third") (expected CANCELLED exit 75:0, and no resubmission)"
  show "$out" "joblet-long-run-$third.err"
elif [[ -n $(squeue -h -o %i) ]]; then
  fail "jobs in the queue after the chain was cancelled: $(squeue -h -o '%i %j %T' | tr '\n' ' ')"
elif ((done_3 == tasks)); then
  fail "every task was done before scancel: nothing left to test (use more tasks)"
elif ! grep -q "stopped by SIGTERM: $done_3 of $tasks tasks done" "joblet-long-run-$third.err"; then
  fail "job $third did not log 'stopped by SIGTERM: $done_3 of $tasks tasks done'"
  show "joblet-long-run-$third.err"
elif (($(count_new_entries entries-2 entries-3) != done_3 - done_2)); then
  fail "job $third rewrote results that were in the cache before it started"
else
  pass "job $third after a plain scancel: stopped with exit 75 and $done_3 entries in the cache, not resubmitted"
fi

# --- job 4: the same command again, by hand ---------------------------------------------------
# shellcheck disable=SC2086  # split on purpose, as the template does
fourth=$(sbatch --parsable ${LONG_RUN_SBATCH_OPTIONS/--hold/} "$templates/long-run.sbatch" "$sweep" "${args[@]}") ||
  { fail "sbatch of long-run.sbatch failed"; finish; }
wait_for_job "$fourth" 120
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-4
recomputed=$(count_new_entries entries-3 entries-4)
out=joblet-long-run-$fourth.out err=joblet-long-run-$fourth.err
if [[ $(job_summary "$fourth") != "COMPLETED exit 0:0" ]]; then
  fail "job $fourth: $(job_summary "$fourth")"
  show "$out" "$err"
elif ! diff <(sweep_table "$out") reference.txt >/dev/null; then
  fail "job $fourth printed another table than the sequential run"
  show "$out" "$err"
elif ((recomputed != tasks - done_3 || $(count_lines entries-4) != tasks)) ||
  ! grep -q "$done_3 hits in this process" "$err"; then
  fail "job $fourth recomputed $recomputed tasks (expected the $((tasks - done_3)) missing ones)"
  show "$err"
else
  pass "job $fourth: the sequential table; computed $recomputed of $tasks tasks (exactly the missing ones)," \
    "$done_3 from the cache"
  echo "RESULT stopped by SIGTERM after $done_1 of $tasks tasks, by SIGUSR1 after $done_2, by scancel after" \
    "$done_3; the later jobs computed $recomputed_2, $((done_3 - done_2)) and $recomputed tasks: each task once"
fi

finish
