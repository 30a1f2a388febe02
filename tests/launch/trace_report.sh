#!/usr/bin/env bash
# `joblet trace DIR --html FILE` in a real browser. A traced ising_sweep (on 3 MPI ranks when a
# launcher is given, else one process of 2 threads) runs twice on one cache (computed, then hits),
# and a hand-written trace file adds a failed attempt whose strings are hostile markup. Debian's
# chromium loads the report headless and dumps its DOM and a screenshot: no script error, one
# <rect class="task"> per attempt, the charts and the failures table drawn, the hostile strings
# shown as text. Then a trace of more attempts than the timeline draws one by one: it groups them
# and still stands for each, and hovering, zooming in and out raise no script error.
# Usage: trace_report.sh SWEEP JOBLET [LAUNCHER...]
set -uo pipefail
sweep=$1 joblet=$2
shift 2
launcher=("$@")
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v chromium >/dev/null ||
  fail "chromium is missing: run tools/setup, which installs chromium (the browser this test loads the report in)"

work=$(mktemp -d /tmp/joblet-trace-report-XXXXXX)
browser=""  # the pid of `timeout` while chromium runs under it
stop_browser() {
  # timeout passes the signal on to chromium and its process group, and kills them 5 s later if
  # they are still there; waiting for timeout to exit waits for that.
  if [[ -n $browser ]]; then
    kill -TERM "$browser" 2>/dev/null
    wait "$browser" 2>/dev/null
    browser=""
  fi
}
trap 'stop_browser; rm -rf "$work"' EXIT
trap 'exit 1' INT TERM HUP

# Loads file://$1 headless and writes its DOM, once every script has run, to $2; the other
# arguments are more chromium flags. In the background and waited for, so that a signal reaches
# the trap at once, which stops it.
load_page() {
  local page=$1 dom=$2
  shift 2
  timeout -k 5 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$(mktemp -d "$work/profile-XXXXXX")" \
    --virtual-time-budget=5000 "$@" --dump-dom "file://$page" >"$dom" 2>"$work/chromium.log" &
  browser=$!
  wait "$browser"
  local status=$?
  browser=""
  ((status == 0)) || fail "chromium exited $status loading $page: $(tail -5 "$work/chromium.log")"
}

# Attempts in the trace files, counted apart from `joblet trace`: a line per attempt, the rest of
# each writer's chunk NUL bytes.
count_attempts() { cat "$1"/*.jsonl | tr -d '\0' | grep -c '^{'; }
# Checks shared by both pages: the error recorder ran, recorded nothing, and the script finished.
expect_clean_page() {
  local dom=$1
  grep -q '<html[^>]* data-error-recorder="on"' "$dom" || fail "the error recorder did not run: $(head -c 600 "$dom")"
  if grep -q 'data-script-errors=' "$dom"; then
    fail "the report raised script errors: $(grep -o 'data-script-errors="[^"]*"' "$dom")"
  fi
  grep -q '<html[^>]* data-report="drawn"' "$dom" || fail "the report's script did not finish drawing"
}

trace=$work/trace
args=(--size 16 --temperatures 24 --sweeps 1000 --verbose 0 --cache "$work/cache" --trace "$trace")
for run in computed hits; do
  "${launcher[@]}" "$sweep" "${args[@]}" >"$work/sweep.out" 2>"$work/sweep.err" ||
    fail "the $run sweep exited $?: $(cat "$work/sweep.err")"
done
now=$(date +%s)
cat >"$trace/hostile-1.jsonl" <<EOF
{"call":"</script><script>alert(1)</script>","task":7,"attempt":2,"outcome":"failed","host":"<img src=x onerror=alert(2)>","pid":1,"rank":-1,"worker":0,"start":$now.25,"end":$now.5,"peak_rss_kb":1,"error_type":"\"double\" 'single'","error":"</script><img src=x onerror=alert(1)> \"quoted\" 'single' <!-- & end"}
EOF
attempts=$(count_attempts "$trace")
((attempts >= 2 * 24 + 1)) || fail "only $attempts attempts traced"

report=$work/report.html
"$joblet" trace "$trace" --html "$report" >"$work/summary" 2>&1 || fail "joblet trace --html exited $?: $(cat "$work/summary")"
grep -q "^$trace: $attempts attempt(s)" "$work/summary" || fail "joblet trace counted otherwise: $(head -3 "$work/summary")"
grep -q "HTML report: $report" "$work/summary" || fail "joblet trace did not name the report: $(cat "$work/summary")"
# The hostile strings are in the JSON block with every '<' escaped: nothing ends it early.
grep -q '</script><img' "$report" && fail "a trace string ended the report's JSON block"
(($(grep -c '</script>' "$report") == 3)) || fail "the report has other than its 3 scripts"

dom=$work/report.dom
load_page "$report" "$dom" --window-size=1400,900 --screenshot="$work/shot.png"
expect_clean_page "$dom"
grep -q "data-drawn-bars=\"$attempts\"" "$dom" ||
  fail "data-drawn-bars is not $attempts: $(grep -o 'data-drawn-bars="[0-9]*"' "$dom")"
bars=$(grep -o '<rect class="task ' "$dom" | wc -l)
((bars == attempts)) || fail "$bars task bars drawn for $attempts attempts"
grep -q 'data-timeline="each attempt"' "$dom" || fail "the timeline grouped $attempts attempts"
# Bars of what the first sweep computed, of what the second loaded from the cache (hits; under
# MPI the campaign's call reloads them), and of the hand-written failure.
for kind in computed '(hit|reloaded)' failed; do
  grep -Eq "<rect class=\"task $kind\"" "$dom" || fail "no timeline bar of a $kind attempt"
done
grep -q '<svg class="bin-chart"' "$dom" && grep -q '<rect class="bin ' "$dom" || fail "no histogram of durations"
grep -Eq '<rect class="rate (hit|reloaded)"' "$dom" && grep -q '<rect class="rate computed"' "$dom" ||
  fail "the hits-vs-computed chart lacks loads from the cache or computed calls"
grep -q '<div id="failures" data-failures="1">' "$dom" || fail "the failures section does not count 1 failure"
grep -q '<table id="failures-table">' "$dom" || fail "no failures table"
# The browser saw the hostile strings as text: escaped in the cells, and no element made of them.
grep -q '<td class="message">&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; "quoted" '"'single'"' &lt;!-- &amp; end</td>' "$dom" ||
  fail "the failure's message is not shown as text: $(grep -o '<td class="message">[^/]*' "$dom")"
grep -q '<td>&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;</td>' "$dom" || fail "the call name is not shown as text"
grep -q '<td>&lt;img src=x onerror=alert(2)&gt;</td>' "$dom" || fail "the host name is not shown as text"
grep -q '<img' "$dom" && fail "a trace string became an <img> element"
(($(grep -o '<script' "$dom" | wc -l) == 3)) || fail "a trace string became a <script> element"
[[ $(head -c 8 "$work/shot.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "no PNG screenshot"
(($(stat -c %s "$work/shot.png") > 10000)) || fail "the screenshot is nearly empty ($(stat -c %s "$work/shot.png") bytes)"

# More attempts than the timeline draws one by one (20000): runs of narrow attempts are grouped,
# and the groups' data-attempts plus the single bars still add up to every attempt.
big=$work/big
mkdir "$big"
awk -v now="$now" 'BEGIN {
  for (i = 0; i < 20500; ++i) {
    start = now + int(i / 8) * 0.001
    printf "{\"call\":\"big\",\"task\":%d,\"attempt\":1,\"outcome\":\"%s\",\"host\":\"node%d\",\"pid\":%d,\"rank\":%d,", i, i % 1000 ? "ok" : "failed", i % 8 / 4, 100 + i % 8, i % 8
    printf "\"worker\":0,\"start\":%.4f,\"end\":%.4f,\"cache\":\"%s\"}\n", start, start + 0.0008, i % 3 ? "computed" : "hit"
  }
}' >"$big/node-1.jsonl"
"$joblet" trace "$big" --html "$work/big.html" >"$work/summary" 2>&1 || fail "joblet trace --html exited $?: $(cat "$work/summary")"
# A copy of the page runs trace_report_user.js too (with the page's nonce, which its policy asks
# for): a hover, a zoom by dragging, and "Show all" raise no script error either.
nonce=$(grep -o "script-src 'nonce-[0-9a-f]*'" "$work/big.html" | grep -o '[0-9a-f]\{32\}')
[[ -n $nonce ]] || fail "the report's policy names no script nonce"
awk -v nonce="$nonce" -v user="$(dirname "$0")/trace_report_user.js" '
  /^<\/body>/ {
    print "<script nonce=\"" nonce "\">"
    while ((getline line < user) > 0) print line
    print "</script>"
  }
  { print }' "$work/big.html" >"$work/big-used.html"
load_page "$work/big-used.html" "$work/big.dom"
expect_clean_page "$work/big.dom"
grep -Eq 'data-tooltip="[0-9]+ attempts from \+' "$work/big.dom" ||
  fail "hovering a grouped bar showed no tooltip: $(grep -o 'data-tooltip="[^"]*"' "$work/big.dom")"
zoomed=$(grep -o 'data-zoomed="each attempt, [0-9]*"' "$work/big.dom" | tr -dc '0-9')
[[ -n $zoomed ]] && ((zoomed > 0 && zoomed < 20500)) ||
  fail "zooming in did not draw each attempt in view: $(grep -o 'data-zoomed="[^"]*"' "$work/big.dom")"
grep -q 'data-timeline="grouped"' "$work/big.dom" || fail "20500 attempts were not grouped"
grep -q 'data-drawn-bars="20500"' "$work/big.dom" || fail "the grouped timeline does not stand for 20500 attempts"
represented=$(($(grep -o '<rect class="task ' "$work/big.dom" | wc -l) +
  $(grep -o 'data-attempts="[0-9]*"' "$work/big.dom" | awk -F'"' '{ sum += $2 } END { print sum + 0 }')))
((represented == 20500)) || fail "the timeline's bars stand for $represented attempts, not 20500"
grep -q '<rect class="tasks failed"' "$work/big.dom" || fail "a group's failure is not shown"
echo "ok: $attempts attempts drawn as $bars bars with no script error; hostile strings shown as text;" \
  "20500 grouped, $zoomed drawn one by one once zoomed in"
