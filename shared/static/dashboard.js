// guestwarden dashboard: draws the overview's chart with uPlot (vendor/uplot) from the data-chart attribute.
// Without JavaScript the same numbers are in the table under it.
"use strict";
(function () {
  var box = document.getElementById("chart");
  if (!box || typeof uPlot === "undefined") { return; }
  var data = JSON.parse(box.getAttribute("data-chart"));
  var names = Object.keys(data.series);
  var colours = { warn: "#c19c00", disable: "#ca5010", delete: "#a4262c" };
  var opts = {
    width: Math.min(960, box.clientWidth || 960),
    height: 260,
    series: [{}].concat(names.map(function (n) {
      return { label: n, stroke: colours[n] || "#243a5e", width: 2, paths: uPlot.paths.bars({ size: [0.8] }) };
    })),
    axes: [{}, { label: "actions" }],
    scales: { x: { time: true } }
  };
  new uPlot(opts, [data.x].concat(names.map(function (n) { return data.series[n]; })), box);
  document.documentElement.classList.add("js");
})();
