#include "trace_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iterator>
#include <map>
#include <random>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "joblet/detail/task_trace.hpp"
#include "output_file.hpp"
#include "units.hpp"

namespace joblet::cli {
namespace {

// The page around the data. @NONCE@ becomes this page's nonce, @DATA@ the JSON of the trace.
//
// The first script only records script errors and blocked loads into attributes of <html>, so
// that a test reading the DOM a headless browser dumps sees any (a syntax error in the main
// script reaches it too); the main script sets data-report="drawn" once everything is drawn.
//
// The Content-Security-Policy lets only this page's own scripts and style run and forbids every
// load: the report works offline, and a string of the trace that became markup by mistake could
// neither run nor fetch anything.
constexpr std::string_view kPage = R"page(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'nonce-@NONCE@'; style-src 'nonce-@NONCE@'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>joblet trace</title>
<script nonce="@NONCE@">
(function () {
  var root = document.documentElement;
  root.setAttribute("data-error-recorder", "on");
  function record(what) {
    var before = root.getAttribute("data-script-errors");
    root.setAttribute("data-script-errors", (before ? before + "\n" : "") + what);
  }
  window.addEventListener("error", function (event) {
    record("error: " + event.message + " (line " + event.lineno + ", column " + event.colno + ")");
  });
  window.addEventListener("unhandledrejection", function (event) {
    record("unhandled rejection: " + event.reason);
  });
  document.addEventListener("securitypolicyviolation", function (event) {
    record("blocked by the page's policy: " + event.violatedDirective + " " + event.blockedURI);
  });
})();
</script>
<style nonce="@NONCE@">
:root {
  --computed: #4e79a7; --hit: #59a14f; --reloaded: #a5d6a7; --uncached: #9aa5b1;
  --failed: #e15759; --timed_out: #f28e2b; --worker_died: #8e44ad;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
}
body { margin: 0 24px 24px; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; padding: 12px 0 8px;
  border-bottom: 1px solid #d0d7de; }
h1 { font-size: 20px; margin: 0; }
h2 { font-size: 15px; margin: 18px 0 6px; }
.directory { font-family: ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }
.note { font-size: 12px; font-weight: normal; color: #57606a; }
.numbers { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 10px; }
.number { border: 1px solid #d0d7de; border-radius: 6px; padding: 4px 10px; min-width: 72px; }
.number .value { display: block; font-size: 18px; font-weight: 600; }
.number .label { font-size: 11px; color: #57606a; }
.number.bad .value { color: var(--failed); }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12px; color: #57606a; margin-bottom: 4px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; }
svg { display: block; user-select: none; }
svg text { font-size: 11px; fill: #57606a; }
svg text.host { font-weight: 600; fill: #1f2328; }
svg .grid { stroke: #eaeef2; }
svg .axis { stroke: #8c959f; }
svg .lane { fill: #f6f8fa; }
svg .selection { fill: rgba(78, 121, 167, 0.15); stroke: #4e79a7; }
rect.bin, rect.rate { shape-rendering: crispEdges; }
.computed { fill: var(--computed); background: var(--computed); }
.hit { fill: var(--hit); background: var(--hit); }
.reloaded { fill: var(--reloaded); background: var(--reloaded); }
.uncached { fill: var(--uncached); background: var(--uncached); }
.failed { fill: var(--failed); background: var(--failed); }
.timed_out { fill: var(--timed_out); background: var(--timed_out); }
.worker_died { fill: var(--worker_died); background: var(--worker_died); }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
@media (max-width: 900px) { .charts { grid-template-columns: 1fr; } }
table { border-collapse: collapse; font-size: 12px; width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { border-bottom-color: #d0d7de; }
td.message { font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; overflow-wrap: anywhere; }
ul.by-type { font-size: 12px; margin: 4px 0 8px; padding-left: 20px; }
button { font-size: 12px; margin-left: 8px; }
#tooltip { position: fixed; z-index: 10; pointer-events: none; max-width: 560px; padding: 6px 8px;
  border-radius: 4px; background: #1f2328; color: #fff; font-size: 12px; white-space: pre-wrap;
  overflow-wrap: anywhere; }
</style>
</head>
<body>
<header><h1>joblet trace</h1><span class="directory" id="directory"></span><span class="note" id="when"></span></header>
<div class="numbers" id="numbers"></div>
<section id="timeline-section">
<h2>Timeline <span class="note" id="timeline-note"></span><button id="show-all" hidden>Show all</button></h2>
<div class="legend" id="legend"></div>
<div id="timeline"></div>
</section>
<section class="charts">
<div><h2>Task durations <span class="note">(log scale)</span></h2><div id="histogram"></div></div>
<div><h2>Cache hits and computed calls over time <span class="note">(attempts ending in each interval)</span></h2><div id="cache-over-time"></div></div>
</section>
<section id="failures-section"><h2>Failures</h2><div id="failures"></div></section>
<div id="tooltip" hidden></div>
<script type="application/json" id="trace-data">
@DATA@
</script>
<script nonce="@NONCE@">
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("trace-data").textContent);
  var root = document.documentElement;
  var svgNamespace = "http://www.w3.org/2000/svg";
  // Past this many attempts in view, each lane's runs of attempts narrower than kGroupPixels
  // are drawn as one bar, stacked by kind (rects of class "tasks" whose data-attempts add up to
  // the attempts they stand for): an SVG of millions of elements would not scroll. Zooming in
  // (drag across the timeline) draws each attempt again once few enough are in view.
  var kEachAttemptUpTo = 20000;
  var kGroupPixels = 2;
  var kFailureRowsShown = 1000;

  var strings = data.strings;
  var attempts = data.attempts;
  var lanes = data.lanes;  // [host, rank, pid, first worker, workers], in the order drawn
  var at = {};
  data.fields.forEach(function (name, index) { at[name] = index; });
  var kinds = ["computed", "hit", "reloaded", "uncached", "failed", "timed_out", "worker_died"];
  var kindNames = ["computed", "cache hit", "reloaded by its campaign", "no cached call", "failed", "timed out",
                   "worker died"];
  var firstFailureKind = 4;
  var kind = new Uint8Array(attempts.length);
  attempts.forEach(function (attempt, index) {
    var outcome = strings[attempt[at.outcome]];
    var cache = strings[attempt[at.cache]];
    var name = outcome !== "ok" ? (kinds.indexOf(outcome) >= firstFailureKind ? outcome : "failed")
                                : (kinds.indexOf(cache) >= 0 && kinds.indexOf(cache) < 3 ? cache : "uncached");
    kind[index] = kinds.indexOf(name);
  });
  function startOf(index) { return attempts[index][at.start_us] / 1e6; }
  function durationOf(index) { return attempts[index][at.duration_us] / 1e6; }
  var span = 1e-6;
  attempts.forEach(function (attempt, index) { span = Math.max(span, startOf(index) + durationOf(index)); });

  function svg(parent, tag, attributes) {
    var node = document.createElementNS(svgNamespace, tag);
    for (var name in attributes) node.setAttribute(name, attributes[name]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function svgText(parent, attributes, text) {
    var node = svg(parent, "text", attributes);
    node.textContent = text;
    return node;
  }
  function html(parent, tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function formatDuration(seconds) {
    if (seconds < 1e-3) return (seconds * 1e6).toFixed(0) + " us";
    if (seconds < 1) return (seconds * 1e3).toFixed(1) + " ms";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
    if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }
  // A round step (1, 2 or 5 times a power of ten) giving about `count` ticks over `range`.
  function niceStep(range, count) {
    var raw = range / count;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var multiples = [1, 2, 5];
    for (var i = 0; i < multiples.length; ++i) {
      if (raw <= multiples[i] * power) return multiples[i] * power;
    }
    return 10 * power;
  }
  // A time offset on an axis whose ticks are `step` seconds apart.
  function formatOffset(seconds, step) {
    var unit = step >= 60 ? [60, " min"] : step >= 1 ? [1, " s"] : step >= 1e-3 ? [1e-3, " ms"] : [1e-6, " us"];
    var digits = Math.max(0, Math.min(3, -Math.floor(Math.log10(step / unit[0]) + 1e-9)));
    return (seconds / unit[0]).toFixed(digits) + unit[1];
  }
  function plural(count, one, many) { return count + " " + (count === 1 ? one : many); }
  function sum(values) { return values.reduce(function (a, b) { return a + b; }, 0); }

  var tooltip = document.getElementById("tooltip");
  function showTooltip(event, lines) {
    tooltip.textContent = lines.join("\n");
    tooltip.hidden = false;
    var x = event.clientX + 14;
    var y = event.clientY + 14;
    if (x + tooltip.offsetWidth > window.innerWidth) x = Math.max(0, event.clientX - tooltip.offsetWidth - 14);
    if (y + tooltip.offsetHeight > window.innerHeight) y = Math.max(0, event.clientY - tooltip.offsetHeight - 14);
    tooltip.style.left = x + "px";
    tooltip.style.top = y + "px";
  }
  function hideTooltip() { tooltip.hidden = true; }

  var lanesOf = {};
  lanes.forEach(function (lane) {
    var process = lane[0] + " " + lane[2];
    lanesOf[process] = (lanesOf[process] || 0) + 1;
  });
  // A process that ran several attempts at once has several lanes: each names its worker, or how
  // many ran in it one after another.
  function laneName(lane) {
    var parts = [];
    if (lane[1] >= 0) parts.push("rank " + lane[1]);
    parts.push("pid " + lane[2]);
    if (lanesOf[lane[0] + " " + lane[2]] > 1) parts.push(lane[4] === 1 ? "worker " + lane[3] : lane[4] + " workers");
    return parts.join(" \u00b7 ");
  }

  function describeAttempt(index) {
    var attempt = attempts[index];
    var lane = lanes[attempt[at.lane]];
    var lines = ["task " + attempt[at.task] + " of call " + strings[attempt[at.call]] +
                 (attempt[at.attempt] > 1 ? ", attempt " + attempt[at.attempt] : "")];
    var fn = strings[attempt[at.function]];
    var args = strings[attempt[at.arguments]];
    if (fn) lines.push(fn + (args ? "(" + args + ")" : ""));
    lines.push(formatDuration(durationOf(index)) + ", from +" + formatDuration(startOf(index)) + " to +" +
               formatDuration(startOf(index) + durationOf(index)));
    var outcome = "outcome: " + strings[attempt[at.outcome]];
    var cache = strings[attempt[at.cache]];
    if (cache) {
      outcome += ", " + cache;
      if (cache === "hit") outcome += " (computing it took " + formatDuration(attempt[at.computed_s]) + ")";
    }
    lines.push(outcome);
    lines.push((lane[1] >= 0 ? "rank " + lane[1] + " \u00b7 " : "") + "pid " + lane[2] + " \u00b7 worker " +
               attempt[at.worker] + " on " + strings[lane[0]]);
    if (attempt[at.peak_rss_kb] > 0) {
      lines.push("peak RSS of its process " + (attempt[at.peak_rss_kb] / 1024).toFixed(1) + " MiB");
    }
    if (strings[attempt[at.key]]) lines.push("key " + strings[attempt[at.key]]);
    if (strings[attempt[at.error_type]] || strings[attempt[at.error]]) {
      lines.push("error: " + strings[attempt[at.error_type]] + ": " + strings[attempt[at.error]]);
    }
    return lines;
  }
  function describeKinds(counts) {
    var parts = [];
    counts.forEach(function (count, kindIndex) { if (count > 0) parts.push(count + " " + kindNames[kindIndex]); });
    return parts.join(", ");
  }

  function drawSummary() {
    var summary = data.summary;
    document.title = "joblet trace: " + data.directory;
    document.getElementById("directory").textContent = data.directory;
    if (summary.first_start) {
      document.getElementById("when").textContent = "from " + summary.first_start + ", " + summary.wall + " of wall time";
    }
    var numbers = document.getElementById("numbers");
    function number(value, label, bad) {
      var box = html(numbers, "div", bad ? "number bad" : "number");
      html(box, "span", "value", String(value));
      html(box, "span", "label", label);
    }
    number(summary.attempts, "task attempts");
    number(summary.calls, "calls");
    number(summary.processes + " / " + summary.hosts, "processes / hosts");
    number(summary.ok, "ok");
    number(summary.failed, "failed", summary.failed > 0);
    number(summary.computed, "computed");
    number(summary.hits, "cache hits");
    if (summary.reloaded > 0) number(summary.reloaded, "reloaded by campaigns");
    number(summary.cpu_computed, "CPU time computed");
    if (summary.hits > 0) number(summary.saved, "time saved by hits");
    if (summary.efficiency) number(summary.efficiency, "efficiency");
    if (data.skipped_lines > 0) number(data.skipped_lines, "damaged lines skipped", true);
  }

  function drawLegend() {
    var counts = kinds.map(function () { return 0; });
    for (var i = 0; i < kind.length; ++i) ++counts[kind[i]];
    var legend = document.getElementById("legend");
    kinds.forEach(function (name, kindIndex) {
      if (counts[kindIndex] === 0) return;
      var item = html(legend, "span");
      html(item, "span", "swatch " + name);
      item.appendChild(document.createTextNode(kindNames[kindIndex] + " (" + counts[kindIndex] + ")"));
    });
  }

  // The timeline: one lane per worker of each process, grouped by host.
  var view = {from: 0, to: span};
  var byLane = lanes.map(function () { return []; });
  attempts.forEach(function (attempt, index) { byLane[attempt[at.lane]].push(index); });
  byLane.forEach(function (list) { list.sort(function (a, b) { return startOf(a) - startOf(b); }); });
  var laneHeight = Math.max(3, Math.min(30, Math.floor(400 / Math.max(lanes.length, 1))));
  var laneGap = laneHeight >= 8 ? 3 : 0;
  var hostHeight = 18;
  var axisHeight = 22;
  var labelWidth = 210;

  function drawTimeline() {
    var box = document.getElementById("timeline");
    box.textContent = "";
    var width = Math.max(box.clientWidth, 640);
    var plotWidth = width - labelWidth - 12;
    var scale = plotWidth / (view.to - view.from);
    var laneTop = [];
    var hostRows = [];
    var y = axisHeight;
    lanes.forEach(function (lane, index) {
      if (index === 0 || lanes[index - 1][0] !== lane[0]) {
        hostRows.push({host: lane[0], y: y});
        y += hostHeight;
      }
      laneTop.push(y);
      y += laneHeight + laneGap;
    });
    var height = y + 4;
    var chart = svg(box, "svg", {"class": "timeline", width: width, height: height});
    var clip = svg(svg(chart, "defs", {}), "clipPath", {id: "timeline-plot"});
    svg(clip, "rect", {x: labelWidth, y: 0, width: plotWidth, height: height});

    var step = niceStep(view.to - view.from, Math.max(2, Math.floor(plotWidth / 110)));
    for (var tick = Math.ceil(view.from / step) * step; tick <= view.to + step * 1e-9; tick += step) {
      var x = labelWidth + (tick - view.from) * scale;
      svg(chart, "line", {"class": "grid", x1: x, x2: x, y1: axisHeight - 4, y2: height});
      svgText(chart, {x: x, y: axisHeight - 8, "text-anchor": "middle"}, formatOffset(tick, step));
    }
    hostRows.forEach(function (row) {
      svgText(chart, {"class": "host", x: 2, y: row.y + hostHeight - 5}, strings[row.host].slice(0, 60));
    });
    lanes.forEach(function (lane, index) {
      svg(chart, "rect", {"class": "lane", x: labelWidth, y: laneTop[index], width: plotWidth, height: laneHeight});
      if (laneHeight >= 9) svgText(chart, {x: 14, y: laneTop[index] + laneHeight / 2 + 4}, laneName(lane));
    });

    function visible(index) { return startOf(index) <= view.to && startOf(index) + durationOf(index) >= view.from; }
    var inView = 0;
    for (var i = 0; i < attempts.length; ++i) if (visible(i)) ++inView;
    var eachAttempt = inView <= kEachAttemptUpTo;
    var bars = svg(chart, "g", {"clip-path": "url(#timeline-plot)"});
    var groups = [];
    var drawn = 0;
    byLane.forEach(function (list, laneIndex) {
      var top = laneTop[laneIndex];
      var group = null;
      // A pixel of gap ends a bar wide enough to spare it, so that back-to-back attempts show as many.
      function drawAttempt(index, x0, x1) {
        var width = x1 - x0 >= 3 ? x1 - x0 - 1 : Math.max(x1 - x0, 1);
        svg(bars, "rect", {"class": "task " + kinds[kind[index]], x: x0.toFixed(2), y: top, width: width.toFixed(2),
                           height: laneHeight, "data-attempt": index});
        ++drawn;
      }
      // A group with a failure shows the worst one, so that no failure disappears in a crowd;
      // any other shows its kinds stacked, each as high as its share of the group.
      function flush() {
        if (group === null) return;
        if (group.count === 1) {
          drawAttempt(group.first, group.x0, group.x1);
        } else {
          var worst = -1;
          for (var k = firstFailureKind; k < kinds.length; ++k) if (group.kinds[k] > 0) worst = k;
          var pieceTop = top;
          group.kinds.forEach(function (count, kindIndex) {
            if (count === 0 || (worst >= 0 && kindIndex !== worst)) return;
            var pieceHeight = worst >= 0 ? laneHeight : laneHeight * count / group.count;
            svg(bars, "rect", {"class": "tasks " + kinds[kindIndex], x: group.x0.toFixed(2), y: pieceTop.toFixed(2),
                               width: Math.max(group.x1 - group.x0, 1).toFixed(2), height: pieceHeight.toFixed(2),
                               "data-group": groups.length,
                               "data-attempts": worst >= 0 ? group.count : count});
            pieceTop += pieceHeight;
          });
          groups.push(group);
          drawn += group.count;
        }
        group = null;
      }
      list.forEach(function (index) {
        if (!visible(index)) return;
        var start = startOf(index);
        var end = start + durationOf(index);
        var x0 = labelWidth + (start - view.from) * scale;
        var x1 = labelWidth + (end - view.from) * scale;
        if (eachAttempt || x1 - x0 >= kGroupPixels) {
          flush();
          drawAttempt(index, x0, x1);
        } else if (group !== null && x0 <= group.x0 + kGroupPixels) {
          group.x1 = Math.max(group.x1, x1);
          group.to = Math.max(group.to, end);
          ++group.count;
          ++group.kinds[kind[index]];
        } else {
          flush();
          group = {x0: x0, x1: x1, from: start, to: end, count: 1, first: index, lane: laneIndex,
                   kinds: kinds.map(function () { return 0; })};
          ++group.kinds[kind[index]];
        }
      });
      flush();
    });
    root.setAttribute("data-drawn-bars", String(drawn));
    root.setAttribute("data-timeline", eachAttempt ? "each attempt" : "grouped");
    var zoomed = view.from > 0 || view.to < span;
    document.getElementById("timeline-note").textContent =
        (zoomed ? "zoomed in: " : "") + plural(inView, "attempt", "attempts") + " on " +
        plural(lanes.length, "lane", "lanes") +
        (eachAttempt ? "" : "; each run of attempts under " + kGroupPixels + " px wide is one bar, its kinds stacked") +
        " \u2014 drag across it to zoom in";
    document.getElementById("show-all").hidden = !zoomed;

    chart.addEventListener("mousemove", function (event) {
      var target = event.target;
      if (target.hasAttribute("data-attempt")) {
        showTooltip(event, describeAttempt(Number(target.getAttribute("data-attempt"))));
      } else if (target.hasAttribute("data-group")) {
        var group = groups[Number(target.getAttribute("data-group"))];
        var lane = lanes[group.lane];
        showTooltip(event, [group.count + " attempts from +" + formatDuration(group.from) + " to +" +
                            formatDuration(group.to) + " (zoom in to see each)", describeKinds(group.kinds),
                            laneName(lane) + " on " + strings[lane[0]]]);
      } else {
        hideTooltip();
      }
    });
    chart.addEventListener("mouseleave", hideTooltip);
    // Drag across the plot to zoom in on that interval.
    var dragFrom = null;
    var selection = null;
    function plotX(event) {
      var bounds = chart.getBoundingClientRect();
      return Math.max(labelWidth, Math.min(labelWidth + plotWidth, event.clientX - bounds.left));
    }
    chart.addEventListener("mousedown", function (event) {
      dragFrom = plotX(event);
      selection = svg(chart, "rect", {"class": "selection", x: dragFrom, y: axisHeight, width: 0,
                                      height: height - axisHeight});
      window.addEventListener("mouseup", function (up) {
        var x = plotX(up);
        var from = view.from + (Math.min(x, dragFrom) - labelWidth) / scale;
        var to = view.from + (Math.max(x, dragFrom) - labelWidth) / scale;
        var wide = Math.abs(x - dragFrom) >= 4;
        dragFrom = null;
        selection.remove();
        if (!wide) return;
        view = {from: from, to: Math.max(to, from + 1e-6)};
        drawTimeline();
      }, {once: true});
    });
    chart.addEventListener("mousemove", function (event) {
      if (dragFrom === null) return;
      var x = plotX(event);
      selection.setAttribute("x", Math.min(x, dragFrom));
      selection.setAttribute("width", Math.abs(x - dragFrom));
    });
  }
  document.getElementById("show-all").addEventListener("click", function () {
    view = {from: 0, to: span};
    drawTimeline();
  });

  // Stacked bars, one per bin, a segment per kind: counts[bin][kind].
  function drawStacked(box, counts, className, xTicks, describeBin) {
    box.textContent = "";
    var width = Math.max(box.clientWidth, 320);
    var height = 220;
    var left = 44;
    var bottom = 30;
    var top = 8;
    var plotWidth = width - left - 12;
    var plotHeight = height - top - bottom;
    var most = 1;
    counts.forEach(function (bin) { most = Math.max(most, sum(bin)); });
    var chart = svg(box, "svg", {"class": className + "-chart", width: width, height: height});
    var step = Math.max(1, Math.round(niceStep(most, 4)));
    for (var tick = 0; tick <= most; tick += step) {
      var y = top + plotHeight - tick / most * plotHeight;
      svg(chart, "line", {"class": "grid", x1: left, x2: left + plotWidth, y1: y, y2: y});
      svgText(chart, {x: left - 6, y: y + 4, "text-anchor": "end"}, String(tick));
    }
    svg(chart, "line", {"class": "axis", x1: left, x2: left + plotWidth, y1: top + plotHeight, y2: top + plotHeight});
    var binWidth = plotWidth / counts.length;
    counts.forEach(function (bin, binIndex) {
      var base = top + plotHeight;
      bin.forEach(function (count, kindIndex) {
        if (count === 0) return;
        var barHeight = count / most * plotHeight;
        base -= barHeight;
        svg(chart, "rect", {"class": className + " " + kinds[kindIndex], x: (left + binIndex * binWidth + 0.5).toFixed(2),
                            y: base.toFixed(2), width: Math.max(binWidth - 1, 0.5).toFixed(2),
                            height: barHeight.toFixed(2), "data-bin": binIndex});
      });
    });
    xTicks.forEach(function (tick) {
      var x = left + tick.at * binWidth;
      svg(chart, "line", {"class": "axis", x1: x, x2: x, y1: top + plotHeight, y2: top + plotHeight + 4});
      svgText(chart, {x: x, y: top + plotHeight + 16, "text-anchor": "middle"}, tick.label);
    });
    chart.addEventListener("mousemove", function (event) {
      if (event.target.hasAttribute("data-bin")) {
        var binIndex = Number(event.target.getAttribute("data-bin"));
        showTooltip(event, [describeBin(binIndex), describeKinds(counts[binIndex])]);
      } else {
        hideTooltip();
      }
    });
    chart.addEventListener("mouseleave", hideTooltip);
  }
  function emptyBins(count) {
    var bins = [];
    for (var i = 0; i < count; ++i) bins.push(kinds.map(function () { return 0; }));
    return bins;
  }

  // Durations on a log scale, five bins per decade; zero durations count in the first bin.
  function drawHistogram() {
    var perDecade = 5;
    var shortest = Infinity;
    var longest = 0;
    for (var i = 0; i < attempts.length; ++i) {
      var d = durationOf(i);
      if (d > 0) shortest = Math.min(shortest, d);
      longest = Math.max(longest, d);
    }
    if (shortest === Infinity) shortest = longest = 1e-6;
    var low = Math.floor(Math.log10(shortest) * perDecade);
    var high = Math.max(low + 1, Math.floor(Math.log10(longest) * perDecade) + 1);
    var bins = emptyBins(high - low);
    for (var j = 0; j < attempts.length; ++j) {
      var duration = durationOf(j);
      var bin = duration > 0 ? Math.floor(Math.log10(duration) * perDecade) - low : 0;
      ++bins[Math.max(0, Math.min(bins.length - 1, bin))][kind[j]];
    }
    var ticks = [];
    for (var b = 0; b <= bins.length; ++b) {
      if ((low + b) % perDecade === 0 || bins.length <= 3) {
        ticks.push({at: b, label: formatDuration(Math.pow(10, (low + b) / perDecade)).replace(".0 ", " ")});
      }
    }
    drawStacked(document.getElementById("histogram"), bins, "bin", ticks, function (binIndex) {
      return formatDuration(Math.pow(10, (low + binIndex) / perDecade)) + " to " +
             formatDuration(Math.pow(10, (low + binIndex + 1) / perDecade)) + ": " +
             plural(sum(bins[binIndex]), "attempt", "attempts");
    });
  }

  // The attempts that ended in each of 60 intervals of the run, by kind.
  function drawCacheOverTime() {
    var count = 60;
    var bins = emptyBins(count);
    for (var i = 0; i < attempts.length; ++i) {
      var bin = Math.floor((startOf(i) + durationOf(i)) / span * count);
      ++bins[Math.max(0, Math.min(count - 1, bin))][kind[i]];
    }
    var step = niceStep(span, 5);
    var ticks = [];
    for (var t = 0; t <= span + step * 1e-9; t += step) ticks.push({at: t / span * count, label: formatOffset(t, step)});
    drawStacked(document.getElementById("cache-over-time"), bins, "rate", ticks, function (binIndex) {
      return "+" + formatDuration(binIndex * span / count) + " to +" + formatDuration((binIndex + 1) * span / count) +
             ": " + plural(sum(bins[binIndex]), "attempt", "attempts");
    });
  }

  function drawFailures() {
    var box = document.getElementById("failures");
    var failed = [];
    for (var i = 0; i < attempts.length; ++i) if (kind[i] >= firstFailureKind) failed.push(i);
    failed.sort(function (a, b) { return startOf(a) - startOf(b); });
    box.setAttribute("data-failures", String(failed.length));
    if (failed.length === 0) {
      html(box, "p", "note", "No attempt failed.");
      return;
    }
    var byType = html(box, "ul", "by-type");
    data.failures_by_type.forEach(function (entry) { html(byType, "li", "", entry[1] + " \u00d7 " + entry[0]); });
    var table = html(box, "table");
    table.id = "failures-table";
    var head = html(html(table, "thead"), "tr");
    ["at", "outcome", "error type", "message", "task", "call", "function", "host", "rank", "pid", "attempt"].forEach(
        function (name) { html(head, "th", "", name); });
    var body = html(table, "tbody");
    failed.slice(0, kFailureRowsShown).forEach(function (index) {
      var attempt = attempts[index];
      var lane = lanes[attempt[at.lane]];
      var row = html(body, "tr");
      html(row, "td", "", "+" + formatDuration(startOf(index)));
      html(row, "td", "", strings[attempt[at.outcome]]);
      html(row, "td", "", strings[attempt[at.error_type]]);
      html(row, "td", "message", strings[attempt[at.error]]);
      html(row, "td", "", String(attempt[at.task]));
      html(row, "td", "", strings[attempt[at.call]]);
      html(row, "td", "", strings[attempt[at.function]]);
      html(row, "td", "", strings[lane[0]]);
      html(row, "td", "", lane[1] >= 0 ? String(lane[1]) : "");
      html(row, "td", "", String(lane[2]));
      html(row, "td", "", String(attempt[at.attempt]));
    });
    if (failed.length > kFailureRowsShown) {
      html(box, "p", "note", (failed.length - kFailureRowsShown) + " more failures are not listed here: " +
           "joblet trace counts them by type, and the .jsonl files hold each.");
    }
  }

  drawSummary();
  drawLegend();
  drawTimeline();
  drawHistogram();
  drawCacheOverTime();
  drawFailures();
  root.setAttribute("data-report", "drawn");
  var redrawPending = false;
  window.addEventListener("resize", function () {
    if (redrawPending) return;
    redrawPending = true;
    window.requestAnimationFrame(function () {
      redrawPending = false;
      drawTimeline();
      drawHistogram();
      drawCacheOverTime();
    });
  });
})();
</script>
</body>
</html>
)page";

constexpr std::string_view kNonceMarker = "@NONCE@";
constexpr std::string_view kDataMarker = "@DATA@";

// Strings of the trace, each written once: the attempts name them by their index.
class StringTable {
 public:
  StringTable() { index(std::string()); }
  std::size_t index(const std::string& text) {
    const auto [entry, added] = indexes_.try_emplace(text, texts_.size());
    if (added) texts_.push_back(&entry->first);
    return entry->second;
  }
  void append_json(std::string& out) const {
    out += '[';
    for (std::size_t i = 0; i < texts_.size(); ++i) {
      if (i > 0) out += ",\n";
      detail::append_json_string(out, *texts_[i]);
    }
    out += ']';
  }

 private:
  std::unordered_map<std::string, std::size_t> indexes_;  // its nodes, and so the keys, never move
  std::vector<const std::string*> texts_;
};

// A number read from a trace as JSON, which has no infinity or NaN.
double finite(double value) { return std::isfinite(value) ? value : 0.0; }

// The timeline's lanes. A worker (a thread of a process) runs its attempts one after another, but
// an MPI rank starts a thread per call: one lane per worker would draw a rank as dozens of
// lanes. So the workers of a process whose attempts never overlap in time share a lane, and a
// process has as many lanes as it ran attempts at once (a lane per thread of a threads backend).
// Processes are in the order of their pids: an MPI job's ranks are started one after another,
// so the ranks of one run stay together, in order.
using Worker = std::tuple<std::string, long, int, int>;  // host, pid, rank, worker
struct TimelineLane {
  std::string host;
  int rank = -1;
  long pid = 0;
  int first_worker = 0;     // the lane's first worker
  std::size_t workers = 0;  // in turn
};
struct TimelineLanes {
  std::vector<TimelineLane> lanes;  // by host, pid, then first use
  std::map<Worker, std::size_t> lane_of;
};
TimelineLanes timeline_lanes(const std::vector<TaskAttempt>& attempts) {
  struct Span {
    double first = 0;
    double last = 0;
  };
  std::map<Worker, Span> spans;
  for (const TaskAttempt& attempt : attempts) {
    const auto [entry, added] =
        spans.try_emplace(Worker(attempt.host, attempt.pid, attempt.rank, attempt.worker), attempt.start, attempt.end);
    if (!added) {
      entry->second.first = std::min(entry->second.first, attempt.start);
      entry->second.last = std::max(entry->second.last, attempt.end);
    }
  }
  TimelineLanes timeline;
  for (auto process = spans.begin(); process != spans.end();) {
    const auto& [host, pid, rank, worker] = process->first;
    std::vector<std::pair<Span, int>> workers;  // of this process, by their first start
    auto next = process;
    for (; next != spans.end(); ++next) {
      const auto& [next_host, next_pid, next_rank, next_worker] = next->first;
      if (next_host != host || next_pid != pid || next_rank != rank) break;
      workers.emplace_back(next->second, next_worker);
    }
    std::ranges::sort(workers, [](const auto& a, const auto& b) {
      return std::tie(a.first.first, a.second) < std::tie(b.first.first, b.second);
    });
    const std::size_t first_lane = timeline.lanes.size();
    std::vector<double> lane_ends;
    for (const auto& [span, number] : workers) {
      std::size_t slot = 0;
      while (slot < lane_ends.size() && lane_ends[slot] > span.first) ++slot;
      if (slot == lane_ends.size()) {
        lane_ends.push_back(span.last);
        timeline.lanes.push_back({host, rank, pid, number, 0});
      }
      lane_ends[slot] = span.last;
      ++timeline.lanes[first_lane + slot].workers;
      timeline.lane_of.emplace(Worker(host, pid, rank, number), first_lane + slot);
    }
    process = next;
  }
  return timeline;
}

std::string duration_text(double seconds) { return format_duration(std::chrono::duration<double>(finite(seconds))); }

// The trace as the page's script reads it: the summary, the lanes of the timeline and the attempts
// as arrays of numbers, strings by their index. Times are whole microseconds since the first
// start.
std::string trace_json(const std::string& directory, const TraceRecords& records) {
  const std::vector<TaskAttempt>& attempts = records.attempts;
  const TraceTotals totals = totals_of(attempts);
  double origin = 0;
  double last = 0;
  for (const TaskAttempt& attempt : attempts) {
    if (attempt.start > 0) origin = origin == 0 ? attempt.start : std::min(origin, attempt.start);
    last = std::max(last, attempt.end);
  }
  StringTable strings;
  const TimelineLanes timeline = timeline_lanes(attempts);
  std::string lanes_json = "[";
  for (const TimelineLane& lane : timeline.lanes) {
    if (lanes_json.size() > 1) lanes_json += ',';
    fmt::format_to(std::back_inserter(lanes_json), "[{},{},{},{},{}]", strings.index(lane.host), lane.rank, lane.pid,
                   lane.first_worker, lane.workers);
  }
  lanes_json += ']';

  std::string attempts_json = "[";
  for (const TaskAttempt& attempt : attempts) {
    if (attempts_json.size() > 1) attempts_json += ",\n";
    const double start = attempt.start > 0 ? attempt.start - origin : 0.0;
    fmt::format_to(std::back_inserter(attempts_json), "[{},{},{:.0f},{:.0f},{},{},{},{},{},{},{},{:.6g},{},{},{},{}]",
                   timeline.lane_of.at(Worker(attempt.host, attempt.pid, attempt.rank, attempt.worker)), attempt.worker,
                   finite(start * 1e6), finite(attempt.seconds() * 1e6), strings.index(attempt.call), attempt.task,
                   attempt.attempt, strings.index(attempt.outcome), strings.index(attempt.cache),
                   strings.index(attempt.function), strings.index(attempt.key), finite(attempt.computed_s),
                   strings.index(attempt.arguments), strings.index(attempt.error_type), strings.index(attempt.error),
                   attempt.peak_rss_kb);
  }
  attempts_json += ']';

  std::string first_start;
  if (origin > 0 && std::isfinite(origin) && origin < 1e11) {
    first_start = format_time(std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(origin))));
  }
  std::string out = "{\"directory\":";
  detail::append_json_string(out, directory);
  fmt::format_to(std::back_inserter(out),
                 ",\"files\":{},\"skipped_lines\":{},\n\"summary\":{{\"attempts\":{},\"calls\":{},\"processes\":{},"
                 "\"hosts\":{},\"ok\":{},\"failed\":{},\"computed\":{},\"hits\":{},\"reloaded\":{},"
                 "\"cpu_computed\":\"{}\",\"saved\":\"{}\",\"efficiency\":\"{}\",\"wall\":\"{}\",\"first_start\":",
                 records.files, records.skipped_lines, attempts.size(), totals.calls, totals.processes, totals.hosts,
                 totals.ok, totals.failed, totals.computed, totals.hits, totals.reloaded,
                 duration_text(totals.cpu_computed), duration_text(totals.saved),
                 totals.capacity > 0 ? fmt::format("{:.3f}", totals.efficiency()) : std::string(),
                 duration_text(last > origin ? last - origin : 0.0));
  detail::append_json_string(out, first_start);
  out += "},\n\"failures_by_type\":[";
  for (bool first = true; const auto& [type, count] : totals.failures) {
    if (!first) out += ',';
    first = false;
    out += '[';
    detail::append_json_string(out, type);
    fmt::format_to(std::back_inserter(out), ",{}]", count);
  }
  out += "],\n\"fields\":[\"lane\",\"worker\",\"start_us\",\"duration_us\",\"call\",\"task\",\"attempt\",";
  out += "\"outcome\",\"cache\",\"function\",\"key\",\"computed_s\",\"arguments\",\"error_type\",\"error\",";
  out += "\"peak_rss_kb\"],\n\"lanes\":";
  out += lanes_json;
  out += ",\n\"strings\":";
  strings.append_json(out);
  out += ",\n\"attempts\":";
  out += attempts_json;
  out += '}';
  return out;
}

// JSON inside <script>: the element ends at the first "</script", and "<!--" changes how the
// rest is read, so no '<' may stand in it. One can only be inside a JSON string, where \u003c
// is the same character.
std::string script_safe(const std::string& json) {
  std::string out;
  out.reserve(json.size() + json.size() / 64);
  for (const char c : json) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

// 128 random bits in hex: the page's own scripts carry it; markup made of a trace's strings,
// written before it was drawn, could not.
std::string new_nonce() {
  std::random_device device;
  std::string nonce;
  for (int i = 0; i < 4; ++i) nonce += fmt::format("{:08x}", device());
  return nonce;
}

}  // namespace

std::string trace_report_html(const std::string& directory, const TraceRecords& records) {
  const std::string nonce = new_nonce();
  const std::string data = script_safe(trace_json(directory, records));
  std::string page;
  page.reserve(kPage.size() + data.size());
  std::string_view rest = kPage;
  for (std::size_t marker; (marker = rest.find('@')) != std::string_view::npos;) {
    page += rest.substr(0, marker);
    rest.remove_prefix(marker);
    if (rest.starts_with(kNonceMarker)) {
      page += nonce;
      rest.remove_prefix(kNonceMarker.size());
    } else if (rest.starts_with(kDataMarker)) {
      page += data;
      rest.remove_prefix(kDataMarker.size());
    } else {  // an @ of the page itself (@media)
      page += '@';
      rest.remove_prefix(1);
    }
  }
  page += rest;
  return page;
}

void write_trace_report(const std::string& path, const std::string& directory, const TraceRecords& records) {
  write_output_file(path, trace_report_html(directory, records), "the HTML report", "--html");
}

}  // namespace joblet::cli
