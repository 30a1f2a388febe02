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
  trap 'close_gate; rm -rf -- "$work"' EXIT
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

# --- Synchronising on states, not on durations -------------------------------------------------
# A test that must act mid-run (a signal, a kill) cannot count on the job still having work
# left "a few seconds" later: under load the job may finish first, or the signal may come late.
# Instead the test holds back the tasks it needs unfinished, and stops the program while it
# delivers a signal, so that every check below holds whatever the speed of the machine.

# The sweep's task keys ("<2 hex>/<32 hex>", as entry_snapshot lists them) in the order the tasks
# run: from a sequential run with a cache of its own, which computes task 0, 1, 2, ... one at a
# time, so the entries' modification times give the order. Every backend computes the same keys
# (a key is the hash of the function, its version and the arguments), and claims tasks in this
# order.
task_keys() { # CACHE
  find "$1/ising.simulate" -mindepth 2 -maxdepth 2 -type f -regextype posix-extended -regex '.*/[0-9a-f]{32}' \
    -printf '%T@ %P\n' | sort -n | cut -d' ' -f2
}

# The gate: joblet's own compute-once locks (storage/src/entry_lock.cpp), held by the test on
# tasks of the sweep in $JOBLET_CACHE_DIR. A task whose lock a live process holds waits for it
# (polling, at most every 0.5 s), so no job can finish a gated task, nor end, until the test
# releases it. Each lock is made as joblet makes it (content written first, then link()), names a
# live process on this host (the gate's heartbeat) and has its mtime refreshed every second (a
# waiter takes a lock over once it has not changed for 60 s).
gate_pid=
gate_dir=
hold_gate() { # KEY...
  local host
  close_gate
  host=$(hostname)
  host=${host//[^a-zA-Z0-9-]/_}
  host=${host:0:64}
  gate_dir=$work/gate
  rm -rf -- "$gate_dir"
  mkdir -p "$gate_dir"
  printf '%s\n' "$@" >"$gate_dir/keys"
  (
    trap 'exit 0' TERM
    lock_of() { echo "$JOBLET_CACHE_DIR/ising.simulate/$1.lock"; }
    while read -r key; do
      mkdir -p "$JOBLET_CACHE_DIR/ising.simulate/${key%/*}" || exit 1
      temporary=$JOBLET_CACHE_DIR/ising.simulate/${key%/*}/.gate.$BASHPID.tmp
      printf 'joblet compute-once lock\nhost %s\npid %s\ntoken %s\n' "${host:-host}" "$BASHPID" "$RANDOM$RANDOM" \
        >"$temporary" || exit 1
      ln "$temporary" "$(lock_of "$key")" || { rm -f "$temporary"; exit 1; }
      rm -f "$temporary"
      # Its inode: release_gate removes the lock only while it is still this one.
      echo "$key $(stat -c %i "$(lock_of "$key")")" >>"$gate_dir/held"
    done <"$gate_dir/keys"
    touch "$gate_dir/ready"
    # The heartbeat: a period, not a synchronisation. In the background so that TERM ends it at once.
    while true; do
      while read -r key _; do touch -c "$(lock_of "$key")"; done <"$gate_dir/held"
      sleep 1 &
      wait $!
    done
  ) &
  gate_pid=$!
  until [[ -e $gate_dir/ready ]]; do
    if ! kill -0 "$gate_pid" 2>/dev/null; then
      fail "could not hold the compute-once locks of the gate (keys: $*)"
      gate_pid=
      return 1
    fi
    sleep 0.05
  done
}
# Releases the gate's locks on KEYs (all of them without arguments), in that order. The gate's
# process stays alive meanwhile, so that no waiter takes a lock over while it is being removed.
release_gate() { # [KEY...]
  [[ -n $gate_dir && -e $gate_dir/held ]] || return 0
  local key inode held_keys
  if (($# == 0)); then
    mapfile -t held_keys < <(cut -d' ' -f1 "$gate_dir/held")
    set -- "${held_keys[@]}"
  fi
  for key; do
    inode=$(sed -n "s|^$key ||p" "$gate_dir/held")
    [[ -n $inode && $(stat -c %i "$JOBLET_CACHE_DIR/ising.simulate/$key.lock" 2>/dev/null) == "$inode" ]] &&
      rm -f "$JOBLET_CACHE_DIR/ising.simulate/$key.lock"
  done
}
# Releases every lock still held and ends the gate's process (also on exit: begin_scenario).
close_gate() {
  [[ -n $gate_pid ]] || return 0
  release_gate
  kill -TERM "$gate_pid" 2>/dev/null
  wait "$gate_pid" 2>/dev/null
  gate_pid=
}

# The program's own processes in a job (every rank; not the batch script, srun or slurmstepd).
program_pids() { # JOBID PROGRAM
  local pid
  for pid in $(job_pids "$1"); do
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$2" ]] && echo "$pid"
  done
}
# Whether signal number SIG is pending for process PID (sent to the process, not yet delivered).
signal_pending() { # PID SIG
  local mask
  mask=$(sed -n 's/^ShdPnd:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null)
  [[ -n $mask ]] && (((16#$mask >> ($2 - 1)) & 1))
}
# Whether every thread of PID is stopped (SIGSTOP).
all_stopped() { # PID
  local stat state any=0
  for stat in /proc/"$1"/task/*/stat; do
    state=$(sed 's/^.*) \(.\).*/\1/' "$stat" 2>/dev/null) || return 1
    [[ $state == T ]] || return 1
    any=1
  done
  ((any))
}
# Stops (SIGSTOP) the program's processes of JOB and waits until every thread of each is stopped:
# from then on the job makes no progress until continue_program. Sets stopped_pids.
stopped_pids=()
stop_program() { # JOB PROGRAM
  local job=$1 pid
  mapfile -t stopped_pids < <(program_pids "$job" "$2")
  if ((${#stopped_pids[@]} == 0)); then
    fail "job $job: no process of $2 to stop ($(job_summary "$job"))"
    return 1
  fi
  kill -STOP "${stopped_pids[@]}"
  for pid in "${stopped_pids[@]}"; do
    until all_stopped "$pid"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        kill -CONT "${stopped_pids[@]}" 2>/dev/null
        fail "job $job: process $pid ended before it could be stopped ($(job_summary "$job"))"
        return 1
      fi
      sleep 0.05
    done
  done
}
# Cancels or signals JOB with `scancel SCANCEL-OPTIONS... JOB` while its program is stopped, and
# lets the program go on once signal SIG has reached every process of it: pending in it (Slurm
# sends a signal to a stopped process, which keeps it pending), or the process was continued
# by Slurm itself (a plain scancel sends SIGCONT just before SIGTERM). When the program runs
# again it has the signal, however slowly Slurm delivered it. Fails (returns 1) if the signal
# does not arrive within 120 s.
signal_stopped_program() { # JOB SIG SCANCEL-OPTIONS...
  local job=$1 number pid waited=0
  number=$(kill -l "$2") || return 1
  shift 2
  if ! scancel "$@" "$job"; then
    kill -CONT "${stopped_pids[@]}" 2>/dev/null
    fail "scancel $* $job failed"
    return 1
  fi
  for pid in "${stopped_pids[@]}"; do
    until signal_pending "$pid" "$number" || ! all_stopped "$pid"; do
      if ((waited >= 1200)); then
        kill -CONT "${stopped_pids[@]}" 2>/dev/null
        fail "job $job: scancel $* did not reach process $pid in $((waited / 10)) s"
        return 1
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
  done
  kill -CONT "${stopped_pids[@]}" 2>/dev/null
  return 0
}
