#!/usr/bin/env bash
# Node loss: every process of node3 killed at once (its namespace ends, and its link with it) in
# the middle of a cached MPI job over three nodes. The job ends in seconds, not at its time
# limit, with a line naming the lost node, its ranks and the tasks they held; running the same
# sweep again (on the two nodes left) computes exactly what is missing, taking over node3's
# compute-once locks. Prints how long each step took.
# (Ranks on other nodes that the dead node's sockets left stuck may be named as well.)
# Usage: node_loss.sh ISING_SWEEP
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
begin_cluster_test node-loss ISING_SWEEP "$@"
sweep=${programs[0]}
export JOBLET_CACHE_DIR=$work/cache
# Well under Slurm's SlurmdTimeout (10 s): joblet must notice the lost ranks before the controller
# cancels the job for the node failure, even on a loaded machine (under ASan they raced at 10 s each).
export JOBLET_MPI_LOST_AFTER=5
tasks=48
args=(--size 16 --temperatures "$tasks" --sweeps 15000 --verbose 0 --backend mpi)

# --no-requeue: should Slurm see the node failure first, the job ends instead of waiting to run again.
job=$(sbatch --parsable --no-requeue -N 3 -n 6 -o "$work/loss-%j.out" -e "$work/loss-%j.err" --wrap "srun $sweep ${args[*]}")
# Enough done that the job is well under way, and not all of it: a few tasks into its second run
# of 6 (an elastic campaign's runs start at one task a rank), so that the ranks are most likely in
# a call, holding tasks.
waited=0
until (($(entries) >= 8)); do
  if ((waited >= 1200)) || [[ -z $(squeue -h -j "$job") ]]; then
    fail "job $job did not get going ($(job_summary "$job"))"
    show "loss-$job.out" "loss-$job.err"
    finish
  fi
  sleep 0.1
  waited=$((waited + 1))
done
holder=$(<"$LOCAL_CLUSTER_DIR/run/ns-node3.pid")
killed_at=$SECONDS
kill -KILL "$holder"
wait_for_job "$job" 120 || true
ended=$((SECONDS - killed_at))
done_before=$(entries)
if ((done_before < tasks)) && grep -Eq "lost (.*; )?node3: rank 4 \(pid [0-9]+\)( holding [^;]*)?, 5 \(pid [0-9]+\)( holding|, between parallel calls)" "loss-$job.err"; then
  pass "job $job ended $ended s after node3 died ($(job_summary "$job")), naming node3, ranks 4 and 5 and the tasks they held; $done_before of $tasks done"
else
  fail "after node3 died: $done_before of $tasks done, the job said:"
  show "loss-$job.err"
fi

entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >before.txt
start=$SECONDS
if JOBLET_LOG_LEVEL=info timeout 300 srun -N 2 -n 4 "$sweep" "${args[@]}" >rerun.txt 2>rerun.err; then
  entry_snapshot "$JOBLET_CACHE_DIR" ising.simulate >after.txt
  computed=$(count_new_entries before.txt after.txt)
  took_over=$(grep -c "took over the stale compute-once lock" rerun.err || true)
  if ((computed == tasks - done_before)); then
    pass "the rerun on node1 and node2 computed exactly the $computed missing tasks in $((SECONDS - start)) s, taking over $took_over of node3's locks"
  else
    fail "the rerun computed $computed tasks, $((tasks - done_before)) were missing"
  fi
else
  fail "the rerun failed"
  show rerun.err
fi

finish
