// Shopfloor console behaviour on top of server-rendered pages: live charts
// (uPlot fed by Server-Sent Events), auto-submitting selects and confirm
// prompts. Everything here is optional: without it the pages still read.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#0b5cad";
  }
  var palette = ["--accent", "--ok", "--warn", "--bad"];

  // makeChart draws one field as a uPlot line chart in el and returns an
  // append(t seconds, value) function that slides the window.
  function makeChart(el, title, xs, ys, windowSec, colorIdx) {
    var width = Math.max(el.clientWidth || 400, 200);
    var opts = {
      title: title, width: width, height: 150,
      scales: { x: { time: true } },
      axes: [{ stroke: css("--muted"), grid: { stroke: css("--line") } }, { stroke: css("--muted"), grid: { stroke: css("--line") }, size: 60 }],
      series: [{}, { label: title, stroke: css(palette[colorIdx % palette.length]), width: 1.5, spanGaps: true }],
      legend: { show: false }
    };
    var data = [xs.slice(), ys.slice()];
    var plot = new uPlot(opts, data, el);
    var points = 0;
    var append = function (t, v) {
      data[0].push(t); data[1].push(v);
      var cut = t - windowSec;
      while (data[0].length > 2 && data[0][0] < cut) { data[0].shift(); data[1].shift(); }
      plot.setData(data);
      points++;
      el.setAttribute("data-live-points", String(points));
    };
    new ResizeObserver(function () { plot.setSize({ width: Math.max(el.clientWidth, 200), height: 150 }); }).observe(el);
    return append;
  }

  function liveSource(url, onPoint, stateEl) {
    if (!window.EventSource || !url) return;
    var es = new EventSource(url);
    es.addEventListener("point", function (ev) {
      var p = JSON.parse(ev.data);
      onPoint(p.t / 1000, p.v);
      if (stateEl) stateEl.textContent = "Live: last point " + new Date(p.t).toLocaleTimeString();
    });
    es.onerror = function () { if (stateEl) stateEl.textContent = "Live updates paused; reconnecting…"; };
    window.addEventListener("pagehide", function () { es.close(); });
  }

  function deviceCharts() {
    var holder = document.getElementById("charts");
    var src = document.getElementById("chart-data");
    if (!holder || !src || !window.uPlot) return;
    var c = JSON.parse(src.textContent);
    var appenders = {};
    var fields = c.fields.slice();
    var add = function (field, xs, ys) {
      var box = document.createElement("div");
      box.className = "chart";
      box.setAttribute("data-field", field);
      holder.appendChild(box);
      appenders[field] = makeChart(box, field, xs, ys, c.window, Object.keys(appenders).length);
    };
    fields.forEach(function (f, i) { add(f, c.x, c.y[i]); });
    if (fields.length === 0) holder.innerHTML = '<p class="muted">No numeric telemetry in this range yet; new points appear here live.</p>';
    liveSource(c.live, function (t, vals) {
      Object.keys(vals).forEach(function (f) {
        if (!appenders[f]) {
          if (Object.keys(appenders).length >= 8) return;
          var p = holder.querySelector("p.muted"); if (p) p.remove();
          add(f, [], []);
        }
        appenders[f](t, vals[f]);
        var cell = document.querySelector('td[data-field="' + CSS.escape(f) + '"]');
        if (cell) cell.textContent = String(+vals[f].toPrecision(6));
      });
    }, document.getElementById("live-state"));
  }

  // multiChart draws every series of a PromQL result on one plot.
  function multiChart(el, c) {
    var opts = {
      width: Math.max(el.clientWidth || 400, 200), height: 170,
      scales: { x: { time: true } },
      axes: [{ stroke: css("--muted"), grid: { stroke: css("--line") } }, { stroke: css("--muted"), grid: { stroke: css("--line") }, size: 60 }],
      series: [{}].concat(c.fields.map(function (f, i) { return { label: f, stroke: css(palette[i % palette.length]), width: 1.5, spanGaps: true }; })),
      legend: { show: c.fields.length > 1 }
    };
    var plot = new uPlot(opts, [c.x].concat(c.y), el);
    el.setAttribute("data-series", String(c.fields.length));
    new ResizeObserver(function () { plot.setSize({ width: Math.max(el.clientWidth, 200), height: 170 }); }).observe(el);
  }

  function tileCharts() {
    if (!window.uPlot) return;
    document.querySelectorAll("[data-chart]").forEach(function (el, i) {
      var src = el.nextElementSibling;
      if (!src) return;
      var c = JSON.parse(src.textContent);
      if (!c.fields.length) { el.innerHTML = '<p class="muted">No data in the last hour.</p>'; return; }
      if (el.hasAttribute("data-multi")) { multiChart(el, c); return; }
      var field = c.fields[0];
      var append = makeChart(el, field, c.x, c.y[0], c.window, i);
      liveSource(c.live, function (t, vals) { if (field in vals) append(t, vals[field]); });
    });
  }

  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t.matches && t.matches("select[data-autosubmit]")) t.form.submit();
  });
  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    var msg = f.getAttribute && f.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", function () { deviceCharts(); tileCharts(); });
})();
