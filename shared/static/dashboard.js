// guestwarden dashboard: draws the overview's chart with uPlot (vendor/uplot) from the data-chart attribute.
// Without JavaScript the same numbers are in the table under it.
"use strict";
(function () {
  if (typeof uPlot === "undefined") { return; }
  var colours = { warn: "#c19c00", disable: "#ca5010", delete: "#a4262c" };
  var palette = ["#243a5e", "#0078d4", "#8764b8", "#038387", "#498205", "#ca5010", "#c19c00", "#a4262c", "#69797e"];
  var boxes = document.querySelectorAll(".chart[data-chart]");
  Array.prototype.forEach.call(boxes, function (box) {
    var data = JSON.parse(box.getAttribute("data-chart"));
    var names = Object.keys(data.series);
    var opts = {
      width: Math.min(960, box.clientWidth || 960),
      height: 240,
      series: [{}].concat(names.map(function (n, i) {
        return { label: n, stroke: colours[n] || palette[i % palette.length], width: 2,
                 paths: uPlot.paths.bars({ size: [0.8] }) };
      })),
      axes: [{}, { label: "actions" }],
      scales: { x: { time: true } }
    };
    new uPlot(opts, [data.x].concat(names.map(function (n) { return data.series[n]; })), box);
  });
  document.documentElement.classList.add("js");
})();
