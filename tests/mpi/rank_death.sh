#!/usr/bin/env bash
# A rank that dies inside a task (how: segv kill abort mpi-abort exit) must end the MPI job with
# a non-zero status and a line naming the rank and the task, within the timeout: never a hang.
# Usage: rank_death.sh HOW PROGRAM MPIRUN...
set -uo pipefail
how=$1 program=$2
shift 2
# Open MPI leaves its shared-memory segments behind when ranks are killed: remove the ones
# this job made.
shopt -s nullglob
before=(/dev/shm/vader_segment.*)
output=$(timeout 120 "$@" -n 3 "$program" --how "$how" --task 7 2>&1)
status=$?
for segment in /dev/shm/vader_segment.*; do
  [[ " ${before[*]} " == *" $segment "* ]] || rm -f "$segment"
done
echo "$output" | grep -E "joblet|mpirun|MPI_ABORT" >&2
if ((status == 0)); then echo "FAIL: the job ended with status 0" >&2; exit 1; fi
if ((status == 124)); then echo "FAIL: the job hung" >&2; exit 1; fi
case "$how" in
  kill) pattern='got SIGTERM during a parallel call; .*rank [12]: task ([7-9]|[1-9][0-9])' ;;
  *) pattern='joblet: rank [12] \(pid [0-9]+ on .+\) .* task ([7-9]|[1-9][0-9])' ;;
esac
if ! grep -Eq "$pattern" <<<"$output"; then echo "FAIL: no line names the rank and the task" >&2; exit 1; fi
echo "ok: status $status, rank and task named"
