"""One self-contained HTML page of a report (``hwbench html``): inventory, tests, memory timelines.

The page works offline: plotly.js (the optional extra ``pytest-hwbench[html]``) is embedded once,
and each test's data sits in its own inert ``<script type="application/json">`` element, parsed
and charted only when its row is opened, so a report of thousands of tests opens at once.
"""

from __future__ import annotations

import html
import importlib
import json
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from pytest_hwbench.report.model import benchmark_median_s, primary_stats, torch_runtimes
from pytest_hwbench.report.writer import atomic_text_file
from pytest_hwbench.units import format_bytes, format_duration

__all__ = [
    "INSTALL_HINT",
    "MissingExtraError",
    "iter_html",
    "plotly_js",
    "render_html",
    "write_html",
    "write_page",
]

INSTALL_HINT = "pip install 'pytest-hwbench[html]'"
_KNOWN_OUTCOMES = frozenset({"passed", "failed", "skipped", "error", "xfailed", "xpassed"})


class MissingExtraError(ImportError):
    """plotly, which draws the memory timelines, is not installed."""


def plotly_js() -> str:
    """The plotly.js bundle to embed, from the installed plotly package."""
    try:
        # plotly is untyped: imported by name, so mypy sees Any rather than a missing stub.
        offline = importlib.import_module("plotly.offline")
    except ImportError as exc:
        raise MissingExtraError(
            f"the HTML report draws memory timelines with plotly, which is not installed "
            f"({exc}): {INSTALL_HINT}"
        ) from None
    js: str = offline.get_plotlyjs()
    # Inside a <script> element: a "</script" in the bundle would end it early.
    return js.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def _e(value: Any) -> str:
    """Escape any report value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _finite(obj: Any) -> Any:
    """`obj` with NaN and infinities replaced by None (JSON.parse refuses them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _script_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>``, ``<!--`` or ``-->`` can form."""
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _test_data(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What the page needs of one test when its row is opened."""
    memory = entry.get("memory")
    data: dict[str, Any] = {
        "nodeid": entry.get("nodeid"),
        "outcome": entry.get("outcome"),
        "device": entry.get("device"),
        "platform": entry.get("platform"),
        "skip_reason": entry.get("skip_reason"),
        "worker": entry.get("worker"),
        "host": entry.get("host"),
        "duration_s": entry.get("duration_s"),
        "median_s": benchmark_median_s(entry),
        "memory": None,
    }
    if isinstance(memory, Mapping):
        timeline = memory.get("timeline") or {}
        data["memory"] = {
            "primary": memory.get("primary_series"),
            "interval_s": memory.get("interval_s"),
            "sampler": memory.get("sampler"),
            "samples": memory.get("samples"),
            "downsampled": timeline.get("downsampled", False),
            "warnings": memory.get("warnings", []),
            "stats": memory.get("series", {}),
            "t": timeline.get("t", []),
            "values": timeline.get("series", {}),
            "marks": timeline.get("marks", []),
        }
    return data


def _test_row(index: int, entry: Mapping[str, Any]) -> str:
    outcome = str(entry.get("outcome", ""))
    stats = primary_stats(entry)
    duration = entry.get("duration_s")
    if stats is not None and isinstance(stats.get("peak_delta_bytes"), int):
        growth = stats["peak_delta_bytes"]
        peak_cells = (
            f'<td class="num" data-v="{growth}">{_e(format_bytes(growth))}</td>'
            f"<td>{'exact' if stats.get('exact_peak') else 'sampled'}</td>"
        )
    else:
        peak_cells = '<td class="num" data-v="">-</td><td>-</td>'
    if isinstance(duration, (int, float)):
        duration_cell = (
            f'<td class="num" data-v="{duration!r}">{_e(format_duration(duration))}</td>'
        )
    else:
        duration_cell = '<td class="num" data-v="">-</td>'
    title = f' title="{_e(entry["skip_reason"])}"' if entry.get("skip_reason") else ""
    css = outcome if outcome in _KNOWN_OUTCOMES else "other"
    return (
        f'<tr class="test" data-i="{index}" tabindex="0">'
        f'<td class="id">{_e(entry.get("nodeid", ""))}</td>'
        f"<td>{_e(entry.get('device') or '')}</td>"
        f'<td class="o o-{css}"{title}>{_e(outcome)}</td>'
        f"{peak_cells}{duration_cell}</tr>\n"
    )


def _inventory_html(name: str | None, inventory: Mapping[str, Any]) -> str:
    torch_info = inventory.get("torch") or {}
    builds = ", ".join(torch_runtimes(torch_info))
    facts = [
        f"host {inventory.get('host', '?')}",
        str(inventory.get("platform", "")),
        f"Python {inventory.get('python', '?')}",
        f"torch {torch_info.get('version', '?')}" + (f" ({builds})" if builds else ""),
        f"pytest-hwbench {inventory.get('pytest_hwbench', '?')}",
    ]
    out = ['<section class="host">']
    if name is not None:
        out.append(f"<h3>{_e(name)}</h3>")
    out.append(f"<p>{' · '.join(_e(f) for f in facts if f)}</p>")
    out.append(
        '<table class="inv"><thead><tr><th>backend</th><th>status</th><th>devices</th>'
        "</tr></thead><tbody>"
    )
    for backend in inventory.get("backends") or []:
        if not isinstance(backend, Mapping):
            continue
        if backend.get("available"):
            count = backend.get("device_count", 0)
            status = f"available, {count} device{'s' if count != 1 else ''}"
        else:
            status = f"unavailable: {backend.get('reason')}"
        devices = []
        for device in backend.get("devices") or []:
            if not isinstance(device, Mapping):
                continue
            if "error" in device:
                devices.append(f"[{_e(device.get('index'))}] error: {_e(device['error'])}")
                continue
            props = device.get("properties") or {}
            details = [str(props.get("vendor", ""))]
            if isinstance(props.get("total_memory_bytes"), int):
                details.append(format_bytes(props["total_memory_bytes"]))
            if props.get("compute_capability") is not None:
                details.append(f"compute capability {props['compute_capability']}")
            caps = ", ".join(str(c) for c in device.get("capabilities") or []) or "none"
            devices.append(
                f"[{_e(props.get('index', '?'))}] <b>{_e(props.get('name', '?'))}</b> "
                f"{_e(' · '.join(d for d in details if d))}"
                f'<br><span class="caps">capabilities: {_e(caps)}</span>'
            )
        css = "ok" if backend.get("available") else "off"
        out.append(
            f'<tr><td>{_e(backend.get("name", "?"))}</td><td class="{css}">{_e(status)}</td>'
            f"<td>{'<br>'.join(devices) or '-'}</td></tr>"
        )
    out.append("</tbody></table></section>")
    return "\n".join(out)


def _machine_html(machine: Any) -> str:
    if not isinstance(machine, Mapping) or not machine:
        return (
            "<p>No hardware inventory in this report (a report recovered from a crashed run).</p>"
        )
    parts: list[str] = []
    if isinstance(machine.get("hosts"), Mapping):
        parts.extend(
            _inventory_html(key, inv)
            for key, inv in machine["hosts"].items()
            if isinstance(inv, Mapping)
        )
    if "backends" in machine:
        parts.insert(0, _inventory_html(None, machine))
    return "\n".join(parts) or "<p>No hardware inventory in this report.</p>"


def _summary_html(report: Mapping[str, Any], tests: list[Mapping[str, Any]]) -> str:
    outcomes = Counter(str(t.get("outcome")) for t in tests)
    measured = sum(1 for t in tests if isinstance(t.get("memory"), Mapping))
    counts = ", ".join(f"{n} {_e(o)}" for o, n in sorted(outcomes.items()))
    text = (
        f"<p>{len(tests)} test{'s' if len(tests) != 1 else ''} ({counts or 'none'}); "
        f"{measured} with memory measured. Written {_e(report.get('created', '?'))} by "
        f"pytest-hwbench {_e(report.get('pytest_hwbench', '?'))} "
        f"(schema {_e(report.get('schema'))}).</p>"
    )
    if report.get("complete") is False:
        text += (
            '<p class="warn">This report is incomplete: the run was interrupted, crashed or '
            "stopped early.</p>"
        )
    return text


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.2em;margin:1.2em 0 .4em}h3{margin:.6em 0 .2em}
table{border-collapse:collapse}th,td{padding:.25em .6em;text-align:left;vertical-align:top}
table.inv td,table.inv th{border-bottom:1px solid #ddd}
#tests{width:100%}#tests thead th{position:sticky;top:0;background:#f3f3f3;cursor:pointer;
user-select:none;border-bottom:2px solid #bbb;white-space:nowrap}
#tests th[aria-sort=ascending]::after{content:" \\25B2"}
#tests th[aria-sort=descending]::after{content:" \\25BC"}
#tests tr.test{cursor:pointer;border-bottom:1px solid #eee}#tests tr.test:hover{background:#f5f9ff}
#tests td.id{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
#tests td.id::before{content:"\\25B8 ";color:#888}#tests tr.open td.id::before{content:"\\25BE "}
.num{text-align:right;white-space:nowrap}.o-passed,.o-xfailed{color:#18794e}
.o-failed,.o-error,.o-xpassed{color:#c62828;font-weight:600}.o-skipped{color:#8a6d00}
tr.detail>td{background:#fafafa;border-bottom:2px solid #ddd;padding:.6em 1em}
.stats td,.stats th{border-bottom:1px solid #e4e4e4;font-size:13px}
.chart{width:100%;height:380px}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.4em .8em}
.ok{color:#18794e}.off{color:#777}.caps{color:#666;font-size:12px}.muted{color:#666}
#filter{margin:.3em 0 .6em;padding:.3em;width:30em;max-width:100%}
"""

_JS = r"""
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

  function draw(div, m) {
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
    var shapes = [], annotations = [];
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
      m.marks.forEach(function (k) {
        shapes.push({type: "line", xref: "x", yref: "paper", x0: k.t, x1: k.t, y0: 0, y1: 1,
                     line: {color: "#999", width: 1, dash: "dot"}});
        annotations.push({x: k.t, xref: "x", y: 1, yref: "paper", text: esc(k.label),
                          showarrow: false, yanchor: "bottom", textangle: -20,
                          font: {size: 11, color: "#444"}});
      });
    }
    var ps = m.stats[primary];
    if (ps && ps.exact_peak) {
      shapes.push({type: "line", xref: "paper", x0: 0, x1: 1, yref: "y",
                   y0: ps.peak_bytes / scale, y1: ps.peak_bytes / scale,
                   line: {color: "#c62828", width: 1, dash: "dash"}});
      annotations.push({xref: "paper", x: 0, xanchor: "left", yref: "y",
                        y: ps.peak_bytes / scale, yanchor: "bottom", showarrow: false,
                        text: "exact peak (" + esc(primary) + ") " + fmtBytes(ps.peak_bytes),
                        font: {size: 11, color: "#c62828"}});
    }
    window.Plotly.newPlot(div, traces, {
      margin: {t: 50, r: 20, b: 45, l: 70}, hovermode: "x unified", shapes: shapes,
      annotations: annotations, legend: {orientation: "h", y: -0.2},
      xaxis: {title: {text: "seconds since the measurement started"}, zeroline: false,
              hoverformat: ".4f"},
      yaxis: {title: {text: "memory (" + UNITS[ui] + ")"}}
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
    var m = d.memory;
    if (m) {
      facts.push("sampled every " + fmtTime(m.interval_s) + " by a " + m.sampler + " sampler, " +
                 m.samples + " samples" + (m.downsampled ? " (downsampled, peaks kept)" : ""));
    }
    td.appendChild(el("p", facts.join(" \u00b7 "), "muted"));
    if (!m) { td.appendChild(el("p", "Memory was not measured for this test.")); return; }
    td.appendChild(statsTable(m));
    m.warnings.forEach(function (w) { td.appendChild(el("p", w, "warn")); });
    if (!m.t.length) { td.appendChild(el("p", "The timeline has no samples.")); return; }
    if (!hasPlotly()) {
      td.appendChild(el("p", "No chart: this page was written without plotly.", "warn"));
      return;
    }
    var div = el("div", null, "chart");
    td.appendChild(div);
    draw(div, m);
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
"""

_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)


def iter_html(report: Mapping[str, Any], *, charts: bool = True) -> Iterator[str]:
    """The page in chunks, for writing a large report without holding it twice in memory.

    With `charts`, plotly must be installed (`MissingExtraError` otherwise); without, the page
    says the timelines need the extra.
    """
    js = plotly_js() if charts else None
    tests = [t for t in report.get("tests") or [] if isinstance(t, Mapping)]
    title = f"pytest-hwbench report {report.get('created', '')}".strip()
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head><body>\n"
        f"<h1>{_e(title)}</h1>\n"
    )
    yield _summary_html(report, tests)
    yield (
        f'<p class="warn" id="no-plotly" hidden>Memory timelines are not drawn: this page was '
        f"written without plotly. Install the extra, <code>{_e(INSTALL_HINT)}</code>, and run "
        "<code>hwbench html</code> again.</p>\n"
    )
    yield "<h2>Machine</h2>\n" + _machine_html(report.get("machine")) + "\n"
    yield (
        '<h2>Tests</h2>\n<p class="muted">Click a column to sort, a test to open its memory '
        "timeline (drag to zoom, double-click to reset). Peak growth is the peak minus the start "
        "of the test's primary memory series; <i>sampled</i> peaks may miss spikes shorter than "
        "the sampling interval.</p>\n"
        '<input id="filter" type="search" placeholder="filter tests by id" '
        'aria-label="filter tests by id">\n'
        '<table id="tests"><thead><tr><th data-type="text">test</th>'
        '<th data-type="text">device</th><th data-type="text">outcome</th>'
        '<th data-type="num">peak growth</th><th data-type="text">peak is</th>'
        '<th data-type="num">duration</th></tr></thead><tbody>\n'
    )
    chunk: list[str] = []
    for index, entry in enumerate(tests):
        chunk.append(_test_row(index, entry))
        if len(chunk) >= 1000:
            yield "".join(chunk)
            chunk.clear()
    yield "".join(chunk) + "</tbody></table>\n"
    for index, entry in enumerate(tests):
        yield (
            f'<script type="application/json" id="d-{index}">'
            f"{_script_json(_test_data(entry))}</script>\n"
        )
    if js is not None:
        yield f"<script>{js}</script>\n"
    yield f"<script>{_JS}</script>\n</body></html>\n"


def render_html(report: Mapping[str, Any], *, charts: bool = True) -> str:
    """The whole page as a string (see `iter_html`)."""
    return "".join(iter_html(report, charts=charts))


def write_page(report: Mapping[str, Any], out: TextIO, *, charts: bool = True) -> int:
    """Write the page to the text stream `out`, chunk by chunk; return how many tests it shows."""
    for part in iter_html(report, charts=charts):
        out.write(part)
    return sum(1 for t in report.get("tests") or [] if isinstance(t, Mapping))


def write_html(
    report: Mapping[str, Any], path: str | os.PathLike[str], *, charts: bool = True
) -> int:
    """Write the page to `path` (atomically, as every output); return its size in bytes."""
    with atomic_text_file(path) as fh:
        write_page(report, fh, charts=charts)
        size = fh.tell()
    return size
