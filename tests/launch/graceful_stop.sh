#!/usr/bin/env bash
# A SIGTERM during a cached parallel call (a Slurm time limit): the program must exit with
# status 75 after the running tasks finish, say how many tasks are done, have every finished
# task in the cache, and a rerun must compute only the missing tasks.
# Usage: graceful_stop.sh PROGRAM BACKEND [LAUNCHER...]
set -uo pipefail
program=$1 backend=$2
shift 2
launcher=("$@")
tasks=60 milliseconds=100
cache=$(mktemp -d /tmp/joblet-stop-XXXXXX)
trap 'rm -rf "$cache" "$cache.out" "$cache.err"' EXIT
entries() { find "$cache" -type f -not -name '.*' -not -path '*/.*' | wc -l; }

"${launcher[@]}" "$program" "$cache" "$backend" "$tasks" "$milliseconds" >"$cache.out" 2>"$cache.err" &
pid=$!
# Signal once the first result is stored (the call is under way), not after a fixed sleep that
# a loaded or a many-core machine would turn into a signal before the call or after its end.
# kill() makes the signal pending at once, with 59 tasks of 100 ms still to do on 2 workers.
# No bound on the wait but the program's end: CTest's TIMEOUT catches a hang.
# (An ended child stays a zombie until `wait`, which kill -0 takes for alive: look at its state.)
running() { local stat; stat=$(cat "/proc/$1/stat" 2>/dev/null) && [[ ${stat##*) } != Z* ]]; }
until (($(entries) >= 1)); do
  if ! running "$pid"; then
    echo "FAIL: the program ended before it stored a result: $(cat "$cache.err")" >&2
    exit 1
  fi
  sleep 0.05
done
if ((${#launcher[@]})); then
  # As Slurm does at a time limit: every rank gets the signal (the launcher too).
  kill -TERM $(pgrep -P "$pid") 2>/dev/null
else
  kill -TERM "$pid"
fi
wait "$pid"
status=$?
out=$(cat "$cache.out"); err=$(cat "$cache.err"); rm -f "$cache.out" "$cache.err"
echo "$err" | grep -E "stopped|joblet" >&2
if ((status != 75)); then echo "FAIL: exit status $status, expected 75" >&2; exit 1; fi
if [[ $out == *done* ]]; then echo "FAIL: the call completed despite SIGTERM" >&2; exit 1; fi
if ! [[ $err =~ stopped\ by\ SIGTERM:\ ([0-9]+)\ of\ $tasks\ tasks\ done ]]; then
  echo "FAIL: no summary line" >&2; exit 1
fi
done_first=${BASH_REMATCH[1]}
stored=$(entries)
if ((stored < done_first || stored >= tasks)); then
  echo "FAIL: $stored entries in the cache after $done_first tasks done of $tasks" >&2; exit 1
fi
"${launcher[@]}" "$program" "$cache" "$backend" "$tasks" "$milliseconds" >"$cache.out" 2>/dev/null
status=$?
out=$(cat "$cache.out"); rm -f "$cache.out"
if ((status != 0)) || [[ $out != *"done $tasks"* ]]; then echo "FAIL: the rerun ended with $status: $out" >&2; exit 1; fi
total=$(entries)
if ((total != tasks)); then echo "FAIL: $total entries after the rerun, expected $tasks" >&2; exit 1; fi
echo "ok: stopped with $done_first of $tasks done ($stored stored); the rerun computed $((tasks - stored))"
