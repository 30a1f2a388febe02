#!/usr/bin/env bash
# Runs failing_rank_test, whose rank 1 fails an ASSERT before a Parallel call the other ranks
# make: the job must end (within the CTest timeout) with a non-zero status, every rank's output
# must show the failure, and the next test must pass on every rank.
# Usage: failing_rank.sh RANKS PROGRAM MPIRUN...
set -uo pipefail
ranks=$1 program=$2
shift 2
# --tag-output prefixes each line with [job,rank]<stream>: tells the ranks' output apart.
output=$("$@" --tag-output -n "$ranks" "$program" --gtest_color=no 2>&1)
status=$?
echo "$output" >&2
if ((status == 0)); then echo "FAIL: the job ended with status 0" >&2; exit 1; fi
failing=FailingRank.Rank1FailsAnAssertBeforeACallTheOthersMake
# Rank 0 prints the usual report: the test failed there, and says it failed on rank 1.
if ! grep -Eq "^\[[0-9]+,0\]<stdout>:\[  FAILED  \] $failing" <<<"$output"; then
  echo "FAIL: rank 0 did not report the failed test" >&2
  exit 1
fi
if ! grep -Eq "^\[[0-9]+,0\]<stdout>:.*this test failed on rank\(s\) 1" <<<"$output"; then
  echo "FAIL: rank 0 did not say that rank 1 failed" >&2
  exit 1
fi
if ! grep -Eq "^\[[0-9]+,0\]<stdout>:\[       OK \] FailingRank.TheNextTestRunsOnEveryRank" <<<"$output"; then
  echo "FAIL: the next test did not pass on rank 0" >&2
  exit 1
fi
# The other ranks print their failures only: rank 1 its own assertion, the others rank 1's.
for ((rank = 1; rank < ranks; ++rank)); do
  if ! grep -Eq "^\[[0-9]+,$rank\]<stderr>:\[rank $rank\] $failing failed" <<<"$output"; then
    echo "FAIL: rank $rank did not report the failure" >&2
    exit 1
  fi
  if grep -Eq "^\[[0-9]+,$rank\]<stderr>:\[rank $rank\] FailingRank.TheNextTestRunsOnEveryRank failed" <<<"$output"; then
    echo "FAIL: the next test failed on rank $rank" >&2
    exit 1
  fi
done
if ! grep -Eq "^\[[0-9]+,1\]<stderr>:rank 1 fails on purpose" <<<"$output"; then
  echo "FAIL: rank 1 did not show its assertion" >&2
  exit 1
fi
echo "ok: status $status, the failure reported on every rank, the next test passed"
