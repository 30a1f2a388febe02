#!/usr/bin/env bash
# Real time limits, two jobs of long-run.sbatch at once, each submitted with --time=1 and a
# campaign far longer than a minute (slurmctld looks at limits every 30 s):
#   warned: the template's `--signal=USR1@120` is due at once with a one-minute limit, so Slurm
#           sends the early warning at its first look (within 30 s). The program stops, exit
#           status 75, before the limit: the job ends by itself (FAILED, 75).
#   killed: `--signal=URG@1` replaces the warning by a signal the program ignores, so the job
#           runs into the limit (60-90 s): Slurm sends SIGTERM to the batch script, srun and
#           the program, and SIGKILL KillWait (5 s here) later. Within that time the program
#           must stop (status 75), and the batch script must survive its own SIGTERM, see
#           Reason=TimeLimit and resubmit.
# Both must log "stopped by SIG...: D of N tasks done" with D results in the cache and resubmit
# themselves; the resubmitted jobs are held and cancelled (resume.sh shows what a resumed job
# computes). Takes about 1.5 minutes, most of it waiting for the limit.
# Usage: tests/slurm/time_limit.sh ISING_SWEEP JOBLET (wraps itself in with-cluster when needed)
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
ensure_cluster "$(realpath "$0")" "$@"
begin_scenario limit "$@"
# About 0.15 s per task on one worker: some 5 minutes of work, never done before the limit even
# on a fast machine; one worker per job leaves room for the other.
args=(--size 16 --temperatures 2000 --sweeps 10000 --n-jobs 1 --verbose 0)
tasks=2000
# --hold: the resubmitted jobs wait, so that they can be checked and cancelled.
export LONG_RUN_SBATCH_OPTIONS="--cpus-per-task=1 --error=%x-%j.err --hold"

submit() { # NAME SBATCH-OPTIONS...
  local name=$1
  shift
  # shellcheck disable=SC2086  # split on purpose, as the template does
  JOBLET_CACHE_DIR=$work/cache-$name sbatch --parsable --time=1 "$@" ${LONG_RUN_SBATCH_OPTIONS/--hold/} \
    "$templates/long-run.sbatch" "$sweep" "${args[@]}"
}
warned=$(submit warned) || fail "sbatch of long-run.sbatch (warned) failed"
killed=$(submit killed --signal=URG@1) || fail "sbatch of long-run.sbatch (killed) failed"
[[ -n $warned && -n $killed ]] || finish

# Checks a job stopped by a real limit. Sets next.
check() { # NAME JOB EXPECTED-SUMMARY SIGNAL-WORD
  local name=$1 job=$2 out=joblet-long-run-$2.out err=joblet-long-run-$2.err entries stop_line done_count run_time
  wait_for_job "$job" 150 || return 1
  entries=$(entry_snapshot "$work/cache-$name" ising.simulate | grep -c .)
  stop_line=$(grep -o "stopped by ${4}[^:]*: [0-9]* of $tasks tasks done, [0-9]* remaining" "$err")
  done_count=$(sed -n 's/.*: \([0-9]*\) of .*/\1/p' <<<"$stop_line")
  next=$(sed -n 's/.*resubmitted as job \([0-9]*\),.*/\1/p' "$out")
  run_time=$(job_field "$job" RunTime)
  if [[ $(job_summary "$job") != "$3" ]]; then
    fail "$name job $job: $(job_summary "$job") after $run_time (expected $3)"
    show "$out" "$err"
    return 1
  fi
  if [[ -z $stop_line || $done_count != "$entries" ]] || ((entries == 0)); then
    fail "$name job $job: stop line '$stop_line', $entries entries in the cache (they must match, and not be 0)"
    show "$err"
    return 1
  fi
  if [[ -z $next ]]; then
    fail "$name job $job did not resubmit itself"
    show "$out"
    return 1
  fi
  [[ $(job_field "$next" JobState) == PENDING ]] || fail "resubmitted job $next is $(job_field "$next" JobState)"
  scancel "$next"
  "$joblet" status --dir "$work/cache-$name" >"status-$name.txt" 2>&1
  grep -Eq "^ising\.simulate-[0-9a-f]+ +$tasks +$entries +$((tasks - entries)) " "status-$name.txt" ||
    { fail "joblet status does not show $entries of $tasks done:"; show "status-$name.txt"; }
  pass "$name job $job: $3 after $run_time; '$stop_line', as many entries in the cache; resubmitted as job $next"
  echo "RESULT $name: stopped after $run_time with $entries of $tasks tasks in the cache"
}

check warned "$warned" "FAILED exit 75:0" SIGUSR1
if check killed "$killed" "TIMEOUT exit 75:0" SIGTERM; then
  grep -q "SIGTERM at .*: waiting for the program to stop" "joblet-long-run-$killed.out" ||
    fail "the batch script of job $killed did not note its SIGTERM"
fi

finish
