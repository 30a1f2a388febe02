#!/usr/bin/env bash
# The multi-node cluster itself: three nodes that are separate machines as far as joblet can
# tell (hostname, address, /tmp, /dev/shm), a network that reaches nothing but the cluster, and
# a shared folder with a network filesystem's semantics (one client per node).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
begin_cluster_test nodes "" "$@"

idle=$(sinfo -h -N -t idle -o %N | sort -u | tr '\n' ' ')
if [[ $idle == "node1 node2 node3 " ]]; then pass "sinfo: three idle nodes"; else fail "idle nodes: '$idle'"; fi

# shellcheck disable=SC2016  # expanded on the nodes
timeout 60 srun -N 3 -n 6 bash -c 'echo "$SLURM_PROCID $(hostname) $(ip -4 -o addr show eth0 | awk "{ print \$4 }")"' |
  sort -n >placement.txt
expected=$'0 node1 10.93.117.11/24\n1 node1 10.93.117.11/24\n2 node2 10.93.117.12/24\n3 node2 10.93.117.12/24\n4 node3 10.93.117.13/24\n5 node3 10.93.117.13/24'
if [[ $(<placement.txt) == "$expected" ]]; then pass "srun -N 3 -n 6: two ranks on each node, each node its own address"; else fail "placement"; show placement.txt; fi

# Each node's /tmp and /dev/shm are its own.
"$on_node" node1 "echo one >/dev/shm/joblet-test-shm && echo one >/tmp/joblet-test-tmp"
if "$on_node" node2 "test ! -e /dev/shm/joblet-test-shm && test ! -e /tmp/joblet-test-tmp" &&
  [[ ! -e /dev/shm/joblet-test-shm && ! -e /tmp/joblet-test-tmp ]]; then
  pass "a file in node1's /dev/shm and /tmp is seen neither on node2 nor on this host"
else
  fail "/dev/shm or /tmp is shared between nodes"
fi
"$on_node" node1 "rm -f /dev/shm/joblet-test-shm /tmp/joblet-test-tmp"

# No route out of the cluster's subnet, and no other interface than lo and eth0.
routes=$("$on_node" node2 "ip -4 route show")
links=$("$on_node" node2 "ip -o link show | awk -F': ' '{ print \$2 }' | cut -d@ -f1 | tr '\n' ' '")
if [[ $routes == "10.93.117.0/24 dev eth0 "* && $(grep -c . <<<"$routes") == 1 && $links == "lo eth0 " ]]; then
  pass "node2 has lo and eth0 and one route, to the cluster's subnet"
else
  fail "node2's links ($links) and routes: $routes"
fi

# The shared folder: one sshfs client per node. What one node renames into place another sees
# (after its attribute cache expires); O_EXCL and link() hold across clients.
"$on_node" node1 "cd $work && echo first >t && mv t published"
waited=0
until [[ $("$on_node" node2 "cat $work/published 2>/dev/null") == first ]]; do
  ((waited < 300)) || { fail "node2 never saw node1's renamed file"; break; }
  sleep 0.1
  waited=$((waited + 1))
done
((waited >= 300)) || pass "node2 reads the file node1 renamed into place"
if "$on_node" node1 "python3 -c 'import os; os.close(os.open(\"$work/excl\", os.O_CREAT | os.O_EXCL | os.O_WRONLY))'" &&
  ! "$on_node" node3 "python3 -c 'import os; os.open(\"$work/excl\", os.O_CREAT | os.O_EXCL | os.O_WRONLY)'" 2>/dev/null; then
  pass "O_EXCL: node3 cannot create what node1 created"
else
  fail "O_EXCL does not hold across nodes"
fi
if "$on_node" node3 "cd $work && ln published linked" && [[ $(<"$work/linked") == first ]] &&
  [[ $(stat -c %h "$work/published") == 2 ]]; then
  pass "link() on node3 makes a hard link in the export"
else
  fail "link() across the shared folder"
fi

# A node lost and brought back (start --revive, as a node loss test or benchmark does): every
# process of node3 dies with its namespace; the revived node has its mount and runs job steps.
start_script=$repo_root/slurm/cluster/start
kill -KILL "$(<"$LOCAL_CLUSTER_DIR/run/ns-node3.pid")"
if "$start_script" --revive node3 2>revive.err && [[ $(srun -N 3 -n 3 -w node1,node2,node3 hostname | sort | tr '\n' ' ') == "node1 node2 node3 " ]] &&
  [[ $("$on_node" node3 "cat $work/published") == first ]]; then
  pass "node3, killed, is back after start --revive: it runs a job step and sees the shared folder"
else
  fail "node3 did not come back"
  show revive.err
fi
if "$start_script" --revive node9 2>revive.err; then
  fail "start --revive node9 succeeded on a cluster of 3 nodes"
elif grep -q "the cluster has no node 'node9' (it has: node1 node2 node3" revive.err; then
  pass "start --revive names the nodes there are when asked for one that is not"
else
  fail "start --revive node9: unclear error"
  show revive.err
fi

finish
