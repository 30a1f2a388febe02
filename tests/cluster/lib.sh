# shellcheck shell=bash disable=SC2034  # used by the scripts that source this
# Shared by the multi-node tests: each script runs inside `slurm/cluster/with-cluster --nodes 3`
# (CTest starts it that way), with SLURM_CONF, LOCAL_CLUSTER_DIR and LOCAL_CLUSTER_SHARED set.
# Reuses the Slurm tests' reporting and polling helpers. Sourced, never run.

cluster_tests_dir=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
# shellcheck source-path=SCRIPTDIR source=../slurm/lib.sh
source "$cluster_tests_dir/../slurm/lib.sh"
on_node=$repo_root/slurm/cluster/on-node

# Re-runs the calling script inside a 3-node cluster unless one is given.
ensure_nodes() { # "$0" "$@"
  if [[ -z ${LOCAL_CLUSTER_SHARED:-} ]]; then
    exec "$repo_root/slurm/cluster/with-cluster" --nodes 3 "$@"
  fi
}

# The start of every test script: runs it inside a 3-node cluster unless it is in one, checks
# that its arguments are the programs USAGE names, makes them absolute in `programs`, and enters
# a fresh shared folder `work` named after NAME.
begin_cluster_test() { # NAME USAGE "$@"
  local name=$1 usage=$2 program
  local -a wanted
  shift 2
  ensure_nodes "$(realpath "$0")" "$@"
  read -r -a wanted <<<"$usage"
  (($# == ${#wanted[@]})) || { echo "usage: $0 $usage" >&2; exit 2; }
  programs=()
  for program in "$@"; do programs+=("$(realpath "$program")"); done
  begin_shared_work "$name"
}

# A fresh folder on the shared filesystem (every node sees it at the same path), removed on exit.
# Job output and caches go there: each node's /tmp is its own.
begin_shared_work() { # NAME
  work=$(mktemp -d "$LOCAL_CLUSTER_SHARED/$1.XXXXXX")
  trap 'rm -rf -- "$work"' EXIT
  cd "$work" || exit 1
}

# Runs a command on a node (on-node) with the sanitizers' and joblet's settings of this
# environment: on-node, like ssh, starts clean. Values must not contain blanks (on-node joins
# words with blanks, as ssh does).
on_node_env() { # NODE CMD...
  local node=$1 variable
  local -a settings=()
  shift
  for variable in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS $(compgen -e | grep '^JOBLET_' || true); do
    if [[ -n ${!variable:-} ]]; then settings+=("$variable=${!variable}"); fi
  done
  "$on_node" "$node" env "${settings[@]}" "$@"
}

# mpirun across the nodes from this host (the login node), entering each node through on-node.
# The ranks get mpirun's environment only as -x says (on-node, like ssh, starts clean): pass on
# the sanitizers' settings (tools/sanitize) and joblet's.
mpirun_nodes=(mpirun --allow-run-as-root --oversubscribe --mca plm_rsh_agent "$on_node")
for variable in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS $(compgen -e | grep '^JOBLET_' || true); do
  if [[ -n ${!variable:-} ]]; then mpirun_nodes+=(-x "$variable"); fi
done
