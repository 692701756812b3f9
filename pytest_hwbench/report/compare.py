"""Compare two reports test by test, and fail on thresholds (``hwbench compare``, ``--hw-compare``).

Metrics: ``peak`` is the peak growth (``peak_delta_bytes``) of a test's primary memory series;
``time`` is the benchmark median when both runs have one, else the test's ``duration_s``.
Thresholds mirror pytest-benchmark's ``--benchmark-compare-fail``: a relative one (``peak:+10%``)
fails when ``new / base * 100 - 100`` exceeds it, an absolute one (``time:+5ms``) when
``new - base`` does; only increases fail.
"""

from __future__ import annotations

import math
import os
import re
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
from pytest_hwbench.units import (
    SizeError,
    format_bytes,
    format_duration,
    parse_duration,
    parse_size,
)

__all__ = [
    "THRESHOLD_FORMS",
    "Comparison",
    "Metric",
    "TestChange",
    "TestSummary",
    "Threshold",
    "ThresholdError",
    "compare_reports",
    "load_for_compare",
    "parse_threshold",
    "summarize_entry",
    "summarize_report",
]

Metric = Literal["peak", "time"]
Key = tuple[str, str, str]

THRESHOLD_FORMS = (
    "METRIC:[+]CHANGE, METRIC being peak (peak memory growth) or time (benchmark median, "
    "else test duration) and CHANGE a percentage (peak:+10%, time:5%) or an amount: a size for "
    "peak (peak:+256MiB, peak:+100MB, or plain bytes) or a duration for time (time:+5ms, "
    "time:0.5s, or plain seconds)"
)
_THRESHOLD_RE = re.compile(
    r"^\s*(?P<metric>[a-z]+)\s*:\s*(?P<plus>\+)?\s*(?P<amount>[^%]*?)\s*(?P<percent>%)?\s*$"
)
_NUMBER_RE = re.compile(r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


class ThresholdError(ValueError):
    """A ``--fail-on`` string that cannot be read; the message names it and the accepted forms."""


@dataclass(frozen=True)
class Threshold:
    """How much a metric may grow from the base report to the new one before the check fails."""

    metric: Metric
    limit: float
    """Percent when `relative`, else bytes (``peak``) or seconds (``time``)."""
    relative: bool
    text: str = ""

    def change(self, base: float, new: float) -> float:
        """The change this threshold measures: percent of `base` if relative, else a difference."""
        if not self.relative:
            return new - base
        if base == 0:
            # pytest-benchmark treats any change from 0 as infinite; 0 -> 0 is no change at all.
            return 0.0 if new == 0 else math.copysign(math.inf, new)
        return (new - base) / abs(base) * 100

    def crossed(self, base: float, new: float) -> bool:
        """Whether `base` -> `new` exceeds the threshold (strictly, as in pytest-benchmark)."""
        return self.change(base, new) > self.limit

    def limit_text(self) -> str:
        """The allowed growth: ``+10%``, ``+256.0 MiB``, ``+5.00 ms``."""
        if self.relative:
            return f"+{self.limit:g}%"
        if self.metric == "peak":
            return format_bytes(self.limit, signed=True)
        return f"+{format_duration(self.limit)}" if self.limit else "+0 s"

    def describe(self) -> str:
        """The threshold as a user would write it: ``peak:+10%``, ``time:+5.00 ms``."""
        return f"{self.metric}:{self.limit_text()}"

    def format_change(self, base: float, new: float) -> str:
        """The measured change in this threshold's terms: ``+16.7%``, ``+2.0 MiB``, ``+1.20 ms``."""
        value = self.change(base, new)
        if self.relative:
            return f"{value:+.1f}%" if math.isfinite(value) else f"{value:+}% (base was 0)"
        return _format_amount(self.metric, value)


def parse_threshold(text: str) -> Threshold:
    """Read ``peak:+10%``, ``peak:10%``, ``peak:+256MiB``, ``time:+5ms``, ``time:5%`` or raise."""
    match = _THRESHOLD_RE.match(text)
    if match is None:
        raise ThresholdError(f"bad threshold {text!r}: expected {THRESHOLD_FORMS}")
    metric, amount = match.group("metric"), match.group("amount")
    if metric not in ("peak", "time"):
        raise ThresholdError(
            f"bad threshold {text!r}: unknown metric {metric!r}; expected {THRESHOLD_FORMS}"
        )
    if not amount or amount.startswith(("-", "+")):
        raise ThresholdError(
            f"bad threshold {text!r}: the change must be a non-negative amount (only growth "
            f"fails); expected {THRESHOLD_FORMS}"
        )
    if match.group("percent"):
        if not _NUMBER_RE.match(amount):
            raise ThresholdError(f"bad threshold {text!r}: expected {THRESHOLD_FORMS}")
        return Threshold(metric, float(amount), relative=True, text=text.strip())  # type: ignore[arg-type]
    limit: float
    try:
        if metric == "peak":
            limit = float(parse_size(amount))
        elif _NUMBER_RE.match(amount) and float(amount) == 0:
            limit = 0.0  # parse_duration refuses 0; as a threshold it means "any growth fails"
        else:
            limit = parse_duration(amount)
    except SizeError:
        raise ThresholdError(f"bad threshold {text!r}: expected {THRESHOLD_FORMS}") from None
    return Threshold(metric, limit, relative=False, text=text.strip())  # type: ignore[arg-type]


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
            lines += ["", f"skipped in either run, not compared: {len(self.skipped)}"]
            for base, new in self.skipped:
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


def _format_amount(metric: str, value: float) -> str:
    if metric == "peak":
        return format_bytes(value, signed=True)
    return ("-" if value < 0 else "+") + format_duration(abs(value))


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
        _format_amount("time", n_time - b_time) + _relative(b_time, n_time),
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
