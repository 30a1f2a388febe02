# shellcheck shell=bash disable=SC2034  # the variables set here are used by the scripts that source it
# Shared by start, stop, status, with-cluster and on-node: paths, option parsing and process
# checks. Sourced, never run: the callers set `set -euo pipefail` themselves.
# A state root holds either the single-node cluster (slurmctld and slurmd on this host) or the
# multi-node one (start --nodes N: namespaces as nodes, see nodes.sh), never both.

# Slurm's default ports. Only one Slurm can listen on them per machine, which is why every
# entry point below serializes on machine-wide lock files instead of per-directory ones.
readonly JOBLET_SLURMCTLD_PORT=6817
readonly JOBLET_SLURMD_PORT=6818
# Local locks in /tmp are enough: every node of either cluster lives on this machine.
readonly JOBLET_SLURM_OPS_LOCK=/tmp/joblet-slurm.ops.lock
readonly JOBLET_SLURM_SESSION_LOCK=/tmp/joblet-slurm.lock
# Marks a directory as ours so that `stop --purge` never deletes a directory it did not create.
readonly JOBLET_SLURM_MARKER=.joblet-slurm-root

prog=$(basename "$0")

note() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
  note "error: $*"
  exit 1
}

# Resolves the state root: --dir beats $JOBLET_SLURM_DIR (multi-node: $LOCAL_CLUSTER_DIR) beats
# the default. Always absolute, because the generated slurm.conf is read by daemons whose
# working directory is elsewhere.
resolve_dir() { # DIR_ARG [multi]
  local dir=$1
  if [[ -z $dir && ${2-} == multi ]]; then
    dir=${LOCAL_CLUSTER_DIR:-$JOBLET_CLUSTER_DEFAULT_DIR}
  fi
  dir=${dir:-${JOBLET_SLURM_DIR:-/tmp/joblet-slurm}}
  [[ -n $dir && $dir != / ]] || die "refusing state root '$dir'"
  # slurm.conf has no quoting: a path with blanks would be cut at the first one.
  [[ $dir != *[[:space:]]* ]] || die "state root '$dir' contains whitespace, which slurm.conf cannot hold"
  realpath -m -- "$dir"
}

# For stop, status and with-cluster without --dir: the multi-node root while a multi-node cluster
# is up there (its nodes file exists only then), else the single-node one.
resolve_existing_dir() { # DIR_ARG
  local multi
  if [[ -z $1 ]]; then
    multi=$(resolve_dir "" multi)
    if [[ -e $multi/nodes ]]; then
      printf '%s\n' "$multi"
      return
    fi
  fi
  resolve_dir "$1"
}

set_paths() {
  # Everything below is derived from root and some of it gets deleted: never let it be empty.
  [[ $1 == /?* ]] || die "refusing state root '$1': it must be an absolute path below /"
  root=$1
  conf=$root/slurm.conf
  env_file=$root/env
  run_dir=$root/run
  log_dir=$root/log
  state_dir=$root/state
  spool_dir=$root/spool
  ctld_pidfile=$run_dir/slurmctld.pid
  slurmd_pidfile=$run_dir/slurmd.pid
  # Present only while munged runs because start launched it: stop kills munged only then.
  munged_pidfile=$run_dir/munged.pid
  # Written by with-cluster; its watchdog stops the cluster only while this still names its parent.
  owner_file=$run_dir/with-cluster.owner
  ctld_log=$log_dir/slurmctld.log
  slurmd_log=$log_dir/slurmd.log
  set_node_paths
}

multi_node() { [[ -e $nodes_file ]]; }

# Takes the machine-wide lock for start/stop on fd 8 so that two of them never interleave.
# Children we leave behind (the daemons) must not inherit it: see launch_daemon.
take_ops_lock() {
  exec 8>>"$JOBLET_SLURM_OPS_LOCK"
  if ! flock -w "${JOBLET_SLURM_LOCK_TIMEOUT:-120}" 8; then
    die "timed out waiting for $JOBLET_SLURM_OPS_LOCK (another start/stop is running)"
  fi
}

read_pid() {
  local file=$1 pid=
  if [[ -r $file ]]; then
    read -r pid <"$file" || true # a pid file without a final newline still sets pid
  fi
  [[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
}

# The one-letter state of PID (R, S, D, Z, ...), from /proc rather than ps: minimal CI images
# lack procps. The state follows the last ')' because the command name may contain spaces.
proc_state() {
  local stat
  # 2>/dev/null comes first so that it also silences the failing '<' of a vanished process.
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  stat=${stat##*) }
  printf '%s\n' "${stat%% *}"
}

# The parent PID of PID (the field after the state).
proc_ppid() {
  local stat
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  stat=${stat##*) }
  stat=${stat#* }
  printf '%s\n' "${stat%% *}"
}

# True when PID is a live (not zombie) process named NAME. A dead daemon whose parent has not
# reaped it yet (PID 1 here reaps late) still passes `kill -0`, hence the state check; the name
# check guards against a recycled PID taken by something else.
pid_alive() {
  local pid=$1 name=$2 comm state
  [[ -n $pid ]] || return 1
  read -r comm 2>/dev/null <"/proc/$pid/comm" || return 1
  [[ $comm == "$name" ]] || return 1
  state=$(proc_state "$pid") || return 1
  [[ $state != Z ]]
}

daemon_pid() { # PIDFILE NAME -> prints the PID when that daemon is alive
  local pid
  pid=$(read_pid "$1") || return 1
  pid_alive "$pid" "$2" && printf '%s\n' "$pid"
}

# True when something listens on TCP PORT. Reads /proc instead of calling ss or netstat,
# which a minimal CI image may lack.
port_listening() {
  local hex
  hex=$(printf '%04X' "$1")
  # Field 2 is local_address:port in hex, field 4 the state; 0A is LISTEN.
  awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p && $4 == "0A" { found = 1 }
                    END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

slurmctld_answers() {
  SLURM_CONF=$conf timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'
}

print_log_tails() {
  local f
  for f in "$log_dir"/*.log "$log_dir"/*.stderr; do
    [[ -s $f ]] || continue
    printf '\n==> %s (last 30 lines) <==\n' "$f" >&2
    tail -n 30 "$f" >&2
  done
}

# Sends SIGTERM, waits, then SIGKILL: a daemon stuck in shutdown must not keep the ports.
stop_pid() { # PID NAME
  local pid=$1 name=$2 waited=0 limit=$((${JOBLET_SLURM_STOP_TIMEOUT:-15} * 10))
  pid_alive "$pid" "$name" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while pid_alive "$pid" "$name" && ((waited < limit)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if pid_alive "$pid" "$name"; then
    note "$name ($pid) ignored SIGTERM for $((limit / 10)) s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    waited=0
    while pid_alive "$pid" "$name" && ((waited < 50)); do
      sleep 0.1
      waited=$((waited + 1))
    done
  fi
  if pid_alive "$pid" "$name"; then
    note "error: $name ($pid) survived SIGKILL"
    return 1
  fi
}

stop_daemon() { # PIDFILE NAME
  local pid
  if pid=$(daemon_pid "$1" "$2"); then
    stop_pid "$pid" "$2" || return 1
  fi
  rm -f -- "$1"
}

# slurmstepd outlives slurmd by design (so slurmd can restart under running jobs), so stopping
# the daemons alone would leave job steps running. Ours are the ones that log into our state
# root; matching on that rather than on the name spares any other Slurm's steps.
our_stepd_pids() {
  local p fd target comm
  for p in /proc/[0-9]*; do
    read -r comm 2>/dev/null <"$p/comm" || continue
    [[ $comm == slurmstepd ]] || continue
    for fd in "$p"/fd/*; do
      target=$(readlink "$fd" 2>/dev/null) || continue
      if [[ $target == "$root"/* ]]; then
        printf '%s\n' "${p#/proc/}"
        break
      fi
    done
  done
}

# Cancels every job of this cluster while slurmctld can still do it cleanly, so that job steps
# end before the daemons go.
cancel_jobs() {
  local waited=0
  # Only through our own controller: with our slurmctld gone, the port (and so 'scancel') could
  # belong to another Slurm on this machine.
  if multi_node; then
    holder_pid head >/dev/null || return 0
  else
    daemon_pid "$ctld_pidfile" slurmctld >/dev/null || return 0
  fi
  slurmctld_answers || return 0
  [[ -n $(SLURM_CONF=$conf squeue -h -o %i 2>/dev/null) ]] || return 0
  SLURM_CONF=$conf scancel --quiet --partition=debug 2>/dev/null || true
  # KillWait=5 bounds how long a step may ignore SIGTERM; allow a little more than that.
  while [[ -n $(SLURM_CONF=$conf squeue -h -o %i 2>/dev/null) ]] && ((waited < 80)); do
    sleep 0.1
    waited=$((waited + 1))
  done
}

# Stops everything this state root's start launched, and nothing else. Idempotent.
stop_cluster() {
  local rc=0 pid
  cancel_jobs
  if multi_node; then
    # Every daemon and job step of a node lives in its PID namespace and ends with it.
    if stop_nodes; then rm -f -- "$nodes_file"; else rc=1; fi
    if [[ -e $run_dir/made-run-sshd ]]; then
      rmdir /run/sshd 2>/dev/null || true
      rm -f -- "$run_dir/made-run-sshd"
    fi
  fi
  stop_daemon "$slurmd_pidfile" slurmd || rc=1
  stop_daemon "$ctld_pidfile" slurmctld || rc=1
  for pid in $(our_stepd_pids); do
    note "stopping leftover slurmstepd $pid"
    stop_pid "$pid" slurmstepd || rc=1
  done
  # munged is stopped only when start launched it; a munged that was already running belongs to
  # whoever started it.
  stop_daemon "$munged_pidfile" munged || rc=1
  # A stale env file would look like a usable cluster to a test that sources it.
  rm -f -- "$owner_file" "$env_file"
  return "$rc"
}

# Starts a daemon that forks into the background. It gets none of our file descriptors beyond
# the log: an inherited pipe would keep `$(start)` or CTest waiting for EOF forever, and an
# inherited lock fd would hold our flock for the daemon's whole life.
launch_daemon() { # LOGFILE CMD...
  local log=$1
  shift
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      # 255 is bash's own script fd, already close-on-exec.
      if ((fd > 2 && fd != 255)); then exec {fd}>&-; fi
    done
    exec "$@" </dev/null >>"$log" 2>&1
  )
}

# shellcheck source-path=SCRIPTDIR source=nodes.sh
source "$(dirname "${BASH_SOURCE[0]}")/nodes.sh"
