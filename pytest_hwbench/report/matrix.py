"""One test across machines and devices, side by side (``hwbench matrix``).

Every report gives columns, one per platform its tests ran on, named by the report's machine
label and the platform; every test is a row, a test run once per platform in one
report (``test_step[cpu]``, ``test_step[cuda]``) being one row with a cell in each platform's
column. A cell holds the test's outcome and figures: benchmark median and its spread, throughput
and fraction of the device's peak, peak memory growth, energy; against the baseline column, the
median's speedup. Written as a terminal table, markdown (a pull request comment), CSV or JSON.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_hwbench.report.model import (
    Report,
    benchmark_median_s,
    energy_joules,
    machine_label,
    primary_stats,
    throughput_text,
)
from pytest_hwbench.report.text import common_folder, text_table
from pytest_hwbench.units import format_bytes, format_duration, format_energy

__all__ = ["MATRIX_FORMATS", "Cell", "Column", "Matrix", "MatrixError", "build_matrix", "row_key"]

#: The formats `Matrix.render` writes.
MATRIX_FORMATS = ("table", "markdown", "csv", "json", "html")
#: The page's policy: nothing loads from anywhere; its own script and style run inline.
_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
_PAGE_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}th,td{padding:.3em .6em;border-bottom:1px solid #ddd}
th{cursor:pointer;background:#f4f4f4;position:sticky;top:0;text-align:right}
th:first-child,td:first-child{text-align:left;font-family:monospace}
td{text-align:right;white-space:nowrap}tr.test{cursor:pointer}tr.test:hover{background:#f8f8ff}
td.skip{color:#888}td.fail{color:#b00020;font-weight:600}td.base{background:#fffbe6}
.muted{color:#666}svg text{font:11px system-ui,sans-serif}
"""
_PAGE_SCRIPT = """
(function(){
var table=document.getElementById('matrix'),body=table.tBodies[0];
function rows(){return Array.prototype.slice.call(body.querySelectorAll('tr.test'));}
Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,col){
 th.addEventListener('click',function(){
  var up=th.dataset.dir!=='up';th.dataset.dir=up?'up':'down';
  var rs=rows();rs.sort(function(a,b){
   var x=a.cells[col],y=b.cells[col];
   if(col===0){var o=x.textContent.localeCompare(y.textContent);return up?o:-o;}
   var u=x.dataset.v===''?Infinity:+x.dataset.v,v=y.dataset.v===''?Infinity:+y.dataset.v;
   return up?u-v:v-u;});
  rs.forEach(function(r){var d=document.getElementById('chart-'+r.dataset.i);
   body.appendChild(r);if(d){body.appendChild(d);}});
 });});
document.getElementById('filter').addEventListener('input',function(ev){
 var q=ev.target.value.toLowerCase();rows().forEach(function(r){
  r.hidden=q!==''&&r.cells[0].textContent.toLowerCase().indexOf(q)<0;
  var d=document.getElementById('chart-'+r.dataset.i);if(d){d.hidden=r.hidden;}});});
var NS='http://www.w3.org/2000/svg';
function bars(r){
 var cells=Array.prototype.slice.call(r.cells,1),vals=cells.map(function(c){
  return c.dataset.v===''?null:+c.dataset.v;}),max=Math.max.apply(null,vals.concat([0]));
 var svg=document.createElementNS(NS,'svg'),h=18,w=360;
 svg.setAttribute('width',w+320);svg.setAttribute('height',h*cells.length+4);
 cells.forEach(function(c,i){
  var y=i*h+2,t=document.createElementNS(NS,'text');t.setAttribute('x',0);t.setAttribute('y',y+12);
  t.textContent=table.tHead.rows[0].cells[i+1].textContent;svg.appendChild(t);
  var v=vals[i];if(v===null||max<=0){return;}
  var b=document.createElementNS(NS,'rect');b.setAttribute('x',220);b.setAttribute('y',y+2);
  b.setAttribute('height',h-6);b.setAttribute('width',Math.max(1,w*v/max));
  b.setAttribute('fill',c.classList.contains('base')?'#d4a017':'#4a6fa5');svg.appendChild(b);
  var l=document.createElementNS(NS,'text');
  l.setAttribute('x',224+w*v/max);l.setAttribute('y',y+12);
  l.textContent=c.textContent;svg.appendChild(l);});
 return svg;}
body.addEventListener('click',function(ev){
 var r=ev.target.closest('tr.test');if(!r){return;}
 var id='chart-'+r.dataset.i,open=document.getElementById(id);
 if(open){open.remove();return;}
 var tr=document.createElement('tr'),td=document.createElement('td');tr.id=id;tr.className='chart';
 td.colSpan=r.cells.length;td.appendChild(bars(r));tr.appendChild(td);
 body.insertBefore(tr,r.nextSibling);});
document.body.dataset.ready='1';
})();
"""
_MEASURED = frozenset({"passed", "xfailed", "xpassed"})


class MatrixError(ValueError):
    """Reports that cannot be set side by side as asked (an unknown baseline); says why."""


@dataclass(frozen=True)
class Column:
    """One platform of one report: what the cells below it ran on."""

    machine: str
    platform: str
    source: str
    #: The report's own machine label (`machine` adds a commit or file where two are alike).
    label: str = ""

    @property
    def name(self) -> str:
        """The column's heading: the machine's label and the platform."""
        return f"{self.machine} \u00b7 {self.platform}"


@dataclass(frozen=True)
class Cell:
    """One test on one column: its outcome and what was measured of it."""

    outcome: str
    median_s: float | None = None
    iqr_s: float | None = None
    rounds: int | None = None
    throughput: str | None = None
    peak_growth_bytes: int | None = None
    exact_peak: bool | None = None
    energy_joules: float | None = None
    #: Why it was skipped, or how it failed (the failure's kind and first line).
    reason: str | None = None

    @classmethod
    def of_entry(cls, entry: Mapping[str, Any]) -> Cell:
        """The cell of a report entry."""
        outcome = str(entry.get("outcome", "?"))
        benchmark = entry.get("benchmark")
        stats = primary_stats(entry)
        reason = entry.get("skip_reason")
        failure = entry.get("failure")
        if isinstance(failure, Mapping):
            first = str(failure.get("message", "")).strip().splitlines()[:1]
            reason = f"{failure.get('kind', 'failure')}: {first[0] if first else ''}".strip()
        rounds = benchmark.get("rounds") if isinstance(benchmark, Mapping) else None
        iqr = benchmark.get("iqr") if isinstance(benchmark, Mapping) else None
        peak = stats.get("peak_delta_bytes") if stats is not None else None
        return cls(
            outcome=outcome,
            median_s=benchmark_median_s(entry),
            iqr_s=float(iqr) if isinstance(iqr, (int, float)) and math.isfinite(iqr) else None,
            rounds=int(rounds) if isinstance(rounds, int) else None,
            throughput=throughput_text(entry),
            peak_growth_bytes=int(peak) if isinstance(peak, int) else None,
            exact_peak=bool(stats.get("exact_peak")) if stats is not None else None,
            energy_joules=energy_joules(entry),
            reason=str(reason) if reason else None,
        )

    def headline(self, speedup: float | None) -> str:
        """The cell in one short string: the median (and speedup), else the peak; or why not."""
        if self.outcome == "skipped":
            return "skip"
        if self.outcome not in _MEASURED:
            return {"failed": "FAIL", "error": "ERROR", "crashed": "CRASH"}.get(
                self.outcome, self.outcome
            )
        if self.median_s is not None:
            text = format_duration(self.median_s)
            return text if speedup is None else f"{text} ({_times(speedup)})"
        if self.peak_growth_bytes is not None:
            return format_bytes(self.peak_growth_bytes) + ("" if self.exact_peak else "~")
        if self.energy_joules is not None:
            return format_energy(self.energy_joules)
        return "ok"


def _times(ratio: float) -> str:
    return f"{ratio:.2f}\u00d7" if ratio < 10 else f"{ratio:.0f}\u00d7"


def row_key(nodeid: str, platform: str | None) -> str:
    """The test's row: its node id without the platform among its parameters.

    ``test_step[cuda-8]`` on cuda is ``test_step[8]``; ``test_step[cpu]`` is ``test_step``.
    """
    match = re.fullmatch(r"(.*)\[(.*)\]", nodeid)
    if match is None or not platform:
        return nodeid
    base, params = match.groups()
    parts = params.split("-")
    if platform not in parts:
        return nodeid
    parts.remove(platform)
    return f"{base}[{'-'.join(parts)}]" if parts else base


@dataclass
class Matrix:
    """Tests by columns (reports x platforms), with one baseline column for speedups."""

    columns: list[Column]
    #: Row key -> column index -> cell.
    rows: dict[str, dict[int, Cell]] = field(default_factory=dict)
    baseline: int = 0
    #: Columns where every test was skipped (the platform absent there), with the first reason.
    absent: list[tuple[Column, str]] = field(default_factory=list)

    def speedup(self, row: str, column: int) -> float | None:
        """How many times faster the test's median is here than in the baseline column."""
        cells = self.rows[row]
        base, here = cells.get(self.baseline), cells.get(column)
        if column == self.baseline or base is None or here is None:
            return None
        if base.median_s is None or here.median_s is None or here.median_s <= 0:
            return None
        if base.outcome not in _MEASURED or here.outcome not in _MEASURED:
            return None
        return base.median_s / here.median_s

    def render(self, fmt: str, width: int = 100) -> str:
        """The matrix as ``table`` (fits `width`), ``markdown``, ``csv`` or ``json`` text."""
        if fmt == "table":
            return self._table(width)
        if fmt == "markdown":
            return self._markdown()
        if fmt == "csv":
            return self._csv()
        if fmt == "json":
            return json.dumps(self._records(), indent=2) + "\n"
        if fmt == "html":
            return self._html()
        raise MatrixError(f"unknown format {fmt!r}; valid: {', '.join(MATRIX_FORMATS)}")

    def _headlines(self, row: str) -> list[str]:
        cells = self.rows[row]
        return [
            cells[i].headline(self.speedup(row, i)) if i in cells else "-"
            for i in range(len(self.columns))
        ]

    def _legend(self) -> list[str]:
        base = self.columns[self.baseline].name if self.columns else "-"
        lines = [
            f"baseline: {base}; a cell is the benchmark median (speedup against the baseline), "
            "else the peak memory growth (~ sampled), else the energy; skip, FAIL, ERROR: see "
            "the markdown, CSV or JSON for why"
        ]
        for column, reason in self.absent:
            lines.append(f"not run on {column.name} ({column.source}): {reason}")
        return lines

    def _table(self, width: int) -> str:
        count = len(self.columns)
        lines = [f"{len(self.rows)} tests on {count} column{'s' if count != 1 else ''}"]
        for i, column in enumerate(self.columns):
            lines.append(f"  [{i + 1}] {column.name}  ({column.source})")
        keys = list(self.rows)
        folder = common_folder(keys)
        if folder:
            lines.append(f"tests under {folder}")
        header = ["test", *(f"[{i + 1}]" for i in range(len(self.columns))), ""]
        body = [(key[len(folder) :], *self._headlines(key), "") for key in keys]
        if body:
            lines += text_table(header, body, numeric=range(1, len(header) - 1), width=width)
        for line in self._legend():
            lines += textwrap.wrap(line, width, subsequent_indent="    ")
        return "\n".join(lines) + "\n"

    def _markdown(self) -> str:
        def cell_text(row: str, index: int) -> str:
            cell = self.rows[row].get(index)
            if cell is None:
                return "-"
            text = cell.headline(self.speedup(row, index))
            extra = []
            if cell.outcome in _MEASURED:
                if cell.throughput:
                    extra.append(cell.throughput)
                if cell.median_s is not None and cell.peak_growth_bytes is not None:
                    extra.append(f"peak {format_bytes(cell.peak_growth_bytes)}")
                if cell.energy_joules is not None and cell.median_s is not None:
                    extra.append(format_energy(cell.energy_joules))
            elif cell.reason:
                extra.append(cell.reason)
            shown = " · ".join([text, *extra])
            return shown.replace("|", "\\|").replace("\n", " ")

        header = ["test", *(c.name for c in self.columns)]
        lines = [
            "| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
            "|" + "---|" + "---:|" * len(self.columns),
        ]
        for row in self.rows:
            cells = [cell_text(row, i) for i in range(len(self.columns))]
            lines.append("| `" + row.replace("`", "'") + "` | " + " | ".join(cells) + " |")
        lines.append("")
        lines += self._legend()
        return "\n".join(lines) + "\n"

    def _sort_value(self, cell: Cell) -> str:
        """What a column sorts by: the median, else the peak growth, else the energy."""
        if cell.outcome not in _MEASURED:
            return ""
        for value in (cell.median_s, cell.peak_growth_bytes, cell.energy_joules):
            if value is not None:
                return repr(value)
        return ""

    def _html(self) -> str:
        """One offline page: the table, sortable by any column and filterable by test.

        A row's click draws its bars across the columns (the same figure as its cells show).
        """
        e = html.escape
        head = "".join(
            f'<th title="{e(column.source)}">{e(column.name)}</th>' for column in self.columns
        )
        body = []
        for number, (row, cells) in enumerate(self.rows.items()):
            tds = []
            for index in range(len(self.columns)):
                cell = cells.get(index)
                if cell is None:
                    tds.append('<td data-v="" class="skip">-</td>')
                    continue
                css = "" if cell.outcome in _MEASURED else "fail"
                if cell.outcome == "skipped":
                    css = "skip"
                if index == self.baseline:
                    css = f"{css} base".strip()
                hover = cell.reason or cell.throughput or ""
                tds.append(
                    f'<td data-v="{self._sort_value(cell)}" class="{css}" title="{e(hover)}">'
                    f"{e(cell.headline(self.speedup(row, index)))}</td>"
                )
            body.append(f'<tr class="test" data-i="{number}"><td>{e(row)}</td>{"".join(tds)}</tr>')
        legend = "".join(f'<p class="muted">{e(line)}</p>' for line in self._legend())
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f"<title>hwbench matrix: {len(self.rows)} tests</title><style>{_PAGE_STYLE}</style>"
            "</head><body>\n"
            f"<h1>{len(self.rows)} tests on {len(self.columns)} columns</h1>\n"
            '<p><input id="filter" placeholder="filter tests" size="40"> '
            '<span class="muted">click a heading to sort, a row for its bars</span></p>\n'
            f'<table id="matrix"><thead><tr><th>test</th>{head}</tr></thead><tbody>\n'
            + "\n".join(body)
            + f"\n</tbody></table>\n{legend}\n<script>{_PAGE_SCRIPT}</script></body></html>\n"
        )

    def _records(self) -> list[dict[str, Any]]:
        records = []
        for row, cells in self.rows.items():
            for index, cell in sorted(cells.items()):
                column = self.columns[index]
                records.append(
                    {
                        "test": row,
                        "machine": column.machine,
                        "platform": column.platform,
                        "source": column.source,
                        **asdict(cell),
                        "speedup": self.speedup(row, index),
                        "baseline": index == self.baseline,
                    }
                )
        return records

    def _csv(self) -> str:
        out = io.StringIO()
        records = self._records()
        fields = list(records[0]) if records else ["test"]
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue()


def _report_label(report: Mapping[str, Any]) -> str:
    run = report.get("run")
    label = run.get("machine_label") if isinstance(run, Mapping) else None
    return str(label) if label else machine_label(report.get("machine") or {})


def _distinct_labels(reports: Sequence[tuple[str, Report]], own: Sequence[str]) -> list[str]:
    """The reports' own machine labels `own`, told apart where two are alike.

    By the report's commit where it has one, else by its source.
    """
    labels = list(own)
    for label in set(labels):  # set: each label once, whatever the order
        same = [i for i, other in enumerate(labels) if other == label]
        if len(same) < 2:
            continue
        for i in same:
            run: Mapping[str, Any] = reports[i][1].get("run") or {}
            git: Mapping[str, Any] = run.get("git") or {}
            commit = str(git.get("commit") or "")[:7]
            labels[i] = f"{label} @{commit}" if commit else f"{label} ({reports[i][0]})"
    return labels


def build_matrix(reports: Sequence[tuple[str, Report]], baseline: str | None = None) -> Matrix:
    """The matrix of `reports` (each with the name it was given by, its path).

    `baseline` names the column speedups are against: a column's full name, a machine label
    (its first platform), or a report's source; by default the first column.
    """
    columns: list[Column] = []
    index: dict[tuple[int, str], int] = {}
    rows: dict[str, dict[int, Cell]] = {}
    own_labels = [_report_label(report) for _, report in reports]
    distinct = _distinct_labels(reports, own_labels)
    for number, ((source, report), label, own_label) in enumerate(
        zip(reports, distinct, own_labels, strict=True)
    ):
        for entry in report.get("tests") or ():
            if not isinstance(entry, Mapping):
                continue
            platform = str(entry.get("platform") or "?")
            key = (number, platform)
            if key not in index:
                index[key] = len(columns)
                columns.append(Column(label, platform, source, own_label))
            row = row_key(str(entry.get("nodeid", "?")), entry.get("platform"))
            rows.setdefault(row, {})[index[key]] = Cell.of_entry(entry)
    kept, absent = _drop_absent(columns, rows)
    return Matrix(kept, rows, _baseline_index(kept, baseline), absent)


def _drop_absent(
    columns: list[Column], rows: dict[str, dict[int, Cell]]
) -> tuple[list[Column], list[tuple[Column, str]]]:
    """Drop the columns where every test was skipped (their platform absent), in place.

    A platform a machine lacks says so once, not in every row: the first skip reason stands
    for the column.
    """
    skipped_only: dict[int, str] = {}
    for index in range(len(columns)):
        column_cells = [cells[index] for cells in rows.values() if index in cells]
        if column_cells and all(cell.outcome == "skipped" for cell in column_cells):
            skipped_only[index] = next((c.reason for c in column_cells if c.reason), "skipped")
    if not skipped_only or len(skipped_only) == len(columns):
        return columns, []
    renumber: dict[int, int] = {}
    kept: list[Column] = []
    for index, column in enumerate(columns):
        if index not in skipped_only:
            renumber[index] = len(kept)
            kept.append(column)
    for key, cells in rows.items():
        rows[key] = {renumber[i]: cell for i, cell in cells.items() if i in renumber}
    for key in [key for key, cells in rows.items() if not cells]:
        del rows[key]
    return kept, [(columns[i], reason) for i, reason in skipped_only.items()]


def _baseline_index(columns: Sequence[Column], wanted: str | None) -> int:
    if wanted is None or not columns:
        return 0
    for attribute in ("name", "machine", "label", "source"):
        found = [i for i, column in enumerate(columns) if getattr(column, attribute) == wanted]
        if found:
            return found[0]
    names = "; ".join(column.name for column in columns)
    raise MatrixError(
        f"no column is {wanted!r}: give a column, a machine label or a report ({names})"
    )
