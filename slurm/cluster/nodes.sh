# shellcheck shell=bash disable=SC2034,SC2154  # variables set here are used by the scripts that source it; root, run_dir, log_dir come from common.sh
# The multi-node cluster's nodes: Linux namespaces on this machine (network, UTS, IPC, mount and
# PID), one per node plus one for the head, on a bridge that only they and this host use.
# Sourced by start, stop, status and on-node after common.sh; never run.
#
#   head      10.93.117.1    slurmctld, and sshd exporting <root>/shared (the network filesystem)
#   nodeK     10.93.117.(10+K)  slurmd, its own /tmp and /dev/shm, <root>/shared mounted by sshfs
#   this host 10.93.117.254  the "login node": sbatch, srun, sinfo, joblet status
#
# Each namespace is held by one process (PID 1 of its PID namespace, argv[0] "joblet-node:NAME"):
# killing it ends every process of that node at once, and with them its mounts, its network
# namespace and the host end of its veth link. No default route, no forwarding: traffic stays
# between these namespaces and the host.

# One private /24 used by nothing else on these machines (checked by start).
readonly JOBLET_CLUSTER_NET=${LOCAL_CLUSTER_NET:-10.93.117}
readonly JOBLET_CLUSTER_BRIDGE=jbr-joblet
readonly JOBLET_CLUSTER_HOST_IP=$JOBLET_CLUSTER_NET.254
readonly JOBLET_CLUSTER_HEAD_IP=$JOBLET_CLUSTER_NET.1
# The multi-node cluster's state root must be visible on every node, so not under /tmp (each
# node has its own).
readonly JOBLET_CLUSTER_DEFAULT_DIR=/var/tmp/joblet-cluster

set_node_paths() {
  nodes_file=$root/nodes # "NAME ADDRESS" per line, head first: present only for a multi-node root
  ssh_dir=$root/ssh
  shared_dir=$root/shared # the export; mounted over itself on every node, so one path everywhere
  hosts_file=$root/hosts
  mount_options_file=$root/mount-options
}

node_address() { # K -> the address of nodeK
  printf '%s.%s\n' "$JOBLET_CLUSTER_NET" "$((10 + $1))"
}

# The PID that holds namespace NAME, when it is alive and really ours.
holder_pid() {
  local pid cmdline
  pid=$(read_pid "$run_dir/ns-$1.pid") || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == "joblet-node:$1 "* ]] || return 1
  [[ $(proc_state "$pid" 2>/dev/null) != Z ]] || return 1
  printf '%s\n' "$pid"
}

# The working directory a command entering a node keeps: its own /tmp and /dev/shm hide ours.
node_wd() {
  case $PWD in
    /tmp | /tmp/* | /dev/shm | /dev/shm/*) printf '/\n' ;;
    *) printf '%s\n' "$PWD" ;;
  esac
}

# The command that enters every namespace of node NAME, working in WD: prefix it to a command.
node_entry() { # NAME WD
  local pid
  pid=$(holder_pid "$1") ||
    die "node $1 is not running (no live holder in $run_dir/ns-$1.pid): start the cluster with slurm/cluster/start --nodes N"
  printf '%s\n' nsenter --target "$pid" --all --wd="$2" --
}

# Runs CMD inside every namespace of NAME (as ssh into that node would), with our environment.
in_node() { # NAME CMD...
  local name=$1 text
  local -a entry
  shift
  text=$(node_entry "$name" "$(node_wd)") || exit 1
  mapfile -t entry <<<"$text" # one word per line: a working directory may hold blanks
  "${entry[@]}" "$@"
}

# Starts the holder of namespace NAME with ADDRESS on the bridge.
start_namespace() { # NAME ADDRESS
  local name=$1 address=$2 unshare_pid pid waited=0
  rm -f -- "$run_dir/ns-$name.pid" "$run_dir/ns-$name.unshare"
  # Like launch_daemon: none of our descriptors, or $(start) would wait for the holder forever.
  # The holder makes the node's own /tmp, /dev/shm and /etc/hosts, then sleeps as PID 1.
  # shellcheck disable=SC2016  # expanded by the holder's bash
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if ((fd > 2 && fd != 255)); then exec {fd}>&-; fi
    done
    printf '%s\n' "$BASHPID" >"$run_dir/ns-$name.unshare"
    exec unshare --net --uts --ipc --mount --pid --fork --mount-proc --propagation private \
      bash -c 'set -e
        hostname "$1"
        mount -t tmpfs -o mode=1777,size=1g "joblet-$1-tmp" /tmp
        mount -t tmpfs -o mode=1777 "joblet-$1-shm" /dev/shm
        mount --bind "$2" /etc/hosts
        exec -a "joblet-node:$1" sleep infinity' holder "$name" "$hosts_file" \
      </dev/null >>"$log_dir/ns-$name.log" 2>&1
  ) &
  until unshare_pid=$(read_pid "$run_dir/ns-$name.unshare") &&
    pid=$(awk '{ print $1 }' "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null) && [[ -n $pid ]] &&
    [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == "joblet-node:$name "* ]]; do
    ((waited < 100)) || die "node $name did not start: $(tail -n 3 "$log_dir/ns-$name.log" 2>/dev/null)"
    sleep 0.05
    waited=$((waited + 1))
  done
  printf '%s\n' "$pid" >"$run_dir/ns-$name.pid"
  ip link add "jv-$name" type veth peer name eth0 netns "$pid"
  ip link set "jv-$name" master "$JOBLET_CLUSTER_BRIDGE" up
  nsenter --target "$pid" --net -- sh -c "ip link set lo up && ip addr add $address/24 dev eth0 && ip link set eth0 up"
}

# Whether PID is still a live process: a process whose stat can no longer be read is gone (it was
# reaped between two looks), as is a zombie.
holder_alive() { # PID
  local state
  state=$(proc_state "$1" 2>/dev/null) && [[ $state != Z ]]
}

# Kills the holder of NAME (and so every process of that node) and waits until it is gone.
stop_namespace() { # NAME
  local name=$1 pid waited=0
  if pid=$(holder_pid "$name"); then
    kill -KILL "$pid" 2>/dev/null || true
    # The kernel tears the namespace down after its last process: a loaded machine with an
    # sshfs server to end in it has taken over 5 s.
    while holder_alive "$pid" && ((waited < 600)); do
      sleep 0.05
      waited=$((waited + 1))
    done
    if holder_alive "$pid"; then
      note "error: node $name's holder $pid survived SIGKILL (state $(proc_state "$pid" 2>/dev/null))"
      return 1
    fi
  fi
  # The veth's host end goes with the namespace; a leftover from a crash is removed here.
  ip link del "jv-$name" 2>/dev/null || true
  rm -f -- "$run_dir/ns-$name.pid" "$run_dir/ns-$name.unshare"
}

# Every namespace name of this root, head first.
node_names() {
  [[ -r $nodes_file ]] || return 0
  awk '{ print $1 }' "$nodes_file"
}

stop_nodes() {
  local rc=0 name
  for name in $(node_names); do
    stop_namespace "$name" || rc=1
  done
  # The daemons' pid files hold PIDs of the nodes' own PID namespaces: meaningless now.
  rm -f -- "$run_dir"/slurmd-*.pid "$ctld_pidfile"
  if [[ -e /sys/class/net/$JOBLET_CLUSTER_BRIDGE ]]; then
    ip link del "$JOBLET_CLUSTER_BRIDGE" 2>/dev/null || { note "error: cannot remove bridge $JOBLET_CLUSTER_BRIDGE"; rc=1; }
  fi
  return "$rc"
}

# The bridge, with this host's address on it. Refuses a subnet that something else uses.
start_bridge() {
  if ip -o -4 addr show | awk '{ print $4 }' | grep -q "^${JOBLET_CLUSTER_NET//./\\.}\."; then
    [[ -e /sys/class/net/$JOBLET_CLUSTER_BRIDGE ]] ||
      die "subnet $JOBLET_CLUSTER_NET.0/24 is already used on this machine; set LOCAL_CLUSTER_NET to a free 10.x.y"
  fi
  if ip route show | grep -v "dev $JOBLET_CLUSTER_BRIDGE" | grep -q "^${JOBLET_CLUSTER_NET//./\\.}\."; then
    die "a route to $JOBLET_CLUSTER_NET.0/24 exists on this machine; set LOCAL_CLUSTER_NET to a free 10.x.y"
  fi
  ip link del "$JOBLET_CLUSTER_BRIDGE" 2>/dev/null || true
  ip link add "$JOBLET_CLUSTER_BRIDGE" type bridge
  ip addr add "$JOBLET_CLUSTER_HOST_IP/24" dev "$JOBLET_CLUSTER_BRIDGE"
  ip link set "$JOBLET_CLUSTER_BRIDGE" up
}

# Test-only ssh: keys made per start, key-only root login, sftp for sshfs, listening on the head's
# address inside its namespace only.
write_ssh_config() {
  rm -rf -- "$ssh_dir"
  mkdir -m 0700 -- "$ssh_dir"
  ssh-keygen -q -t ed25519 -N '' -C joblet-cluster-host -f "$ssh_dir/host_key"
  ssh-keygen -q -t ed25519 -N '' -C joblet-cluster-client -f "$ssh_dir/client_key"
  cp -- "$ssh_dir/client_key.pub" "$ssh_dir/authorized_keys"
  printf 'head,%s %s\n' "$JOBLET_CLUSTER_HEAD_IP" "$(cut -d' ' -f1,2 "$ssh_dir/host_key.pub")" >"$ssh_dir/known_hosts"
  cat >"$ssh_dir/sshd_config" <<SSHD
# Generated by joblet's slurm/cluster/start: the head's sshd, serving sshfs to the nodes.
ListenAddress $JOBLET_CLUSTER_HEAD_IP
HostKey $ssh_dir/host_key
PidFile none
AuthorizedKeysFile $ssh_dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
Subsystem sftp internal-sftp
SSHD
}

# sshfs options. weak: attributes, directory entries and data cached for a few seconds, as an
# NFS client with its default actimeo does; strict: nothing cached, every stat goes to the server.
mount_options_for() { # weak|strict
  local common="IdentityFile=$ssh_dir/client_key,UserKnownHostsFile=$ssh_dir/known_hosts,StrictHostKeyChecking=yes"
  common+=",BatchMode=yes,ServerAliveInterval=5,ServerAliveCountMax=3"
  case $1 in
    weak) printf '%s\n' "$common,attr_timeout=3,entry_timeout=3,negative_timeout=3,cache_timeout=3" ;;
    strict) printf '%s\n' "$common,cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0,dir_cache=no" ;;
    *) die "--mount must be weak or strict, not '$1'" ;;
  esac
}

mount_shared() { # NAME
  # 8>&-: the daemon must not keep start's lock (see launch_daemon).
  in_node "$1" sshfs -o "$(<"$mount_options_file")" "root@head:$shared_dir" "$shared_dir" 8>&- \
    >>"$log_dir/sshfs-$1.log" 2>&1 || die "node $1 cannot mount $shared_dir: $(tail -n 3 "$log_dir/sshfs-$1.log")"
}
