"""Compare two reports test by test, and fail on thresholds (``hwbench compare``, ``--hw-compare``).

Metrics: ``peak`` is the peak growth (``peak_delta_bytes``) of a test's primary memory series;
``time`` is the benchmark median when both runs have one, else the test's ``duration_s``.
Thresholds (``--fail-on``) are in `pytest_hwbench.report.thresholds`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_hwbench.report.loader import load_report
from pytest_hwbench.report.model import (
    Report,
    ReportError,
    benchmark_median_s,
    entry_label,
    primary_stats,
)
from pytest_hwbench.report.thresholds import Threshold, format_amount
from pytest_hwbench.units import (
    format_bytes,
    format_duration,
)

__all__ = [
    "Comparison",
    "TestChange",
    "TestSummary",
    "compare_reports",
    "load_for_compare",
    "summarize_entry",
    "summarize_report",
]

Key = tuple[str, str, str]


@dataclass(frozen=True)
class TestSummary:
    """What a comparison needs of one report entry."""

    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    platform: str
    device: str
    outcome: str
    duration_s: float
    peak_bytes: int | None
    """Peak growth (``peak_delta_bytes``) of the primary series; None when not measured."""
    peak_series: str | None
    exact_peak: bool | None
    median_s: float | None
    """The benchmark median in seconds, when the entry has benchmark statistics."""
    skip_reason: str | None = None

    @property
    def key(self) -> Key:
        """How tests are matched across reports: node id, platform and device."""
        return (self.nodeid, self.platform, self.device)

    @property
    def label(self) -> str:
        """The node id, with the device when the id does not already show it."""
        return entry_label(self.nodeid, self.device)


@dataclass(frozen=True)
class TestChange:
    """One test found in both reports: its two summaries and the thresholds it crossed."""

    __test__ = False

    base: TestSummary
    new: TestSummary
    time_source: Literal["median", "duration"]
    failures: tuple[str, ...] = ()

    @property
    def base_time_s(self) -> float:
        """The base run's time, by `time_source`."""
        return _time_of(self.base, self.time_source)

    @property
    def new_time_s(self) -> float:
        """The new run's time, by `time_source`."""
        return _time_of(self.new, self.time_source)

    @property
    def failed(self) -> bool:
        """Whether any threshold was crossed."""
        return bool(self.failures)


def _time_of(summary: TestSummary, source: str) -> float:
    if source == "median" and summary.median_s is not None:
        return summary.median_s
    return summary.duration_s


@dataclass(frozen=True)
class Comparison:
    """The result of comparing two reports: matched tests, and those that could not be compared."""

    changes: tuple[TestChange, ...]
    added: tuple[TestSummary, ...]
    """Tests in the new report only."""
    removed: tuple[TestSummary, ...]
    """Tests in the base report only."""
    skipped: tuple[tuple[TestSummary, TestSummary], ...]
    """(base, new) pairs where either run skipped the test."""
    thresholds: tuple[Threshold, ...] = ()
    base_name: str = "base"
    new_name: str = "new"
    notes: tuple[str, ...] = field(default=())

    @property
    def failures(self) -> list[TestChange]:
        """The tests that crossed a threshold."""
        return [change for change in self.changes if change.failures]

    @property
    def failed(self) -> bool:
        """Whether any test crossed any threshold (the run should fail)."""
        return any(change.failures for change in self.changes)

    def format_table(self) -> str:
        """The comparison as text: a table of matched tests, the other tests, and the verdict."""
        lines = [f"Comparing {self.base_name} (base) with {self.new_name} (new)"]
        lines.extend(self.notes)
        lines.append("")
        header = (
            "test",
            "device",
            "peak base",
            "peak new",
            "peak change",
            "time base",
            "time new",
            "time change",
            "",
        )
        rows = [_row(change) for change in self.changes]
        if rows:
            lines.extend(_table(header, rows, numeric=range(2, 8)))
            lines.append(
                "peak: peak growth (peak minus start) of the primary memory series, ~ where the "
                "peak was sampled, not exact; time: benchmark median (m) where both runs have "
                "one, else setup+call+teardown"
            )
        else:
            lines.append("no test is in both reports")
        for title, tests in (
            ("new (not in base)", self.added),
            ("removed (not in new)", self.removed),
        ):
            if tests:
                lines += ["", f"{title}: {len(tests)}"]
                lines += [f"  {t.label}  {t.outcome}{_peak_note(t)}" for t in tests]
        if self.skipped:
            # Skipped in both runs says nothing new: a count. A test that skipped in one run
            # only changed: each is listed.
            changed = [(b, n) for b, n in self.skipped if b.outcome != n.outcome]
            both = len(self.skipped) - len(changed)
            lines += ["", f"skipped in either run, not compared: {len(self.skipped)}"]
            if both:
                lines.append(f"  {both} skipped (or xfailed) in both runs")
            for base, new in changed:
                reason = new.skip_reason or base.skip_reason
                lines.append(
                    f"  {new.label}  {base.outcome} -> {new.outcome}"
                    + (f" ({reason})" if reason else "")
                )
        lines.append("")
        lines.extend(self.verdict_lines())
        return "\n".join(lines) + "\n"

    def verdict_lines(self) -> list[str]:
        """The closing lines: how many compared, and each crossed threshold."""
        counts = (
            f"{len(self.changes)} compared, {len(self.added)} new, {len(self.removed)} removed, "
            f"{len(self.skipped)} skipped"
        )
        if not self.thresholds:
            return [f"{counts}; no threshold given (--fail-on)"]
        checked = ", ".join(t.describe() for t in self.thresholds)
        failures = self.failures
        if not failures:
            return [f"{counts}; no test crossed {checked}"]
        out = [f"{counts}; {len(failures)} crossed a threshold ({checked}):"]
        for change in failures:
            out.extend(f"  FAILED {change.new.label}: {msg}" for msg in change.failures)
        return out


def _peak_note(summary: TestSummary) -> str:
    if summary.peak_bytes is None:
        return ""
    return f", peak growth {format_bytes(summary.peak_bytes)}"


def _relative(base: float, new: float) -> str:
    if base == 0:
        return "" if new == 0 else " (from 0)"
    return f" ({(new - base) / abs(base) * 100:+.1f}%)"


def _row(change: TestChange) -> tuple[str, ...]:
    base, new = change.base, change.new
    if base.peak_bytes is not None and new.peak_bytes is not None:
        peak = (
            format_bytes(base.peak_bytes) + ("" if base.exact_peak else "~"),
            format_bytes(new.peak_bytes) + ("" if new.exact_peak else "~"),
            format_bytes(new.peak_bytes - base.peak_bytes, signed=True)
            + _relative(base.peak_bytes, new.peak_bytes),
        )
    else:
        peak = (
            _peak_or_dash(base),
            _peak_or_dash(new),
            "-",
        )
    mark = " m" if change.time_source == "median" else ""
    b_time, n_time = change.base_time_s, change.new_time_s
    time = (
        format_duration(b_time) + mark,
        format_duration(n_time) + mark,
        format_amount("time", n_time - b_time) + _relative(b_time, n_time),
    )
    status = "FAIL" if change.failures else ""
    if base.outcome != new.outcome:
        status = f"{status} {base.outcome}->{new.outcome}".strip()
    return (new.nodeid, new.device, *peak, *time, status)


def _peak_or_dash(summary: TestSummary) -> str:
    return "-" if summary.peak_bytes is None else format_bytes(summary.peak_bytes)


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Iterable[int]
) -> list[str]:
    right = set(numeric)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return [line(header), "-" * len(line(header)), *(line(r) for r in rows)]


def summarize_entry(entry: Mapping[str, Any]) -> TestSummary:
    """The comparable figures of one report entry."""
    peak: int | None = None
    series_name: str | None = None
    exact: bool | None = None
    stats = primary_stats(entry)
    if stats is not None and "peak_delta_bytes" in stats:
        series_name = entry["memory"]["primary_series"]
        peak = int(stats["peak_delta_bytes"])
        exact = bool(stats.get("exact_peak"))
    platform = entry.get("platform") or ""
    return TestSummary(
        nodeid=str(entry["nodeid"]),
        platform=str(platform),
        device=str(entry.get("device") or platform),
        outcome=str(entry.get("outcome", "")),
        duration_s=float(entry.get("duration_s") or 0.0),
        peak_bytes=peak,
        peak_series=series_name,
        exact_peak=exact,
        median_s=benchmark_median_s(entry),
        skip_reason=entry.get("skip_reason"),
    )


def summarize_report(report: Mapping[str, Any]) -> dict[Key, TestSummary]:
    """Every test of a report by its key, in report order (a repeated key keeps the last entry)."""
    tests = report.get("tests")
    if not isinstance(tests, list):
        raise ReportError("not a pytest-hwbench report: 'tests' is not a list")
    summaries: dict[Key, TestSummary] = {}
    for index, entry in enumerate(tests):
        try:
            summary = summarize_entry(entry)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReportError(f"test entry {index} is malformed ({exc!r})") from None
        summaries.pop(summary.key, None)
        summaries[summary.key] = summary
    return summaries


def _check(change: TestChange, thresholds: Sequence[Threshold]) -> tuple[str, ...]:
    failures = []
    for threshold in thresholds:
        base: float | None
        new: float | None
        if threshold.metric == "peak":
            base, new = change.base.peak_bytes, change.new.peak_bytes
        else:
            base, new = change.base_time_s, change.new_time_s
        if base is None or new is None or not threshold.crossed(base, new):
            continue
        what = "peak growth" if threshold.metric == "peak" else f"time ({change.time_source})"
        shown = (format_bytes(base), format_bytes(new))
        if threshold.metric == "time":
            shown = (format_duration(base), format_duration(new))
        failures.append(
            f"{what} {shown[0]} -> {shown[1]}: {threshold.format_change(base, new)} > "
            f"{threshold.limit_text()} "
            f"({threshold.describe()})"
        )
    return tuple(failures)


def compare_reports(
    base: Mapping[str, Any],
    new: Mapping[str, Any],
    thresholds: Sequence[Threshold] = (),
    *,
    base_name: str = "base",
    new_name: str = "new",
) -> Comparison:
    """Match the tests of two reports (node id, platform, device) and check `thresholds`."""
    try:
        base_tests = summarize_report(base)
    except ReportError as exc:
        raise ReportError(f"{base_name}: {exc}") from None
    try:
        new_tests = summarize_report(new)
    except ReportError as exc:
        raise ReportError(f"{new_name}: {exc}") from None
    changes: list[TestChange] = []
    added: list[TestSummary] = []
    skipped: list[tuple[TestSummary, TestSummary]] = []
    for key, new_summary in new_tests.items():
        base_summary = base_tests.get(key)
        if base_summary is None:
            added.append(new_summary)
        elif "skipped" in (base_summary.outcome, new_summary.outcome):
            skipped.append((base_summary, new_summary))
        else:
            both_median = base_summary.median_s is not None and new_summary.median_s is not None
            change = TestChange(
                base_summary, new_summary, time_source="median" if both_median else "duration"
            )
            failures = _check(change, thresholds)
            if failures:
                change = TestChange(base_summary, new_summary, change.time_source, failures)
            changes.append(change)
    removed = [summary for key, summary in base_tests.items() if key not in new_tests]
    notes = []
    for name, report in ((base_name, base), (new_name, new)):
        if report.get("complete") is False:
            notes.append(f"note: {name} is incomplete (interrupted or crashed run)")
    return Comparison(
        changes=tuple(changes),
        added=tuple(added),
        removed=tuple(removed),
        skipped=tuple(skipped),
        thresholds=tuple(thresholds),
        base_name=base_name,
        new_name=new_name,
        notes=tuple(notes),
    )


def load_for_compare(path: str | os.PathLike[str]) -> Report:
    """Read a report for `compare_reports` through the one loader, without its timelines."""
    return load_report(path, timelines=False)
