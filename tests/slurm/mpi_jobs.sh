#!/usr/bin/env bash
# MPI programs on the local Slurm: `srun --mpi=pmix -n 2` of the ising sweep, and the MPI
# template slurm/templates/mpi-job.sbatch submitted with sbatch (2 ranks x 2 CPUs): the same
# table as a sequential run, per-rank log files, the campaign in `joblet status`, and a second
# job that takes every result from the cache the first one filled.
# Usage: tests/slurm/mpi_jobs.sh ISING_SWEEP JOBLET (wraps itself in with-cluster when needed)
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
ensure_cluster "$(realpath "$0")" "$@"
begin_scenario mpi "$@"
args=(--size 16 --temperatures 12 --sweeps 5000 --verbose 0)
tasks=12

"$sweep" "${args[@]}" --backend sequential --no-cache >reference.txt 2>reference.err ||
  { fail "the sequential reference run failed"; show reference.err; }
pass "sequential reference: $(grep -c '^ *[0-9]\.[0-9]' reference.txt) temperatures"

# --- srun -n 2 ------------------------------------------------------------------------------
timeout 120 srun --mpi=pmix -n 2 "$sweep" "${args[@]}" --no-cache >srun.out 2>srun.err
status=$?
if ((status == 0)) && cmp -s reference.txt srun.out && grep -q "on backend mpi with 2 workers" srun.err; then
  pass "srun --mpi=pmix -n 2: backend mpi with 2 workers, the sequential table"
else
  fail "srun --mpi=pmix -n 2 exited $status (table $(cmp -s reference.txt srun.out && echo same || echo different))"
  show srun.err srun.out
fi

# --- sbatch of the MPI template -------------------------------------------------------------
export JOBLET_CACHE_DIR=$work/cache
# debug: every process logs its session ("srun, rank R of 2, ..."), which shows in its log file.
submit() { # NAME
  JOBLET_LOG_LEVEL=debug sbatch --parsable --ntasks=2 --cpus-per-task=2 -o "$work/$1-%j.out" -e "$work/$1-%j.err" \
    "$templates/mpi-job.sbatch" "$sweep" "${args[@]}"
}
check_job() { # NAME ID -> 0 when the job completed and printed the reference table
  local out=$1-$2.out err=$1-$2.err
  if [[ $(job_summary "$2") != "COMPLETED exit 0:0" ]]; then
    fail "$1 job $2: $(job_summary "$2")"
    show "$out" "$err"
    return 1
  fi
  if ! diff <(sweep_table "$out") reference.txt >/dev/null; then
    fail "$1 job $2 printed another table than the sequential run"
    show "$out" "$err"
    return 1
  fi
}

first=$(submit first) || fail "sbatch of mpi-job.sbatch failed"
wait_for_job "$first" 120
if check_job first "$first"; then
  pass "sbatch mpi-job.sbatch (job $first): COMPLETED 0:0, the sequential table"
  grep -q "2 ranks x 2 CPUs" "first-$first.out" || fail "the template did not report 2 ranks x 2 CPUs: $(head -n 1 "first-$first.out")"
fi
for rank in 0 1; do
  log=joblet-$first-$rank.log # the template's JOBLET_LOG_FILE=joblet-%j-%t.log
  if grep -q "rank $rank of 2" "$log" 2>/dev/null; then
    pass "per-rank log file $log: rank $rank's lines"
  else
    fail "per-rank log file $log missing or without rank $rank's session line"
    show "$log"
  fi
done
expect_status_complete "$tasks" "after a complete run"

# A second job with the same cache computes nothing: every entry keeps its inode.
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-before
second=$(submit second) || fail "the second sbatch failed"
wait_for_job "$second" 120
entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >entries-after
if check_job second "$second"; then
  recomputed=$(count_new_entries entries-before entries-after)
  if (($(count_lines entries-before) == tasks && recomputed == 0)); then
    pass "second job $second: the same table, 0 of $tasks tasks recomputed"
  else
    fail "second job $second: $recomputed tasks recomputed, $(count_lines entries-before) entries before it (expected $tasks and 0)"
  fi
fi

finish
