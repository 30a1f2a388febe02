#!/usr/bin/env bash
# Clock skew: node3's clock runs a minute ahead (libfaketime, FAKETIME=+60s) for its programs and
# for its own sshfs client of the shared folder, so that its touches are stamped by its clock
# and its writes by the server's, as on an sshfs or Lustre client. Then:
#   - a live claim of an elastic campaign's run, and a live compute-once lock, held on node1 do
#     not look stale to node3, nor ones held on node3 to node1: every task longer than
#     stale_after is computed once, nothing taken over;
#   - LRU pruning keeps what was used last: node3's hits do not date entries into the future,
#     so `joblet cache prune --max-items` keeps node1's newer entries, and node3's
#     `prune --older-than 30s` does not see entries written seconds ago as a minute old.
# Usage: clock_skew.sh CLUSTER_CAMPAIGN JOBLET
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"
begin_cluster_test clock-skew "CLUSTER_CAMPAIGN JOBLET" "$@"
campaign=${programs[0]}
joblet=${programs[1]}
faketime_library=$(find /usr/lib /usr/local/lib -name libfaketime.so.1 -print -quit 2>/dev/null || true)
if [[ -z $faketime_library ]]; then
  echo "SKIP: libfaketime not found (Debian package faketime; tools/setup installs it)"
  exit 77
fi

# node3's second client of the export, started with the clock a minute ahead; removed on exit.
ahead_mount=/tmp/joblet-clock-ahead
# Only the wall clock moves, as skew between hosts does: a faked monotonic clock would also make
# waits on it (a lock's heartbeat) last a minute longer, and faked file times (stat) would hide
# the skew from the very comparisons it affects.
ahead_env=(env "LD_PRELOAD=$faketime_library" FAKETIME=+60s DONT_FAKE_MONOTONIC=1 NO_FAKE_STAT=1)
# Under ASan (tools/sanitize) the preloaded library comes before ASan's runtime: allow that.
if [[ -n ${ASAN_OPTIONS:-} ]]; then export ASAN_OPTIONS=$ASAN_OPTIONS:verify_asan_link_order=0; fi
export JOBLET_LOG_LEVEL=info
"$on_node" node3 "mkdir -p $ahead_mount && ${ahead_env[*]} sshfs -o $(<"$LOCAL_CLUSTER_DIR/mount-options")" \
  "root@head:$LOCAL_CLUSTER_SHARED $ahead_mount </dev/null >/dev/null 2>&1"
trap '"$on_node" node3 fusermount -u "$ahead_mount" || true; rm -rf -- "$work"' EXIT
ahead_work=$ahead_mount/${work#"$LOCAL_CLUSTER_SHARED"/}
on_node3_ahead() { on_node_env node3 "${ahead_env[@]}" "$@"; }
on_node1() { on_node_env node1 "$@"; }

node3_date=$(on_node3_ahead date +%s)
if ((node3_date - $(date +%s) >= 55)); then
  pass "node3's clock is $((node3_date - $(date +%s))) s ahead"
else
  fail "faketime did not move node3's clock (it says $(date -d "@$node3_date"))"
  finish
fi

# Two tasks of 12 s (stale_after is 10 s): the first process takes both, the second waits. An
# elastic campaign (the default) claims them as one run of its 2 workers (the claim file "0" of
# the campaign's runs, ending at 2); with JOBLET_ELASTIC=off each task has its compute-once lock.
holds() { # NAME MODE
  if [[ $2 == runs ]]; then
    grep -qx "end 2" "$work/$1"/.campaigns/*.runs/0 2>/dev/null
  else
    (($(find "$work/$1" -name '*.lock' 2>/dev/null | grep -c . || true) == 2))
  fi
}
holds_then_waits() { # NAME MODE HOLDER WAITER HOLDER_DIR WAITER_DIR: HOLDER, WAITER run a command on a node
  local name=$1 mode=$2 holder=$3 waiter=$4 waited=0 elastic=on
  [[ $mode == runs ]] || elastic=off
  JOBLET_ELASTIC=$elastic "$holder" "$campaign" "$5" 2 12000 >"$name-holder.txt" 2>"$name-holder.err" &
  local holder_pid=$!
  until holds "$name" "$mode"; do
    if ((waited >= 600)) || ! kill -0 "$holder_pid" 2>/dev/null; then
      fail "$name: the holder did not take its two tasks ($mode)"
      show "$name-holder.err"
      wait "$holder_pid" || true
      return
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  JOBLET_ELASTIC=$elastic "$waiter" "$campaign" "$6" 2 12000 >"$name-waiter.txt" 2>"$name-waiter.err" ||
    fail "$name: the waiter failed"
  wait "$holder_pid" || fail "$name: the holder failed"
  local computed waited_for
  computed=$(sed -n 's/.* computed=\([0-9]*\) .*/\1/p' "$name-holder.txt" "$name-waiter.txt" | paste -sd+ | bc)
  if [[ $mode == runs ]]; then
    waited_for=$(grep -c "waiting for the 1 runs other processes are computing" "$name-waiter.err" || true)
  else
    waited_for=$(grep -c " computed=0 .* waits=2 " "$name-waiter.txt" || true)
  fi
  if [[ $computed == 2 ]] && grep -q " computed=0 " "$name-waiter.txt" && ((waited_for == 1)) &&
    ! grep -Eq "took over|process that is gone" "$name-holder.err" "$name-waiter.err"; then
    pass "$name: the waiter waited for the live holder ($mode) and took nothing over; 2 tasks computed once"
  else
    fail "$name: computed $computed times ($mode)"
    show "$name-holder.txt" "$name-waiter.txt" "$name-holder.err" "$name-waiter.err"
  fi
}
for mode in runs locks; do
  holds_then_waits "node1-holds-$mode" "$mode" on_node1 on_node3_ahead "$work/node1-holds-$mode" \
    "$ahead_work/node1-holds-$mode"
  holds_then_waits "node3-holds-$mode" "$mode" on_node3_ahead on_node1 "$ahead_work/node3-holds-$mode" \
    "$work/node3-holds-$mode"
done

# LRU: node1 computes 0..9, node3 uses 0..4, node1 then computes 10..14 (and uses 0..9 again).
# The five most recently used entries are 10..14 whichever clock each node has.
arguments_left() { "$joblet" cache ls -l --dir "$work/$1" | awk 'NR > 1 { print $NF }' | sort -n | paste -sd' '; }
on_node1 "$campaign" "$work/lru" 10 0 >lru-1.txt 2>&1 || { fail "node1's first run"; show lru-1.txt; }
on_node3_ahead "$campaign" "$ahead_work/lru" 5 0 >lru-3.txt 2>&1 || { fail "node3's run"; show lru-3.txt; }
on_node1 "$campaign" "$work/lru" 15 0 >lru-1b.txt 2>&1 || { fail "node1's second run"; show lru-1b.txt; }
grep -q " computed=0 hits=5 " lru-3.txt || { fail "node3 did not hit the five entries"; show lru-3.txt; }
"$joblet" cache prune --dir "$work/lru" --max-items 5 >prune.txt 2>&1 || { fail "prune"; show prune.txt; }
if [[ $(arguments_left lru) == "10 11 12 13 14" ]]; then
  pass "prune --max-items 5 kept the five entries used last (10..14), not the ones node3 used before"
else
  fail "prune --max-items 5 kept the entries of $(arguments_left lru)"
  show lru-3.txt
  "$joblet" cache ls --dir "$work/lru"
fi

on_node1 "$campaign" "$work/age" 4 0 >age-1.txt 2>&1 || { fail "node1's run"; show age-1.txt; }
on_node3_ahead "$joblet" cache prune --dir "$ahead_work/age" --older-than 30s >age-prune.txt 2>&1 ||
  { fail "node3's prune"; show age-prune.txt; }
if [[ $(arguments_left age) == "0 1 2 3" ]]; then
  pass "node3's prune --older-than 30s left the four entries node1 wrote seconds ago"
else
  fail "node3's prune --older-than 30s left $(arguments_left age) of 0 1 2 3"
  show age-prune.txt
fi

finish
