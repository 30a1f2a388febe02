#!/usr/bin/env bash
# Compute-once across nodes on the network filesystem: six independent processes (two on each
# of three nodes) run the same cached campaign at once; every task is computed exactly once in
# total, none is lost, and every process returns the same results.
# Usage: compute_once.sh CLUSTER_CAMPAIGN
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
begin_cluster_test compute-once CLUSTER_CAMPAIGN "$@"
campaign=${programs[0]}
tasks=40

# srun starts the six at once; each is a plain process (no MPI) with its own threads.
if timeout 300 srun -N 3 -n 6 "$campaign" "$work/cache" "$tasks" 50 >runs.txt 2>runs.err; then
  pass "six processes on three nodes finished"
else
  fail "srun of the campaign"
  show runs.txt runs.err
fi
computed=$(sed -n 's/.* computed=\([0-9]*\) .*/\1/p' runs.txt | paste -sd+ | bc)
hosts=$(sed -n 's/^host=\([^ ]*\) .*/\1/p' runs.txt | sort -u | tr '\n' ' ')
sums=$(sed -n 's/.* sum=\([0-9]*\)$/\1/p' runs.txt | sort -u)
expected_sum=$(( (tasks - 1) * tasks * (2 * tasks - 1) / 6 ))
if [[ $(grep -c . runs.txt) == 6 && $hosts == "node1 node2 node3 " ]]; then
  pass "one line from each of six processes on node1, node2 and node3"
else
  fail "process reports"
  show runs.txt
fi
if [[ $computed == "$tasks" ]]; then pass "the $tasks tasks were computed $computed times in total"; else fail "computed $computed times for $tasks tasks"; show runs.txt runs.err; fi
if [[ $sums == "$expected_sum" ]]; then pass "every process returned the same, right results"; else fail "sums: $sums (expected $expected_sum)"; fi
entries=$(entry_snapshot "$work/cache" cluster.square | grep -c . || true)
if [[ $entries == "$tasks" ]]; then pass "$tasks cache entries"; else fail "$entries cache entries"; fi
leftovers() { find "$work/cache" \( -name '.*' -o -name '*.lock' \) -type f ! -path '*/.campaigns/*' ! -name '.joblet*'; }
if [[ -z $(leftovers) ]]; then
  pass "no temporary or lock file left"
else
  fail "left behind: $(leftovers | head -n 3)"
fi

# A name this node's client remembers as missing (sshfs's negative_timeout, NFS's attribute
# cache): node1 looks an entry up, node2 publishes it, and node1's run, made while its client
# still answers "no such file", takes it from the cache instead of computing it again: the
# compute-once lock's holder looks once more, past the client's memory (Store::load_unseen).
"$campaign" "$work/probe" 1 0 >/dev/null
entry=$(find "$work/probe/cluster.square" -type f -regextype posix-extended -regex '.*/[0-9a-f]{32}' -printf '%P\n')
remembered=
for attempt in 1 2 3; do
  cache=$work/unseen-$attempt
  mkdir -p "$cache/cluster.square/$(dirname "$entry")"
  "$on_node" node1 stat "$cache/cluster.square/$entry" >/dev/null 2>&1 || true
  on_node_env node2 "$campaign" "$cache" 1 0 >/dev/null
  # Only while node1 still cannot see the entry does the next step test anything.
  "$on_node" node1 stat "$cache/cluster.square/$entry" >/dev/null 2>&1 && continue
  remembered=$attempt
  on_node_env node1 "$campaign" "$cache" 1 0 >unseen.txt 2>&1
  break
done
if [[ -z $remembered ]]; then
  fail "node1's client never remembered the missing entry long enough (3 tries)"
elif grep -q " computed=0 hits=1 " unseen.txt; then
  pass "node1 found the entry node2 published while its client still said it was missing"
else
  fail "node1 recomputed an entry node2 had published (its client still said it was missing)"
  show unseen.txt
fi

finish
