#!/usr/bin/env bash
# The MPI backend's whole suite across three nodes, two ranks on each (TCP between nodes, shared
# memory within one), with its folders on the shared filesystem; then large results with a
# temp_folder on each node's own disk, which no other node can read: they must arrive anyway,
# through messages, with a warning that says so. No result folder may be left on any node.
# Usage: mpi_suite.sh MPI_BACKEND_TEST
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
begin_cluster_test mpi-suite MPI_BACKEND_TEST "$@"
suite=${programs[0]}
# Every test of the suite must run and pass: the count comes from the suite itself, so a test added
# to it is expected here too.
tests_in_suite=$("$suite" --gtest_list_tests | grep -c '^  ')
mkdir -p tmp cwd
cd cwd # the default cache (and with it the folder of large results across nodes) is ./joblet-cache

if timeout 300 srun -N 3 -n 6 --export="ALL,TMPDIR=$work/tmp" "$suite" --gtest_color=no >suite.txt 2>&1 &&
  grep -q "^\\[  PASSED  \\] $tests_in_suite tests" suite.txt; then
  pass "the MPI suite on 3 nodes x 2 ranks: $(grep -E '^\[  PASSED' suite.txt)"
else
  fail "the MPI suite across nodes"
  show suite.txt
fi

if timeout 120 srun -N 3 -n 3 --export="ALL,TMPDIR=$work/tmp,JOBLET_TEMP_FOLDER=/tmp" "$suite" --gtest_color=no \
  --gtest_filter='MpiLargeResults.ArraysAboveMaxNbytesTravelAsFilesEveryRankMaps' >local.txt 2>&1 &&
  grep -q '^\[  PASSED  \] 1 test' local.txt &&
  grep -q 'large results of this call travel in MPI messages: the result folder /tmp/.* is not visible to rank 1 on node2, rank 2 on node3' local.txt; then
  pass "a temp_folder on each node's own disk: results arrive through messages, and a warning names the nodes"
else
  fail "large results with a node-local temp_folder"
  show local.txt
fi

left=$(find "$work/tmp" "$work/cwd/joblet-cache/.results" -mindepth 1 2>/dev/null | head -5)
for node in node1 node2 node3; do
  left+=$("$on_node" "$node" "ls -d /tmp/joblet-* /dev/shm/joblet-* 2>/dev/null" || true)
done
if [[ -z $left ]]; then pass "no result folder left in the shared folder or on any node"; else fail "left behind: $left"; fi

finish
