#!/usr/bin/env bash
# The kill -9 campaign on the network filesystem: a cached MPI sweep over three nodes (one rank
# on each, its cache on the sshfs mounts) is killed with SIGKILL on every node at once, 20
# times, each at a random moment.
# Then the same command runs to the end. Its table is a clean run's; every entry in the cache
# verifies; nothing half-written is visible under an entry's name; and what the killed
# processes left (temporary files, their locks) is recognised as theirs and removed by
# `joblet cache prune` on their nodes.
# Usage: kill_campaign.sh ISING_SWEEP JOBLET
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
begin_cluster_test kill-campaign "ISING_SWEEP JOBLET" "$@"
sweep=${programs[0]}
joblet=${programs[1]}
# About 0.13 s a task: each run gets some done before it is killed, so the 20 kills land all
# through the campaign, and the last run has some left to do. (A run does not wait on the locks
# the previous one's killed ranks left on other nodes: it computes other tasks meanwhile, so
# each run gets well ahead.)
tasks=200
args=(--size 16 --temperatures "$tasks" --sweeps 10000 --verbose 0 --cache "$work/cache")
export JOBLET_CACHE_DIR=$work/cache
kills=20
published() { entries || true; }

"$sweep" "${args[@]}" --no-cache >reference.txt 2>reference.err || { fail "the clean run"; show reference.err; }

killed=0
for ((round = 1; round <= kills; round++)); do
  before=$(published)
  ((before < tasks)) || break
  srun -N 3 -n 3 "$sweep" "${args[@]}" >"round-$round.txt" 2>"round-$round.err" &
  run=$!
  # A random moment between 0.5 and 2 s after the start: the ranks start up in about a second,
  # then publish their results in bursts, so the kills fall before, between and during writes.
  delay=$((500 + RANDOM % 1500))
  sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
  if kill -0 "$run" 2>/dev/null; then
    # kill -9 on each node at once; each node's PID namespace holds only this run's ranks.
    for node in node1 node2 node3; do "$on_node" "$node" pkill -KILL -x "$(basename "$sweep")" & done
    wait_nodes=$(jobs -p | grep -vx "$run" || true)
    for pid in $wait_nodes; do wait "$pid" || true; done
    killed=$((killed + 1))
    echo "round $round: killed after $delay ms, $before results before"
  fi
  wait "$run" 2>/dev/null || true
done
done_before=$(published)
if ((killed == kills && done_before < tasks)); then
  pass "$killed runs killed with SIGKILL on every rank; $done_before of $tasks results published meanwhile"
else
  fail "$killed of $kills runs killed before the end ($done_before of $tasks published)"
fi

if timeout 300 srun -N 3 -n 3 "$sweep" "${args[@]}" >final.txt 2>final.err && cmp -s reference.txt final.txt; then
  pass "the run to the end prints the clean run's table"
else
  fail "the final run"
  show final.txt final.err
fi

entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate | awk '{ print $2 }' | xargs -n 1 basename >keys.txt
bad=0
while read -r key; do
  "$joblet" cache show --dir "$JOBLET_CACHE_DIR" "$key" >/dev/null 2>&1 || bad=$((bad + 1))
done <keys.txt
if [[ $(count_lines keys.txt) == "$tasks" ]] && ((bad == 0)); then
  pass "$tasks entries, each verified by joblet cache show"
else
  fail "$(count_lines keys.txt) entries, $bad failing verification"
fi
# Under an entry's name only entries; a killed writer's file never took one.
strays=$(find "$JOBLET_CACHE_DIR/ising.simulate" -mindepth 2 -type f ! -name '.*' -regextype posix-extended \
  ! -regex '.*/[0-9a-f]{32}(\.lock)?' | head -n 3)
if [[ -z $strays ]]; then pass "nothing but entries and locks under visible names"; else fail "visible strays: $strays"; fi

leftovers() { find "$JOBLET_CACHE_DIR" -type f \( -name '.*.tmp' -o -name '*.lock' \) ! -path '*/.campaigns/*'; }
left=$(leftovers | grep -c . || true)
for node in node1 node2 node3; do
  "$on_node" "$node" "$joblet" cache prune --dir "$JOBLET_CACHE_DIR" --max-items 1000000 >"prune-$node.txt" 2>&1 ||
    { fail "joblet cache prune on $node"; show "prune-$node.txt"; }
done
if [[ -z $(leftovers) ]]; then
  pass "the $left temporary files and locks the killed processes left were removed by prune on their nodes"
else
  fail "left after prune on every node: $(leftovers | head -n 3)"
fi

finish
