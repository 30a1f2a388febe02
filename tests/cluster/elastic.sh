#!/usr/bin/env bash
# Elastic campaigns across nodes: 3 independent sbatch jobs, one per node, run the same cached
# campaign at once on the network filesystem (weak-consistency mounts), and a 4th job submitted
# when half of it is done joins them. Every task is computed exactly once over the 4 jobs (each
# job logs its computations to a file of its own: appends from several sshfs clients to one file
# would not be atomic), the 4th (added with slurm/templates/more-workers) computes only from what
# was left when it started, and every job
# prints the whole result, identical to an uncached run. `joblet status` on the login node shows
# the jobs computing while they do, and at the end how many tasks each job computed.
# Usage: elastic.sh ELASTIC_CAMPAIGN JOBLET
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
begin_cluster_test elastic "ELASTIC_CAMPAIGN JOBLET" "$@"
program=${programs[0]} joblet=${programs[1]}
tasks=90
cache=$work/cache
entries() {
  [[ -d $cache/elastic.square ]] || { echo 0; return; }
  find "$cache/elastic.square" -mindepth 2 -maxdepth 2 -type f -regextype posix-extended -regex '.*/[0-9a-f]{32}' |
    grep -c . || true
}

"$program" none "$tasks" 0 threads >reference.out 2>reference.err || { fail "the uncached run failed"; finish; }
# A worker count that is not a positive number is refused with the usage, and nothing is submitted.
status=0
"$templates/more-workers" 0 "$program" >more-workers.out 2>more-workers.err || status=$?
if ((status != 2)) || ! grep -q "usage: more-workers N PROGRAM" more-workers.err || [[ -s more-workers.out ]]; then
  fail "more-workers 0 exited $status without its usage: $(cat more-workers.err more-workers.out)"
fi
# Tasks of 400 ms: the half left when the 4th job is submitted lasts about 3 s, longer than its
# start (sbatch, srun), so that it usually computes some; computing none is allowed (a slow start).
jobs=()
for k in 1 2 3; do
  jobs+=("$(sbatch --parsable -w "node$k" -n 1 -c 1 -o "job$k.out" -e "job$k.err" \
    --wrap "$program $cache $tasks 400 threads $work/computed$k.log")")
done
# The nodes `joblet status` shows computing now ("  nodeK, job J   computed N, computing M now").
computing_nodes() {
  "$joblet" status --dir "$cache" 2>/dev/null | sed -n 's/^  \(node[0-9]*\), job [0-9]* .*computing [0-9]* now$/\1/p' |
    sort -u | grep -c . || true
}
most_computing=0
waited=0
until (($(entries) >= tasks / 2)); do
  if ((most_computing < 3)); then
    now=$(computing_nodes)
    if ((now > most_computing)); then most_computing=$now; fi
  fi
  if ((waited >= 1800)); then
    fail "fewer than $((tasks / 2)) entries after 180 s ($(job_summary "${jobs[0]}"))"
    show job1.err
    finish
  fi
  sleep 0.1
  waited=$((waited + 1))
done
left=$((tasks - $(entries)))
# The 4th: one more worker, added with the template for it (an array element in dynamic mode).
jobs+=("$(MORE_WORKERS_SBATCH_OPTIONS="-w node1 -c 1 -o job4.out -e job4.err" \
  "$templates/more-workers" 1 "$program" "$cache" "$tasks" 400 threads "$work/computed4.log")")
for job in "${jobs[@]}"; do wait_for_job "$job" 240 || true; done

ok=1
for k in 1 2 3 4; do
  if [[ $(job_field "${jobs[k - 1]}" ExitCode) != 0:0 ]] ||
    [[ $(grep '^results:' "job$k.out") != "$(grep '^results:' reference.out)" ]]; then
    fail "job $k ($(job_summary "${jobs[k - 1]}")) did not print the uncached run's results"
    show "job$k.out" "job$k.err"
    ok=0
  fi
done
computed_by() { sed -n 's/^pid=[0-9]* computed=//p' "job$1.out" | paste -sd+ | bc; }
total=$(cat computed{1,2,3,4}.log 2>/dev/null | grep -c . || true)
distinct=$(cat computed{1,2,3,4}.log 2>/dev/null | awk '{ print $1 }' | sort -u | grep -c . || true)
fourth=$(computed_by 4)
if ((ok)) && ((total == tasks && distinct == tasks)) && (($(entries) == tasks)); then
  pass "4 jobs on 3 nodes computed the $tasks tasks once in total ($(computed_by 1), $(computed_by 2), $(computed_by 3) and $fourth)"
else
  fail "$total computations of $distinct distinct tasks for $tasks tasks, $(entries) entries"
fi
# The status after the end: each job's line, with what its own process said it computed.
status=$("$joblet" status --dir "$cache" 2>&1) || true
wrong=
for k in 1 2 3 4; do
  node=node$k job=${jobs[k - 1]}
  ((k < 4)) || node=node1 job=${jobs[3]}_1  # the 4th is element 1 of an array
  said=$(sed -n "s/^  $node, job ${job}  *computed \([0-9]*\)\$/\1/p" <<<"$status")
  # A job that computed nothing (the late one may find nothing left) has no line.
  [[ ${said:-0} == "$(computed_by "$k")" ]] || wrong+=" job $k: '$said' for $(computed_by "$k");"
done
if ((most_computing >= 2)) && [[ -z $wrong ]]; then
  pass "joblet status showed $most_computing nodes computing at once, and each job's count at the end"
else
  fail "joblet status: at most $most_computing nodes computing at once;$wrong"
  show <(echo "$status")
fi
if [[ -n $fourth ]] && ((fourth <= left)); then
  pass "the job that joined at half-time computed $fourth of the $left tasks left"
else
  fail "the job that joined at half-time computed ${fourth:-nothing}, with $left tasks left"
fi
finish
