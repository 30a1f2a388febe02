// Added to a copy of a `joblet trace --html` report by trace_report.sh: uses the page as a person
// would, and leaves what it saw in attributes of <html> for the dumped DOM. Hovers a grouped bar
// of the timeline, drags across 20 px of it to zoom in (which draws each attempt in view), then
// clicks "Show all".
(function () {
  var root = document.documentElement;
  var chart = document.querySelector("#timeline svg");
  var box = chart.getBoundingClientRect();
  var group = chart.querySelector("rect.tasks");
  var bar = group.getBoundingClientRect();
  group.dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientX: bar.left + 0.5, clientY: bar.top + 1}));
  var tooltip = document.getElementById("tooltip");
  root.setAttribute("data-tooltip", tooltip.hidden ? "hidden" : tooltip.textContent.split("\n")[0]);
  chart.dispatchEvent(new MouseEvent("mousedown", {bubbles: true, clientX: box.left + 300, clientY: box.top + 40}));
  window.dispatchEvent(new MouseEvent("mouseup", {clientX: box.left + 320, clientY: box.top + 40}));
  root.setAttribute("data-zoomed", root.getAttribute("data-timeline") + ", " + root.getAttribute("data-drawn-bars"));
  document.getElementById("show-all").click();
})();
