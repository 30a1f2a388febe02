# shellcheck shell=bash disable=SC2034  # templates and the helpers are used by the scripts that source this
# Shared by the Slurm test scripts: wrapping in with-cluster, reporting, polling jobs, reading
# their exit codes, and counting cache entries. Sourced, never run.

slurm_tests_dir=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
repo_root=$(realpath "$slurm_tests_dir/../..")
templates=$repo_root/slurm/templates

# Re-runs the calling script inside slurm/cluster/with-cluster unless a cluster is already given
# (SLURM_CONF set: CTest runs the scripts through with-cluster itself).
ensure_cluster() { # "$0" "$@"
  if [[ -z ${SLURM_CONF:-} ]]; then
    exec "$repo_root/slurm/cluster/with-cluster" "$@"
  fi
}

failures=0
# The start of every scenario script: its two arguments (the example sweep and the joblet
# program), and a scratch folder where slurmd (same machine, root) writes job output and the test
# reads it, removed on exit. Sets sweep, joblet and work, and enters work.
begin_scenario() { # NAME "$@"
  local name=$1
  shift
  (($# == 2)) || { echo "usage: $0 ISING_SWEEP JOBLET" >&2; exit 2; }
  sweep=$(realpath "$1")
  joblet=$(realpath "$2")
  work=$(mktemp -d "/tmp/joblet-slurm-$name.XXXXXX")
  trap 'rm -rf -- "$work"' EXIT
  cd "$work" || exit 1
}

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
step_start=$SECONDS
pass() {
  echo "ok   $* ($((SECONDS - step_start)) s)"
  step_start=$SECONDS
}
# Prints a step's own output when it failed, indented, so the CTest log explains the failure.
show() { # FILE...
  local f
  for f in "$@"; do
    echo "---- $f" >&2
    if [[ -r $f ]]; then sed 's/^/    /' "$f" >&2; else echo "    (missing)" >&2; fi
  done
}
finish() {
  if ((failures)); then
    echo "$failures check(s) failed; controller log: $(dirname "$SLURM_CONF")/log/slurmctld.log" >&2
    exit 1
  fi
  echo "all checks passed ($SECONDS s)"
}

# Polls instead of 'sbatch --wait', which polls every 2-10 s. Bounded so that a stuck job fails
# the test instead of hanging it.
wait_for_job() { # JOBID [SECONDS]
  local limit=$((${2:-120} * 10)) waited=0
  while [[ -n $(squeue -h -j "$1" 2>/dev/null) ]]; do
    if ((waited >= limit)); then
      fail "job $1 still in the queue after $((limit / 10)) s: $(squeue -h -j "$1" -o '%i %T %r' 2>&1 | tr '\n' ' ')"
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# Accounting is off, so the state and exit code come from the controller's job record (kept
# MinJobAge). For an array, pass JOB_ELEMENT (123_2).
job_field() { # JOBID FIELD -> value of FIELD=... in the first record
  scontrol show job "$1" 2>/dev/null | tr -s ' \n' '\n' | sed -n "s/^$2=//p" | head -n 1
}
job_summary() { # JOBID -> "STATE exit CODE"
  echo "$(job_field "$1" JobState) exit $(job_field "$1" ExitCode)"
}

# Cache entries of a function: <cache>/<function>/<2 hex>/<32 hex> (storage/include/joblet/store.hpp).
# Listed as "inode path" so that a snapshot taken before a run tells which entries the run left
# untouched: a recomputed entry is published by rename() of a new file, so it gets a new inode.
entry_snapshot() { # CACHE FUNCTION
  [[ -d $1/$2 ]] || return 0
  find "$1/$2" -mindepth 2 -maxdepth 2 -type f -regextype posix-extended -regex '.*/[0-9a-f]{32}' \
    -printf '%i %P\n' | sort
}
count_lines() { # FILE -> number of non-empty lines
  grep -c . "$1" 2>/dev/null || true
}
# Entries in AFTER that are not in BEFORE with the same inode: the tasks a run computed.
count_new_entries() { # BEFORE AFTER
  comm -13 "$1" "$2" | grep -c . || true
}

# Entries of the sweep's simulate function in $JOBLET_CACHE_DIR.
entries() {
  entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate | grep -c .
}
# Waits until the cache holds at least COUNT entries while JOB runs; on a timeout or the job's
# end, fails and shows the job's PREFIX-JOB.out and .err.
wait_for_entries() { # JOB COUNT PREFIX
  local waited=0
  while (($(entries) < $2)); do
    if ((waited >= 1200)) || [[ -z $(squeue -h -j "$1") ]]; then
      fail "job $1: fewer than $2 entries after $((waited / 10)) s ($(job_summary "$1"))"
      show "$3-$1.out" "$3-$1.err"
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# `joblet status` must exit 0 and list the sweep's campaign with TASKS of TASKS done, none missing.
expect_status_complete() { # TASKS WHEN
  local out status=0
  out=$("$joblet" status --dir "$JOBLET_CACHE_DIR" 2>&1) || status=$?
  if ((status == 0)) && grep -Eq "^ising\.simulate-[0-9a-f]+ +$1 +$1 +0 " <<<"$out"; then
    pass "joblet status $2: $1 of $1 done"
  else
    fail "joblet status exited $status $2:"$'\n'"$out"
  fi
}

# The sweep's table, from its title to its last line: a job's output file also holds the
# templates' and Slurm's lines.
sweep_table() { # FILE
  sed -n '/^2D Ising model/,/^chi peaks/p' "$1"
}

# The processes of a job on this node: its batch script, srun and the tasks of every step (they
# all carry SLURM_JOB_ID in their environment; the slurmstepd daemons do not).
job_pids() { # JOBID
  grep -lzx "SLURM_JOB_ID=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3
}
