#!/usr/bin/env bash
# A rank that leaves the job (returns from main, or calls MPI_Finalize) before a Parallel call
# the others make must end the job with a non-zero status and, on the other ranks, an error
# naming it and the contract, within the CTest timeout: never a hang. With --leave none the
# program is correct: status 0 and no error.
# Usage: rank_leaves.sh HOW RANKS PROGRAM MPIRUN...
set -uo pipefail
how=$1 ranks=$2 program=$3
shift 3
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
output=$("$@" -n "$ranks" "$program" --leave "$how" --mark "$scratch/rank-0-left" 2>&1)
status=$?
echo "$output" >&2
if [[ $how == none ]]; then
  if ((status != 0)); then echo "FAIL: a correct program ended with status $status" >&2; exit 1; fi
  if grep -Eqi "error|left the MPI job" <<<"$output"; then echo "FAIL: a correct program printed an error" >&2; exit 1; fi
  if (($(grep -c "both calls returned 40 results" <<<"$output") != ranks)); then
    echo "FAIL: not every rank finished both calls" >&2
    exit 1
  fi
  echo "ok: status 0, no error"
  exit 0
fi
if ((status == 0)); then echo "FAIL: the job ended with status 0" >&2; exit 1; fi
# Every rank but 1 names rank 1, its pid and host, its call count and the contract.
for ((rank = 0; rank < ranks; ++rank)); do
  ((rank == 1)) && continue
  if ! grep -Eq "^rank $rank: rank 1 \(pid [0-9]+ on .+\) left the MPI job .* after 1 parallel call, while this rank \(rank $rank\) is in its parallel call 2 .*every rank must make the same Parallel calls with the same tasks" <<<"$output"; then
    echo "FAIL: rank $rank did not name rank 1 and the contract" >&2
    exit 1
  fi
done
# Rank 1 logs which call the others were waiting in.
if ! grep -Eq "rank 1 \(pid [0-9]+ on .+\) finalised MPI after 1 parallel call; rank 0 \(pid [0-9]+ on .+\) was waiting for it in its parallel call 2" <<<"$output"; then
  echo "FAIL: rank 1 did not log which call the others were in" >&2
  exit 1
fi
echo "ok: status $status, rank 1 and the contract named"
