#!/usr/bin/env bash
# The example sweep across three nodes: under srun -N 3 -n 6 and under mpirun with a hostfile
# (ranks on three hosts, talking over TCP; two ranks per node share memory), its table is the
# one a local run prints, and `joblet info` on every rank names that rank's node.
# Usage: sweep.sh ISING_SWEEP JOBLET
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
begin_cluster_test sweep "ISING_SWEEP JOBLET" "$@"
sweep=${programs[0]}
joblet=${programs[1]}
args=(--size 8 --temperatures 12 --sweeps 300 --verbose 0)

"$sweep" "${args[@]}" --no-cache >local.txt 2>local.err || { fail "local run"; show local.err; }

if timeout 120 srun -N 3 -n 6 "$sweep" "${args[@]}" --backend mpi --cache "$work/srun-cache" >srun.txt 2>srun.err &&
  cmp -s local.txt srun.txt && grep -q "on backend mpi with 6 workers" srun.err; then
  pass "srun -N 3 -n 6: the local run's table"
else
  fail "srun -N 3 -n 6"
  show srun.txt srun.err
fi

printf 'node%s slots=2\n' 1 2 3 >hosts
if timeout 120 "${mpirun_nodes[@]}" --hostfile hosts -n 6 "$sweep" "${args[@]}" --backend mpi --cache "$work/mpirun-cache" \
  >mpirun.txt 2>mpirun.err && cmp -s local.txt mpirun.txt && grep -q "on backend mpi with 6 workers" mpirun.err; then
  pass "mpirun across the nodes (hostfile, -n 6): the local run's table"
else
  fail "mpirun across the nodes"
  show mpirun.txt mpirun.err
fi

# A second run on another layout reads every result the first computed, from every node.
entry_snapshot "$work/srun-cache" ising.simulate >before.txt
if timeout 120 srun -N 3 -n 3 "$sweep" "${args[@]}" --backend mpi --cache "$work/srun-cache" >again.txt 2>again.err &&
  cmp -s local.txt again.txt; then
  entry_snapshot "$work/srun-cache" ising.simulate >after.txt
  if [[ $(count_lines before.txt) == 12 && $(count_new_entries before.txt after.txt) == 0 ]]; then
    pass "srun -N 3 -n 3 on the first run's cache: the same table, nothing recomputed"
  else
    fail "the rerun recomputed $(count_new_entries before.txt after.txt) of $(count_lines before.txt) entries"
  fi
else
  fail "rerun from the shared cache"
  show again.txt again.err
fi

timeout 60 srun -N 3 -n 3 "$joblet" info >info.txt 2>&1 || true
for rank in 0 1 2; do
  node=node$((rank + 1))
  if awk -v r="rank $rank of 3" -v n="$node" '
      /^launcher/ { mine = index($0, r) > 0 }
      mine && $1 == "node" { found = ($2 == n) }
      END { exit !found }' info.txt; then
    pass "joblet info on rank $rank names $node"
  else
    fail "joblet info on rank $rank does not name $node"
    show info.txt
  fi
done

finish
