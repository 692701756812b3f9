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
from functools import cached_property
from typing import Any

from pytest_hwbench.report.history import (
    MEMORY_LEAST,
    Run,
    Step,
    find_steps,
    order_runs,
    sparkline,
)
from pytest_hwbench.report.model import (
    Report,
    benchmark_median_noise_s,
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
td.up::after{content:" \\25B2";color:#b00020}td.down::after{content:" \\25BC";color:#2e7d32}
"""
_PAGE_SCRIPT = """
(function(){
var table=document.getElementById('matrix'),body=table.tBodies[0],heads=table.tHead.rows[0].cells;
var history=JSON.parse(document.getElementById('history').textContent);
function rows(){return Array.prototype.slice.call(body.querySelectorAll('tr.test'));}
Array.prototype.forEach.call(heads,function(th,col){
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
var hiddenColumns=document.createElement('style');document.head.appendChild(hiddenColumns);
document.getElementById('machines').addEventListener('input',function(ev){
 var q=ev.target.value.toLowerCase(),rules=[];
 Array.prototype.forEach.call(heads,function(th,col){if(col===0){return;}
  th.hidden=q!==''&&th.textContent.toLowerCase().indexOf(q)<0;
  if(th.hidden){rules.push('#matrix tr.test>:nth-child('+(col+1)+')');}});
 hiddenColumns.textContent=rules.length?rules.join(',')+'{display:none}':'';});
var NS='http://www.w3.org/2000/svg';
function el(name,attrs,text){var n=document.createElementNS(NS,name);
 for(var k in attrs){n.setAttribute(k,attrs[k]);}if(text!==undefined){n.textContent=text;}return n;}
function bars(r){
 var cells=Array.prototype.slice.call(r.cells,1).filter(function(c){
  return !heads[c.cellIndex].hidden;});
 var vals=cells.map(function(c){return c.dataset.v===''?null:+c.dataset.v;});
 var max=Math.max.apply(null,vals.concat([0])),h=18,w=360;
 var svg=el('svg',{width:w+320,height:h*cells.length+4,'class':'bars'});
 cells.forEach(function(c,i){
  var y=i*h+2;svg.appendChild(el('text',{x:0,y:y+12},heads[c.cellIndex].textContent));
  var v=vals[i];if(v===null||max<=0){return;}
  svg.appendChild(el('rect',{x:220,y:y+2,height:h-6,width:Math.max(1,w*v/max),
   fill:c.classList.contains('base')?'#d4a017':'#4a6fa5'}));
  svg.appendChild(el('text',{x:224+w*v/max,y:y+12},c.textContent));});
 return svg;}
function line(name,runs,series){
 var w=420,h=90,left=8,top=18,vs=series.v,known=vs.filter(function(v){return v!==null;});
 var lo=Math.min.apply(null,known),hi=Math.max.apply(null,known),span=hi-lo||1;
 var svg=el('svg',{width:w+150,height:h+34,'class':'history'});
 svg.appendChild(el('text',{x:0,y:12},name+': '+known.length+' runs'));
 function x(i){return left+(vs.length<2?0:i*w/(vs.length-1));}
 function y(v){return top+h-(v-lo)/span*h;}
 var pts=[];vs.forEach(function(v,i){if(v!==null){pts.push(x(i)+','+y(v));}});
 svg.appendChild(el('polyline',{points:pts.join(' '),fill:'none',stroke:'#4a6fa5',
  'stroke-width':1.5}));
 var stepAt={};series.s.forEach(function(s){stepAt[s[0]]=s;});
 vs.forEach(function(v,i){if(v===null){return;}var s=stepAt[i],run=runs[i];
  var dot=el('circle',{cx:x(i),cy:y(v),r:s?5:3,fill:s?(s[1]?'#e69500':'#b00020'):'#4a6fa5'});
  dot.appendChild(el('title',{},run[0]+' ('+run[1]+'): '+series.t[i]+(s?'; step: '+s[2]:'')));
  svg.appendChild(dot);});
 svg.appendChild(el('text',{x:w+left+8,y:top+8},series.t[vs.indexOf(hi)]));
 svg.appendChild(el('text',{x:w+left+8,y:top+h},series.t[vs.indexOf(lo)]));
 svg.appendChild(el('text',{x:left,y:top+h+14},runs[0][0]+' '+runs[0][1]));
 var last=runs[runs.length-1];
 svg.appendChild(el('text',{x:left+w,y:top+h+14,'text-anchor':'end'},last[0]+' '+last[1]));
 return svg;}
body.addEventListener('click',function(ev){
 var r=ev.target.closest('tr.test');if(!r){return;}
 var id='chart-'+r.dataset.i,open=document.getElementById(id);
 if(open){open.remove();return;}
 var tr=document.createElement('tr'),td=document.createElement('td');tr.id=id;tr.className='chart';
 td.colSpan=r.cells.length;td.appendChild(bars(r));
 Array.prototype.forEach.call(r.cells,function(c,col){
  var series=history.cells[r.dataset.i+':'+(col-1)];if(!series||heads[col].hidden){return;}
  td.appendChild(document.createElement('br'));
  td.appendChild(line(heads[col].textContent,history.runs[String(col-1)],series));});
 tr.appendChild(td);body.insertBefore(tr,r.nextSibling);});
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
    #: The machine's reports over commits, oldest first, the column's own last; empty where
    #: the machine has no history (one report, or reports without commits).
    runs: tuple[Run, ...] = ()
    #: The commit the column's report ran at, where it says.
    commit: str | None = None

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
    #: How far the median may be off by chance (its notch's half-width).
    notch_s: float | None = None
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
            notch_s=benchmark_median_noise_s(entry),
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


#: The figures a cell's headline and its history follow, in order of preference.
_FIGURES = ("median_s", "peak_growth_bytes", "energy_joules")
_FIGURE_WORDS = {
    "median_s": ("slower", "faster"),
    "peak_growth_bytes": ("more memory", "less memory"),
    "energy_joules": ("more energy", "less energy"),
}


def _format_figure(figure: str, value: float) -> str:
    if figure == "median_s":
        return format_duration(value)
    if figure == "peak_growth_bytes":
        return format_bytes(int(value))
    return format_energy(value)


def _figure_of(cell: Cell | None, figure: str) -> float | None:
    if cell is None or cell.outcome not in _MEASURED:
        return None
    value = getattr(cell, figure)
    return None if value is None else float(value)


@dataclass(frozen=True)
class StepChange:
    """A step in one test's history on one column: where, and from what to what."""

    row: str
    column: int
    #: The figure that stepped: ``median_s``, ``peak_growth_bytes`` or ``energy_joules``.
    figure: str
    step: Step
    #: The first run at the new level, and the one before it.
    run: Run
    previous: Run | None

    def describe(self) -> str:
        """The step in words: the levels, the change and the commit it came with."""
        step = self.step
        worse, better = _FIGURE_WORDS[self.figure]
        ratio = step.ratio
        change = f"{_times(ratio)} {worse}" if ratio >= 1 else f"{_times(1 / ratio)} {better}"
        since = f", after {self.previous.short}" if self.previous is not None else ""
        return (
            f"{_format_figure(self.figure, step.before)} -> "
            f"{_format_figure(self.figure, step.after)} ({change}) at {self.run.short} "
            f"({self.run.date}{since})" + (", tentative" if step.tentative else "")
        )

    def record(self) -> dict[str, Any]:
        """The step as JSON: the commits, the levels, their ratio."""
        return {
            "figure": self.figure,
            "commit": self.run.commit,
            "date": self.run.date,
            "previous_commit": self.previous.commit if self.previous else None,
            "before": self.step.before,
            "after": self.step.after,
            "ratio": self.step.ratio,
            "threshold": self.step.threshold,
            "tentative": self.step.tentative,
        }


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
    #: Row key -> column index -> the cell in each of the column's runs (None: not there).
    history: dict[str, dict[int, list[Cell | None]]] = field(default_factory=dict)

    def series(self, row: str, column: int) -> tuple[str, list[float | None]] | None:
        """The figure a test's history on a column follows, and its value in each run.

        The figure is the newest measured run's headline one (median, else peak growth, else
        energy); None where fewer than two runs measured it.
        """
        cells = self.history.get(row, {}).get(column)
        if not cells:
            return None
        newest = next(
            (c for c in reversed(cells) if c is not None and c.outcome in _MEASURED), None
        )
        figure = next((f for f in _FIGURES if _figure_of(newest, f) is not None), None)
        if figure is None:
            return None
        values = [_figure_of(cell, figure) for cell in cells]
        if sum(value is not None for value in values) < 2:
            return None
        return figure, values

    @cached_property
    def step_changes(self) -> list[StepChange]:
        """Every test's steps on every column with a history, in row and column order."""
        found: list[StepChange] = []
        for row, by_column in self.history.items():
            for column in sorted(by_column):
                series = self.series(row, column)
                if series is None:
                    continue
                figure, values = series
                cells = by_column[column]
                notches = [
                    cell.notch_s if cell is not None and figure == "median_s" else None
                    for cell in cells
                ]
                runs = self.columns[column].runs
                least = MEMORY_LEAST if figure == "peak_growth_bytes" else 0.0
                for step in find_steps(values, notches, least):
                    previous = max(
                        (i for i in range(step.index) if values[i] is not None), default=None
                    )
                    found.append(
                        StepChange(
                            row, column, figure, step, runs[step.index],
                            None if previous is None else runs[previous],
                        )
                    )  # fmt: skip
        return found

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
            lines.append(f"  [{i + 1}] {column.name}  ({self._column_source(column)})")
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
        for line in self._history_lines():
            lines += textwrap.wrap(line, width, subsequent_indent="    ")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _column_source(column: Column) -> str:
        """The column's report, and the history behind it."""
        if not column.runs:
            return column.source
        first = column.runs[0]
        return (
            f"{column.source}, newest of {len(column.runs)} runs since {first.short} ({first.date})"
        )

    def _history_lines(self) -> list[str]:
        """The step changes, one line each; or that a history has none."""
        if not any(column.runs for column in self.columns):
            return []
        steps = self.step_changes
        if not steps:
            return ["no step changes beyond each test's run-to-run spread over the history"]
        lines = [f"step changes beyond each test's run-to-run spread ({len(steps)}):"]
        for change in steps:
            name = self.columns[change.column].name
            lines.append(f"  {change.row} on {name}: {change.describe()}")
        return lines

    def _sparkline(self, row: str, column: int) -> str | None:
        series = self.series(row, column)
        return None if series is None else sparkline(series[1])

    def _markdown(self) -> str:
        def cell_text(row: str, index: int) -> str:
            cell = self.rows[row].get(index)
            if cell is None:
                return "-"
            text = cell.headline(self.speedup(row, index))
            extra = []
            if cell.outcome in _MEASURED:
                if cell.median_s is not None and cell.iqr_s is not None:
                    extra.append(f"IQR {format_duration(cell.iqr_s)}")
                if cell.throughput:
                    extra.append(cell.throughput)
                if cell.median_s is not None and cell.peak_growth_bytes is not None:
                    extra.append(f"peak {format_bytes(cell.peak_growth_bytes)}")
                if cell.energy_joules is not None and cell.median_s is not None:
                    extra.append(format_energy(cell.energy_joules))
            elif cell.reason:
                extra.append(cell.reason)
            trend = self._sparkline(row, index)
            if trend:
                extra.append(f"`{trend}`")
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
        history = self._history_lines()
        if history:
            lines += ["", f"**{history[0]}**"]
            for change in self.step_changes:
                name = self.columns[change.column].name
                row = change.row.replace("`", "'")
                lines.append(f"- `{row}` on {name}: {change.describe()}".replace("|", "\\|"))
        return "\n".join(lines) + "\n"

    def _sort_value(self, cell: Cell) -> str:
        """What a column sorts by: the median, else the peak growth, else the energy."""
        if cell.outcome not in _MEASURED:
            return ""
        for value in (cell.median_s, cell.peak_growth_bytes, cell.energy_joules):
            if value is not None:
                return repr(value)
        return ""

    def _history_data(self, numbers: Mapping[str, int]) -> dict[str, Any]:
        """What the page draws a cell's history from: each column's runs, each series' points.

        Values come pre-formatted (``t``) beside the raw ones (``v``), so the page's script
        needs no unit rules of its own.
        """
        runs = {
            str(index): [[run.short, run.date, run.source] for run in column.runs]
            for index, column in enumerate(self.columns)
            if column.runs
        }
        steps: dict[tuple[str, int], list[list[Any]]] = {}
        for change in self.step_changes:
            key = (change.row, change.column)
            steps.setdefault(key, []).append(
                [change.step.index, change.step.tentative, change.describe()]
            )
        cells: dict[str, Any] = {}
        for row, by_column in self.history.items():
            for column in by_column:
                series = self.series(row, column)
                if series is None:
                    continue
                figure, values = series
                cells[f"{numbers[row]}:{column}"] = {
                    "v": values,
                    "t": [None if v is None else _format_figure(figure, v) for v in values],
                    "s": steps.get((row, column), []),
                }
        return {"runs": runs, "cells": cells}

    def _html(self) -> str:
        """One offline page: the table, sortable by any column, filterable by test and machine.

        A row's click draws its bars across the columns (the same figure as its cells show)
        and, where a column has a history, the test's line over the commits with its steps.
        """
        e = html.escape
        head = "".join(
            f'<th title="{e(self._column_source(column))}">{e(column.name)}</th>'
            for column in self.columns
        )
        numbers = {row: number for number, row in enumerate(self.rows)}
        newest_steps = {
            (change.row, change.column): change.step.ratio
            for change in self.step_changes
            if len(self.columns[change.column].runs) - change.step.index <= 1
        }
        body = []
        for row, cells in self.rows.items():
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
                    css = f"{css} base"
                ratio = newest_steps.get((row, index))
                if ratio is not None:  # the newest run stepped: flagged where it shows
                    css = f"{css} {'up' if ratio > 1 else 'down'}"
                hover = cell.reason or ", ".join(
                    part
                    for part in (
                        f"IQR {format_duration(cell.iqr_s)} over {cell.rounds} rounds"
                        if cell.median_s is not None and cell.iqr_s is not None
                        else "",
                        cell.throughput or "",
                    )
                    if part
                )
                tds.append(
                    f'<td data-v="{self._sort_value(cell)}" class="{css.strip()}" '
                    f'title="{e(hover)}">{e(cell.headline(self.speedup(row, index)))}</td>'
                )
            body.append(
                f'<tr class="test" data-i="{numbers[row]}"><td>{e(row)}</td>{"".join(tds)}</tr>'
            )
        legend = "".join(
            f'<p class="muted">{e(line)}</p>' for line in self._legend() + self._history_lines()
        )
        data = json.dumps(self._history_data(numbers), separators=(",", ":"))
        # Inside <script>, only "</" could end it early; escaping "<" keeps the JSON intact.
        data = data.replace("<", "\\u003c")
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f"<title>hwbench matrix: {len(self.rows)} tests</title><style>{_PAGE_STYLE}</style>"
            "</head><body>\n"
            f"<h1>{len(self.rows)} tests on {len(self.columns)} columns</h1>\n"
            '<p><input id="filter" placeholder="filter tests" size="32"> '
            '<input id="machines" placeholder="filter machines" size="24"> '
            '<span class="muted">click a heading to sort, a row for its bars and '
            "history</span></p>\n"
            f'<table id="matrix"><thead><tr><th>test</th>{head}</tr></thead><tbody>\n'
            + "\n".join(body)
            + f"\n</tbody></table>\n{legend}\n"
            f'<script type="application/json" id="history">{data}</script>\n'
            f"<script>{_PAGE_SCRIPT}</script></body></html>\n"
        )

    def _records(self) -> list[dict[str, Any]]:
        """A record per cell; where the column has a history, the test's runs and steps."""
        steps: dict[tuple[str, int], list[StepChange]] = {}
        for change in self.step_changes:
            steps.setdefault((change.row, change.column), []).append(change)
        records = []
        for row, cells in self.rows.items():
            for index, cell in sorted(cells.items()):
                column = self.columns[index]
                series = self.series(row, index)
                history = (
                    []
                    if series is None
                    else [
                        {"commit": run.commit, "date": run.date, "source": run.source, "value": v}
                        for run, v in zip(column.runs, series[1], strict=True)
                    ]
                )
                records.append(
                    {
                        "test": row,
                        "machine": column.machine,
                        "platform": column.platform,
                        "source": column.source,
                        "commit": column.commit,
                        **asdict(cell),
                        "speedup": self.speedup(row, index),
                        "baseline": index == self.baseline,
                        "history_figure": None if series is None else series[0],
                        "history": history,
                        "steps": [change.record() for change in steps.get((row, index), [])],
                    }
                )
        return records

    def _csv(self) -> str:
        """The records, a history as its sparkline and the steps in words (CSV is flat)."""
        out = io.StringIO()
        records = self._records()
        for record in records:
            values = [point["value"] for point in record["history"]]
            record["history"] = sparkline(values) if values else ""
            record["steps"] = "; ".join(
                f"{step['commit'][:7]} x{step['ratio']:.3g}"
                + (" (tentative)" if step["tentative"] else "")
                for step in record["steps"]
            )
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


def _run_of(source: str, report: Mapping[str, Any]) -> Run | None:
    """The report as a run of its machine's history, where it names its commit."""
    run: Mapping[str, Any] = report.get("run") or {}
    git: Mapping[str, Any] = run.get("git") or {}
    if not git.get("commit"):
        return None
    return Run(
        str(git["commit"]),
        source,
        branch=git.get("branch"),
        committed=git.get("committed"),
        created=report.get("created"),
    )


def _histories(
    reports: Sequence[tuple[str, Report]], own_labels: Sequence[str]
) -> dict[int, list[int]]:
    """The machines with a history: their newest report -> all their reports, oldest first.

    A machine has one where each of its reports names a commit and they name at least two.
    """
    by_label: dict[str, list[int]] = {}
    for number, label in enumerate(own_labels):
        by_label.setdefault(label, []).append(number)
    histories: dict[int, list[int]] = {}
    for members in by_label.values():
        runs = [_run_of(*reports[number]) for number in members]
        known = [run for run in runs if run is not None]
        if len(known) < len(members) or len({run.commit for run in known}) < 2:
            continue
        ordered = [members[i] for i in order_runs(known)]
        histories[ordered[-1]] = ordered
    return histories


def build_matrix(
    reports: Sequence[tuple[str, Report]], baseline: str | None = None, *, history: bool = True
) -> Matrix:
    """The matrix of `reports` (each with the name it was given by, its path).

    `baseline` names the column speedups are against: a column's full name, a machine label
    (its first platform), or a report's source; by default the first column. With `history`,
    a machine's reports at several commits are one column (the newest) with the others as
    its history; without, each report is its own column, told apart by commit.
    """
    own_labels = [_report_label(report) for _, report in reports]
    histories = _histories(reports, own_labels) if history else {}
    older = {number for ordered in histories.values() for number in ordered[:-1]}
    shown = [number for number in range(len(reports)) if number not in older]
    distinct = dict(
        zip(
            shown,
            _distinct_labels([reports[n] for n in shown], [own_labels[n] for n in shown]),
            strict=True,
        )
    )
    columns: list[Column] = []
    index: dict[tuple[int, str], int] = {}
    rows: dict[str, dict[int, Cell]] = {}
    for number in shown:
        source, report = reports[number]
        ordered = histories.get(number, [])
        runs = tuple(run for n in ordered if (run := _run_of(*reports[n])) is not None)
        for entry in report.get("tests") or ():
            if not isinstance(entry, Mapping):
                continue
            platform = str(entry.get("platform") or "?")
            key = (number, platform)
            if key not in index:
                index[key] = len(columns)
                own_run = _run_of(source, report)
                columns.append(
                    Column(
                        distinct[number], platform, source, own_labels[number], runs,
                        own_run.commit if own_run is not None else None,
                    )
                )  # fmt: skip
            row = row_key(str(entry.get("nodeid", "?")), entry.get("platform"))
            rows.setdefault(row, {})[index[key]] = Cell.of_entry(entry)
    cells_over_time: dict[str, dict[int, list[Cell | None]]] = {}
    for newest, ordered in histories.items():
        for position, number in enumerate(ordered):
            for entry in reports[number][1].get("tests") or ():
                if not isinstance(entry, Mapping):
                    continue
                column = index.get((newest, str(entry.get("platform") or "?")))
                row = row_key(str(entry.get("nodeid", "?")), entry.get("platform"))
                if column is None or row not in rows:
                    continue  # a platform or test the newest run no longer has
                cells = cells_over_time.setdefault(row, {}).setdefault(
                    column, [None] * len(ordered)
                )
                newest_cell = rows[row].get(column) if number == newest else None
                cells[position] = newest_cell or Cell.of_entry(entry)
    kept, absent, renumber = _drop_absent(columns, rows)
    over_time = {
        row: {renumber[i]: cells for i, cells in by_column.items() if i in renumber}
        for row, by_column in cells_over_time.items()
        if row in rows
    }
    return Matrix(kept, rows, _baseline_index(kept, baseline), absent, over_time)


def _drop_absent(
    columns: list[Column], rows: dict[str, dict[int, Cell]]
) -> tuple[list[Column], list[tuple[Column, str]], dict[int, int]]:
    """Drop the columns where every test was skipped (their platform absent), in place.

    A platform a machine lacks says so once, not in every row: the first skip reason stands
    for the column. Returns the columns kept, those dropped with why, and each kept column's
    old index -> new.
    """
    skipped_only: dict[int, str] = {}
    for index in range(len(columns)):
        column_cells = [cells[index] for cells in rows.values() if index in cells]
        if column_cells and all(cell.outcome == "skipped" for cell in column_cells):
            skipped_only[index] = next((c.reason for c in column_cells if c.reason), "skipped")
    if not skipped_only or len(skipped_only) == len(columns):
        return columns, [], {i: i for i in range(len(columns))}
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
    return kept, [(columns[i], reason) for i, reason in skipped_only.items()], renumber


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
