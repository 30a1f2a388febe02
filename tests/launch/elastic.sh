#!/usr/bin/env bash
# Elastic campaigns on one node: processes started at different moments on one cached campaign
# of 60 tasks share it through the cache, each with its own backend (threads, processes, and the
# mpi backend on 2 ranks when given a launcher). Checked:
#   - every task computed exactly once over all processes: from the log every computation
#     appends to, from the entries and from the processes' own statistics;
#   - each output identical to an uncached run's;
#   - a process that joins late computes only from what was left when it started;
#   - a process killed with SIGKILL mid-run: the others still finish, and only the tasks it held
#     are computed a second time;
#   - progress counts the whole campaign and what other processes did, and never shows a task
#     put aside for another process as failed;
#   - `joblet status` names the jobs that computed the campaign, with their counts.
# Usage: elastic.sh ELASTIC_CAMPAIGN JOBLET [MPI_LAUNCHER...]
set -uo pipefail
program=$1
joblet=$2
shift 2
launcher=("$@")
work=$(mktemp -d /tmp/joblet-elastic-XXXXXX)
pids=()
cleanup() {
  ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.out "$work"/*.err; do [[ -s $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}
tasks=60
entries() { # CACHE
  [[ -d $1/elastic.square ]] || { echo 0; return; }
  find "$1/elastic.square" -mindepth 2 -maxdepth 2 -type f -regextype posix-extended -regex '.*/[0-9a-f]{32}' | grep -c .
}
# Waits (bounded, so that a stuck campaign fails instead of hanging) for COUNT entries in CACHE.
wait_for_entries() { # CACHE COUNT
  local waited=0
  until (($(entries "$1") >= $2)); do
    ((waited < 1200)) || fail "fewer than $2 entries after 120 s"
    sleep 0.1
    waited=$((waited + 1))
  done
}
total_computed() { cat "$@" | sed -n 's/^pid=[0-9]* computed=//p' | paste -sd+ | bc; }
# Computations in LOG by the processes (ranks) whose outputs are given.
logged_by() { # LOG OUTPUT...
  local log=$1
  shift
  awk 'NR == FNR { if (match($0, /^pid=[0-9]+/)) mine[substr($0, 5, RLENGTH - 4)] = 1; next }
       ($2 in mine) { n++ } END { print n + 0 }' <(cat "$@") "$log"
}
# Computations per task in LOG beyond the first: "task count" lines for tasks computed twice or more.
repeated() { awk '{ print $1 }' "$1" | sort -n | uniq -c | awk '$1 > 1 { print $2, $1 }'; }

"$program" none "$tasks" 0 threads >"$work/reference.out" 2>"$work/reference.err" || fail "the uncached run failed"
grep -q '^results:' "$work/reference.out" || fail "the uncached run printed no results"

# 1. Three processes, the second and third joining when the campaign is under way.
cache=$work/cache log=$work/computed.log
"$program" "$cache" "$tasks" 150 threads "$log" >"$work/first.out" 2>"$work/first.err" &
pids+=($!)
wait_for_entries "$cache" 6
if ((${#launcher[@]})); then
  second=(env JOBLET_LOG_LEVEL=info "${launcher[@]}" "$program" "$cache" "$tasks" 150 mpi "$log") second_name="mpi on 2 ranks"
else
  second=(env JOBLET_LOG_LEVEL=info "$program" "$cache" "$tasks" 150 processes "$log") second_name=processes
fi
"${second[@]}" >"$work/second.out" 2>"$work/second.err" &
pids+=($!)
wait_for_entries "$cache" 20
left=$((tasks - $(entries "$cache")))
"$program" "$cache" "$tasks" 150 processes "$log" >"$work/third.out" 2>"$work/third.err" &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid" || fail "a process of the campaign failed"; done
pids=()
for run in first second third; do
  [[ $(grep '^results:' "$work/$run.out") == "$(grep '^results:' "$work/reference.out")" ]] ||
    fail "the $run process's results differ from the uncached run's"
done
lines=$(grep -c . "$log")
[[ $(entries "$cache") == "$tasks" ]] || fail "$(entries "$cache") entries for $tasks tasks"
((lines == tasks)) || fail "the $tasks tasks were computed $lines times: $(repeated "$log" | tr '\n' ' ')"
# The statistics of the processes that compute in-process (threads, mpi ranks) match the log;
# the third computes in worker processes, so its share is the rest of the log.
for run in first second; do
  [[ $(total_computed "$work/$run.out") == "$(logged_by "$log" "$work/$run.out")" ]] ||
    fail "the $run process's statistics say $(total_computed "$work/$run.out") computations, the log $(logged_by "$log" "$work/$run.out")"
done
third=$((tasks - $(logged_by "$log" "$work/first.out" "$work/second.out")))
((third <= left)) || fail "the third process computed $third tasks, but only $left were left when it started"
grep -q "that no other process is computing" "$work/second.err" ||
  fail "the second process ($second_name) did not say that it joined a campaign"
# Progress (verbose 1: a line at the end of each call). The third process's first call is its
# first round: the campaign's tasks, of which at least those done when it started by others.
round=$(grep -m1 '^\[joblet\] Done' "$work/third.err")
if ! [[ $round =~ Done\ ([0-9]+)\ tasks\ \(([0-9]+)\ by\ other\ processes\) ]] ||
  ((BASH_REMATCH[1] > tasks || BASH_REMATCH[2] < tasks - left)); then
  fail "the third process's first round reported '$round', not the campaign's tasks with at least $((tasks - left)) by other processes"
fi
! grep -h '^\[joblet\] Done' "$work"/{first,second,third}.err | grep -q failed ||
  fail "a progress line counts tasks put aside for another process as failed: $(grep -h failed "$work"/*.err)"
echo "ok: 3 processes (threads; $second_name; processes), each task computed once; computed" \
  "$(total_computed "$work/first.out"), $(total_computed "$work/second.out") and $third (of the $left left when it" \
  "joined); identical results"

# 2. One of three processes killed with SIGKILL while it computes.
cache=$work/cache-kill log=$work/computed-kill.log
for run in a b c; do
  "$program" "$cache" "$tasks" 200 threads "$log" >"$work/kill-$run.out" 2>"$work/kill-$run.err" &
  pids+=($!)
done
wait_for_entries "$cache" 12
kill -KILL "${pids[1]}"
wait "${pids[1]}" 2>/dev/null
for pid in "${pids[0]}" "${pids[2]}"; do wait "$pid" || fail "a process went down with the killed one"; done
pids=()
for run in a c; do
  [[ $(grep '^results:' "$work/kill-$run.out") == "$(grep '^results:' "$work/reference.out")" ]] ||
    fail "process $run's results differ from the uncached run's"
done
[[ $(entries "$cache") == "$tasks" ]] || fail "$(entries "$cache") entries for $tasks tasks after the kill"
twice=$(repeated "$log" | awk '$2 != 2 { bad = 1 } END { print NR + 0 (bad ? " (some more than twice)" : "") }')
# The killed process ran 2 threads: at most the 2 tasks they held are computed again.
[[ $twice =~ ^[0-2]$ ]] || fail "after the kill, tasks computed more than once: $(repeated "$log" | tr '\n' ' ')"
echo "ok: one of 3 processes killed with SIGKILL; the others finished, $twice task(s) computed a second time"

# 3. Two elements of a job array, in dynamic mode, the default (no JOBLET_SHARD): instead of
# tasks i % 2 each and an early exit (JOBLET_SHARD=static), they share the campaign, and each
# returns the whole result.
cache=$work/cache-array log=$work/computed-array.log
for element in 0 1; do
  env -u JOBLET_SHARD SLURM_ARRAY_JOB_ID=900 SLURM_ARRAY_TASK_ID=$element SLURM_ARRAY_TASK_MIN=0 \
    SLURM_ARRAY_TASK_COUNT=2 \
    "$program" "$cache" "$tasks" 100 threads "$log" >"$work/array-$element.out" 2>"$work/array-$element.err" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || fail "an array element failed"; done
pids=()
for element in 0 1; do
  [[ $(grep '^results:' "$work/array-$element.out") == "$(grep '^results:' "$work/reference.out")" ]] ||
    fail "array element $element did not return the uncached run's results"
done
lines=$(grep -c . "$log")
((lines == tasks)) || fail "the array elements computed the $tasks tasks $lines times: $(repeated "$log" | tr '\n' ' ')"
# `joblet status`: one line per element ("HOST, job 900_K   computed N"), with its own count.
status=$("$joblet" status --dir "$cache") || fail "joblet status exited $? on the complete campaign"
for element in 0 1; do
  said=$(sed -n "s/^  .*, job 900_$element  *computed \([0-9]*\)\$/\1/p" <<<"$status")
  [[ $said == "$(total_computed "$work/array-$element.out")" ]] ||
    fail "joblet status says array element $element computed '${said}', it says $(total_computed "$work/array-$element.out"): $status"
done
echo "ok: 2 array elements in dynamic mode computed each task once ($(total_computed "$work/array-0.out") and" \
  "$(total_computed "$work/array-1.out")) and both returned the whole result"
