#!/usr/bin/env bash
# Smoke test of the local test cluster: srun, sbatch, job arrays and MPI under srun.
# Usage: slurm/cluster/with-cluster tests/slurm/cluster_smoke.sh (as CTest runs it), or just
# tests/slurm/cluster_smoke.sh, which wraps itself when SLURM_CONF is not set.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
ensure_cluster "$(realpath "$0")" "$@"
here=$slurm_tests_dir
# Job output must land where slurmd (same machine, root) can write and we can read.
work=$(mktemp -d /tmp/joblet-slurm-smoke.XXXXXX)
trap 'rm -rf -- "$work"' EXIT
cd "$work"

# --- srun -----------------------------------------------------------------------------------
mapfile -t hosts < <(timeout 30 srun -n 2 hostname)
if ((${#hosts[@]} == 2)); then pass "srun -n 2 hostname: ${hosts[*]}"; else fail "srun -n 2 hostname gave '${hosts[*]}'"; fi

# --- sbatch: output file and exit codes -----------------------------------------------------
cat >ok.sh <<'JOB'
#!/bin/bash
echo "hello from job $SLURM_JOB_ID on $(hostname)"
JOB
cat >bad.sh <<'JOB'
#!/bin/bash
echo "about to fail"
exit 3
JOB
ok_id=$(sbatch --parsable -o "$work/ok-%j.out" ok.sh)
bad_id=$(sbatch --parsable -o "$work/bad-%j.out" bad.sh)
wait_for_job "$ok_id" && wait_for_job "$bad_id"
if grep -q "hello from job $ok_id" "ok-$ok_id.out" 2>/dev/null &&
  [[ $(job_field "$ok_id" JobState) == COMPLETED && $(job_field "$ok_id" ExitCode) == 0:0 ]]; then
  pass "sbatch job $ok_id: COMPLETED, ExitCode 0:0, output file"
else
  fail "sbatch job $ok_id: state $(job_field "$ok_id" JobState), exit $(job_field "$ok_id" ExitCode), output '$(cat "ok-$ok_id.out" 2>/dev/null)'"
fi
if [[ $(job_field "$bad_id" JobState) == FAILED && $(job_field "$bad_id" ExitCode) == 3:0 ]] &&
  grep -q "about to fail" "bad-$bad_id.out" 2>/dev/null; then
  pass "sbatch job $bad_id: FAILED, ExitCode 3:0"
else
  fail "sbatch job $bad_id: state $(job_field "$bad_id" JobState), exit $(job_field "$bad_id" ExitCode)"
fi

# --- job array ------------------------------------------------------------------------------
cat >array.sh <<'JOB'
#!/bin/bash
echo "task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID"
JOB
array_id=$(sbatch --parsable --array=0-3 -o "$work/array-%A_%a.out" array.sh)
wait_for_job "$array_id"
array_ok=1
for i in 0 1 2 3; do
  if ! grep -qx "task $i of job $array_id" "array-${array_id}_$i.out" 2>/dev/null; then
    fail "array task $i: '$(cat "array-${array_id}_$i.out" 2>/dev/null)'"
    array_ok=0
  fi
  [[ $(job_field "${array_id}_$i" ExitCode) == 0:0 ]] || { fail "array task $i exit $(job_field "${array_id}_$i" ExitCode)"; array_ok=0; }
done
((array_ok)) && pass "sbatch --array=0-3 job $array_id: 4 outputs, all ExitCode 0:0"

# --- MPI under srun -------------------------------------------------------------------------
if command -v mpicc >/dev/null; then
  mpicc -O1 -o mpi_hello "$here/mpi_hello.c"
  mpi_out=$(timeout 60 srun --mpi=pmix -n 2 ./mpi_hello | sort) || true
  if [[ $mpi_out == $'rank 0 of 2 sum 1\nrank 1 of 2 sum 1' ]]; then
    pass "srun --mpi=pmix -n 2 mpi_hello"
  else
    fail "srun --mpi=pmix -n 2 mpi_hello printed '$mpi_out'"
  fi
else
  echo "skip MPI under srun: mpicc not found (install libopenmpi-dev)"
fi

finish
