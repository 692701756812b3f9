(function () {
  "use strict";
  var UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
  function fmtBytes(n) {
    if (n === null || n === undefined) return "-";
    var sign = n < 0 ? "-" : "", s = Math.abs(n), i = 0;
    while (s >= 1024 && i < UNITS.length - 1) { s /= 1024; i++; }
    return sign + (i === 0 ? s.toFixed(0) + " B" : s.toFixed(1) + " " + UNITS[i]);
  }
  function fmtTime(s) {
    if (s === null || s === undefined) return "-";
    if (s >= 1) return s.toFixed(2) + " s";
    if (s >= 1e-3) return (s * 1e3).toFixed(2) + " ms";
    return (s * 1e6).toFixed(0) + " us";
  }
  // plotly reads a subset of HTML in its text: report strings go in as entities.
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;");
  }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function hasPlotly() { return typeof window.Plotly !== "undefined"; }
  function fmtJoules(j) {
    if (j === null || j === undefined) return "-";
    var units = [["kJ", 1e3], ["J", 1], ["mJ", 1e-3], ["\u00b5J", 1e-6]], a = Math.abs(j);
    if (a === 0) return "0 J";
    for (var i = 0; i < units.length; i++) {
      if (a >= units[i][1] * 0.9995 || i === units.length - 1) {
        var v = j / units[i][1], w = Math.abs(v);
        return v.toFixed(w >= 99.95 ? 0 : w >= 9.995 ? 1 : 2) + " " + units[i][0];
      }
    }
  }
  // The test's energy in a line: its total, how it was found, each domain, the peak power.
  function energyFacts(e) {
    if (!e) return null;
    if (e.total_joules === null) return "energy not measured: " + e.unavailable;
    var parts = Object.keys(e.domains).map(function (n) {
      var d = e.domains[n];
      return n + " " + fmtJoules(d.joules) +
        (d.peak_watts !== undefined && d.peak_watts !== null ?
          " (peak " + d.peak_watts.toFixed(1) + " W)" : "") +
        (d.exact ? "" : " [" + d.method + "]");
    });
    return "energy " + fmtJoules(e.total_joules) + (e.exact ? " (measured" : " (estimated") +
      ", device-wide): " + parts.join(", ");
  }
  // Power on a second axis, in watts: one line per energy domain.
  function powerTraces(e, axis) {
    if (!e || !e.power) return [];
    return Object.keys(e.power.watts).map(function (n) {
      return {type: "scatter", mode: "lines", name: esc("power " + n), yaxis: axis,
              x: e.power.t, y: e.power.watts[n], line: {dash: "dot"},
              hovertemplate: "%{y:.1f} W<extra>%{fullData.name}</extra>"};
    });
  }

  function statsTable(m) {
    var table = el("table", null, "stats"), head = el("tr");
    ["series", "start", "peak", "peak growth", "end", "peak is"].forEach(function (h) {
      head.appendChild(el("th", h));
    });
    table.appendChild(head);
    Object.keys(m.stats).forEach(function (name) {
      var s = m.stats[name], tr = el("tr");
      [name + (name === m.primary ? " (primary)" : ""), fmtBytes(s.start_bytes),
       fmtBytes(s.peak_bytes), fmtBytes(s.peak_delta_bytes), fmtBytes(s.end_bytes),
       s.exact_peak ? "exact" : "sampled"].forEach(function (v) { tr.appendChild(el("td", v)); });
      table.appendChild(tr);
    });
    return table;
  }

  function draw(div, m, energy) {
    var names = Object.keys(m.values), max = 0;
    names.forEach(function (n) {
      m.values[n].forEach(function (v) { if (v !== null && v > max) max = v; });
      var s = m.stats[n];
      if (s && s.peak_bytes > max) max = s.peak_bytes;
    });
    var ui = 0, scale = 1;
    while (max / scale >= 1024 && ui < UNITS.length - 1) { scale *= 1024; ui++; }
    var traces = names.map(function (n) {
      var vals = m.values[n];
      return {
        type: "scatter", mode: "lines", name: esc(n + (n === m.primary ? " (primary)" : "")),
        x: m.t, y: vals.map(function (v) { return v === null ? null : v / scale; }),
        customdata: vals.map(fmtBytes), connectgaps: false,
        hovertemplate: "%{customdata}<extra>%{fullData.name}</extra>"
      };
    });
    var shapes = [], annotations = [], labelRows = 1;
    var primary = m.values[m.primary] ? m.primary : names[0];
    if (m.marks.length) {
      traces.push({
        type: "scatter", mode: "markers", name: "marks",
        marker: {symbol: "diamond", size: 9, color: "#444"},
        x: m.marks.map(function (k) { return k.t; }),
        y: m.marks.map(function (k) {
          var v = (k.values || {})[primary];
          return v === undefined ? null : v / scale;
        }),
        text: m.marks.map(function (k) {
          var vals = k.values || {};
          return "<b>" + esc(k.label) + "</b><br>" + Object.keys(vals).map(function (n) {
            return esc(n) + ": " + fmtBytes(vals[n]);
          }).join("<br>");
        }),
        hovertemplate: "%{text}<extra>mark</extra>"
      });
      // Labels of marks close together would print over each other: a label too close to
      // the last one on its row goes up a row.
      var span = (m.t.length > 1 ? m.t[m.t.length - 1] - m.t[0] : 0) || 1, rowEnds = [];
      m.marks.forEach(function (k) {
        shapes.push({type: "line", xref: "x", yref: "paper", x0: k.t, x1: k.t, y0: 0, y1: 1,
                     line: {color: "#999", width: 1, dash: "dot"}});
        var row = 0;
        while (row < rowEnds.length && k.t - rowEnds[row] < span * 0.12) row++;
        rowEnds[row] = k.t;
        labelRows = Math.max(labelRows, row + 1);
        annotations.push({x: k.t, xref: "x", y: 1, yref: "paper", text: esc(k.label),
                          showarrow: false, yanchor: "bottom", yshift: row * 15,
                          font: {size: 11, color: "#444"}});
      });
    }
    var ps = m.stats[primary], failure = m.failure;
    if (ps && failure && typeof failure.limit_bytes === "number" &&
        (!failure.series || failure.series === primary) && failure.kind === "memory_limit") {
      // The limit bounds peak growth: the line stands at the start plus the limit.
      var at = (ps.start_bytes + failure.limit_bytes) / scale;
      shapes.push({type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: at, y1: at,
                   line: {color: "#6a1b9a", width: 2}});
      annotations.push({xref: "paper", x: 1, xanchor: "right", yref: "y", y: at,
                        yanchor: "bottom", showarrow: false,
                        text: "memory limit: start + " + fmtBytes(failure.limit_bytes),
                        font: {size: 11, color: "#6a1b9a"}});
    }
    if (ps && ps.exact_peak) {
      shapes.push({type: "line", xref: "paper", x0: 0, x1: 1, yref: "y",
                   y0: ps.peak_bytes / scale, y1: ps.peak_bytes / scale,
                   line: {color: "#c62828", width: 1, dash: "dash"}});
      annotations.push({xref: "paper", x: 0, xanchor: "left", yref: "y",
                        y: ps.peak_bytes / scale, yanchor: "bottom", showarrow: false,
                        text: "exact peak (" + esc(primary) + ") " + fmtBytes(ps.peak_bytes),
                        font: {size: 11, color: "#c62828"}});
    }
    var power = powerTraces(energy, "y2"), layout = {
      margin: {t: 35 + 15 * labelRows, r: power.length ? 70 : 20, b: 45, l: 70},
      hovermode: "x unified", shapes: shapes,
      annotations: annotations, legend: {orientation: "h", y: -0.2},
      xaxis: {title: {text: "seconds since the measurement started"}, zeroline: false,
              hoverformat: ".4f"},
      yaxis: {title: {text: "memory (" + UNITS[ui] + ")"}}
    };
    if (power.length) {
      layout.yaxis2 = {title: {text: "power (W)"}, overlaying: "y", side: "right",
                       rangemode: "tozero", showgrid: false};
    }
    window.Plotly.newPlot(div, traces.concat(power), layout,
                          {responsive: true, displaylogo: false});
  }

  function drawPower(div, energy) {
    window.Plotly.newPlot(div, powerTraces(energy, "y"), {
      margin: {t: 30, r: 20, b: 45, l: 70}, hovermode: "x unified",
      legend: {orientation: "h", y: -0.2},
      xaxis: {title: {text: "seconds since the measurement started"}, zeroline: false,
              hoverformat: ".4f"},
      yaxis: {title: {text: "power (W)"}, rangemode: "tozero"}
    }, {responsive: true, displaylogo: false});
  }

  function fillDetail(td, d) {
    var facts = [];
    if (d.skip_reason) facts.push("skipped: " + d.skip_reason);
    facts.push("platform " + (d.platform || "-"));
    if (d.worker) facts.push("worker " + d.worker);
    if (d.host) facts.push("host " + d.host);
    facts.push("duration " + fmtTime(d.duration_s));
    if (d.median_s !== null) facts.push("benchmark median " + fmtTime(d.median_s));
    if (d.throughput) facts.push(d.throughput);
    var energy = energyFacts(d.energy);
    if (energy) facts.push(energy);
    var m = d.memory;
    if (m) {
      facts.push("sampled every " + fmtTime(m.interval_s) + " by a " + m.sampler + " sampler, " +
                 m.samples + " samples" + (m.downsampled ? " (downsampled, peaks kept)" : ""));
    }
    td.appendChild(el("p", facts.join(" \u00b7 "), "muted"));
    if (d.failure) {
      var why = el("pre", d.failure.kind.replace("_", " ") + ": " + d.failure.message, "failure");
      td.appendChild(why);
      if (m) m.failure = d.failure;
    }
    var powered = d.energy && d.energy.power;
    if (!m) {
      td.appendChild(el("p", "Memory was not measured for this test."));
      if (powered && hasPlotly()) {
        var only = el("div", null, "chart");
        td.appendChild(only);
        drawPower(only, d.energy);
      }
      return;
    }
    td.appendChild(statsTable(m));
    m.warnings.forEach(function (w) { td.appendChild(el("p", w, "warn")); });
    if (!m.t.length) { td.appendChild(el("p", "The timeline has no samples.")); return; }
    if (!hasPlotly()) {
      td.appendChild(el("p", "No chart: this page was written without plotly.", "warn"));
      return;
    }
    var div = el("div", null, "chart");
    td.appendChild(div);
    draw(div, m, d.energy);
  }

  function toggle(tr) {
    if (tr._detail) {
      if (tr._detail.querySelector(".js-plotly-plot") && hasPlotly()) {
        window.Plotly.purge(tr._detail.querySelector(".js-plotly-plot"));
      }
      tr._detail.remove(); tr._detail = null; tr.classList.remove("open");
      return;
    }
    var d = JSON.parse(document.getElementById("d-" + tr.dataset.i).textContent);
    var row = el("tr", null, "detail"), td = el("td");
    td.colSpan = tr.cells.length;
    row.appendChild(td);
    tr.after(row);
    tr._detail = row;
    tr.classList.add("open");
    fillDetail(td, d);
  }

  var table = document.getElementById("tests"), tbody = table.tBodies[0];
  tbody.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr.test");
    if (tr) toggle(tr);
  });
  tbody.addEventListener("keydown", function (ev) {
    var tr = ev.target.closest("tr.test");
    if (tr && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); toggle(tr); }
  });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
    th.addEventListener("click", function () {
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      var num = th.dataset.type === "num";
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (o) {
        o.removeAttribute("aria-sort");
      });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(tbody.querySelectorAll("tr.test"));
      rows.sort(function (a, b) {
        var x = a.cells[col], y = b.cells[col];
        if (num) {
          var p = x.dataset.v === "" ? -Infinity : parseFloat(x.dataset.v);
          var q = y.dataset.v === "" ? -Infinity : parseFloat(y.dataset.v);
          return (p - q || 0) * dir || (a.dataset.i - b.dataset.i);
        }
        return x.textContent.localeCompare(y.textContent) * dir || (a.dataset.i - b.dataset.i);
      });
      var frag = document.createDocumentFragment();
      rows.forEach(function (r) {
        frag.appendChild(r);
        if (r._detail) frag.appendChild(r._detail);
      });
      tbody.appendChild(frag);
    });
  });
  document.getElementById("filter").addEventListener("input", function (ev) {
    var q = ev.target.value.toLowerCase();
    tbody.querySelectorAll("tr.test").forEach(function (r) {
      var hide = q !== "" && r.cells[0].textContent.toLowerCase().indexOf(q) < 0;
      r.hidden = hide;
      if (r._detail) r._detail.hidden = hide;
    });
  });
  if (!hasPlotly()) document.getElementById("no-plotly").hidden = false;
  document.body.dataset.ready = "1";
})();
