"""Compare two reports test by test, and fail on thresholds (``hwbench compare``, ``--hw-compare``).

Metrics: ``peak`` is the peak growth (``peak_delta_bytes``) of a test's primary memory series;
``time`` the benchmark median, for tests both runs benchmarked; ``duration`` a test's setup + call
+ teardown (``duration_s``), noisy, so compared only when a threshold asks; ``energy`` the joules
a test's device used (``--hw-energy``), for tests both runs measured. Thresholds
(``--fail-on``) are in `pytest_hwbench.report.thresholds`.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_hwbench.report.loader import load_report
from pytest_hwbench.report.model import (
    Report,
    ReportError,
    benchmark_median_noise_s,
    benchmark_median_s,
    energy_joules,
    entry_label,
    primary_stats,
)
from pytest_hwbench.report.text import common_folder, fit, text_table
from pytest_hwbench.report.thresholds import Threshold, format_amount
from pytest_hwbench.units import format_bytes, format_duration, format_energy

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
    median_noise_s: float | None = None
    """How far the median may be off by chance (`benchmark_median_noise_s`), when known."""
    energy_joules: float | None = None
    """The energy the test's device used (every domain); None when not measured."""
    exact_energy: bool | None = None

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
    failures: tuple[str, ...] = ()
    within_noise: tuple[str, ...] = ()
    """Thresholds the medians crossed by less than their rounds' noise: not failures."""

    @property
    def benchmarked(self) -> bool:
        """Whether both runs have a benchmark median for the test (``time`` compares those)."""
        return self.base.median_s is not None and self.new.median_s is not None

    @property
    def energy_measured(self) -> bool:
        """Whether both runs measured the test's energy (``energy`` compares those)."""
        return self.base.energy_joules is not None and self.new.energy_joules is not None

    @property
    def failed(self) -> bool:
        """Whether any threshold was crossed."""
        return bool(self.failures)


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
    deselected_in_new: int = 0
    """How many tests the new run deselected (``-k``, ``-m``): base-only tests may be those."""

    @property
    def failures(self) -> list[TestChange]:
        """The tests that crossed a threshold."""
        return [change for change in self.changes if change.failures]

    @property
    def failed(self) -> bool:
        """Whether any test crossed any threshold (the run should fail)."""
        return any(change.failures for change in self.changes)

    def format_table(self, width: int = 100) -> str:
        """The comparison as text: a table of matched tests, the other tests, and the verdict.

        The table fits `width` columns: a long node id is cut from the left (its test name is
        kept). Benchmark medians get columns only when a test has them; durations only when a
        ``duration`` threshold asks for them.
        """
        lines = [f"Comparing {self.base_name} (base) with {self.new_name} (new)"]
        lines.extend(self.notes)
        lines.append("")
        with_medians = any(change.benchmarked for change in self.changes)
        with_durations = any(t.metric == "duration" for t in self.thresholds)
        with_energy = any(change.energy_measured for change in self.changes)
        header = ["test", "peak base", "peak new", "peak change"]
        if with_medians:
            header += ["median base", "median new", "median change"]
        if with_durations:
            header += ["duration base", "duration new", "duration change"]
        if with_energy:
            header += ["energy base", "energy new", "energy change"]
        header.append("")
        rows = [_row(change, with_medians, with_durations, with_energy) for change in self.changes]
        folder = common_folder([row[0] for row in rows])
        if folder:  # said once, not on every line: the names keep the room
            lines.append(f"tests under {folder}")
            rows = [(row[0][len(folder) :], *row[1:]) for row in rows]
        if rows:
            lines.extend(text_table(header, rows, numeric=range(1, len(header) - 1), width=width))
            legend = (
                "peak: peak growth (peak minus start) of the primary memory series, ~ where the "
                "peak was sampled, not exact"
                + ("; median: benchmark median per call" if with_medians else "")
                + (
                    "; energy: joules the test's device used (device-wide counters), ~ where "
                    "estimated"
                    if with_energy
                    else ""
                )
                + (
                    "; duration: setup + call + teardown"
                    if with_durations
                    else "; durations (setup + call + teardown, noisy) are not compared unless "
                    "asked: --fail-on duration:+25%"
                )
            )
            lines.extend(textwrap.wrap(legend, width))
        else:
            lines.append("no test is in both reports")
        gone = (
            f"not run in new: the new run deselected {self.deselected_in_new} tests (-k, -m); "
            "these may be among them"
            if self.deselected_in_new
            else "removed (not in new)"
        )
        for title, tests in (("new (not in base)", self.added), (gone, self.removed)):
            if tests:
                lines += ["", f"{title}: {len(tests)}"]
                lines += [fit(f"  {t.label}  {t.outcome}{_peak_note(t)}", width, 2) for t in tests]
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
                    fit(
                        f"  {new.label}  {base.outcome} -> {new.outcome}"
                        + (f" ({reason})" if reason else ""),
                        width,
                        2,
                    )
                )
        lines.append("")
        for line in self.verdict_lines():
            indent = " " * (len(line) - len(line.lstrip()))
            # A node id is never split: a line holding a longer one runs past `width`.
            wrapped = textwrap.wrap(
                line,
                width,
                subsequent_indent=indent + "    ",
                break_long_words=False,
                break_on_hyphens=False,
            )
            lines.extend(wrapped or [""])
        return "\n".join(lines) + "\n"

    def verdict_lines(self) -> list[str]:
        """The closing lines: how many compared, and each crossed threshold."""
        gone = "not run" if self.deselected_in_new else "removed"
        counts = (
            f"{len(self.changes)} compared, {len(self.added)} new, {len(self.removed)} {gone}, "
            f"{len(self.skipped)} skipped"
        )
        if not self.thresholds:
            return [f"{counts}; no threshold given (--fail-on)"]
        checked = ", ".join(t.describe() for t in self.thresholds)
        failures = self.failures
        noisy = [change for change in self.changes if change.within_noise]
        if not failures:
            out = [f"{counts}; no test crossed {checked}"]
        else:
            out = [f"{counts}; {len(failures)} crossed a threshold ({checked}):"]
            for change in failures:
                out.extend(f"  FAILED {change.new.label}: {msg}" for msg in change.failures)
        if noisy:
            out.append(
                f"{len(noisy)} benchmark(s) crossed a time threshold by less than their rounds' "
                "noise (the medians' 95% intervals overlap), not failed:"
            )
            for change in noisy:
                out.extend(f"  noise {change.new.label}: {msg}" for msg in change.within_noise)
        return out


def _peak_note(summary: TestSummary) -> str:
    if summary.peak_bytes is None:
        return ""
    return f", peak growth {format_bytes(summary.peak_bytes)}"


def _relative(base: float, new: float) -> str:
    if base == 0:
        return "" if new == 0 else " (from 0)"
    return f" ({(new - base) / abs(base) * 100:+.1f}%)"


def _row(
    change: TestChange, with_medians: bool, with_durations: bool, with_energy: bool = False
) -> tuple[str, ...]:
    base, new = change.base, change.new
    cells = [new.label]
    if base.peak_bytes is not None and new.peak_bytes is not None:
        cells += [
            format_bytes(base.peak_bytes) + ("" if base.exact_peak else "~"),
            format_bytes(new.peak_bytes) + ("" if new.exact_peak else "~"),
            format_bytes(new.peak_bytes - base.peak_bytes, signed=True)
            + _relative(base.peak_bytes, new.peak_bytes),
        ]
    else:
        cells += [_peak_or_dash(base), _peak_or_dash(new), "-"]
    if with_medians:
        if base.median_s is not None and new.median_s is not None:
            cells += _times("time", base.median_s, new.median_s)
        else:
            cells += ["-", "-", "-"]
    if with_durations:
        cells += _times("duration", base.duration_s, new.duration_s)
    if with_energy:
        if base.energy_joules is not None and new.energy_joules is not None:
            cells += [
                format_energy(base.energy_joules) + ("" if base.exact_energy else "~"),
                format_energy(new.energy_joules) + ("" if new.exact_energy else "~"),
                format_energy(new.energy_joules - base.energy_joules, signed=True)
                + _relative(base.energy_joules, new.energy_joules),
            ]
        else:
            cells += ["-", "-", "-"]
    status = "FAIL" if change.failures else ""
    if base.outcome != new.outcome:
        status = f"{status} {base.outcome}->{new.outcome}".strip()
    cells.append(status)
    return tuple(cells)


def _times(metric: str, base: float, new: float) -> list[str]:
    return [
        format_duration(base),
        format_duration(new),
        format_amount(metric, new - base) + _relative(base, new),
    ]


def _peak_or_dash(summary: TestSummary) -> str:
    return "-" if summary.peak_bytes is None else format_bytes(summary.peak_bytes)


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
    energy = entry.get("energy")
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
        median_noise_s=benchmark_median_noise_s(entry),
        energy_joules=energy_joules(entry),
        exact_energy=bool(energy.get("exact")) if isinstance(energy, Mapping) else None,
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


def _check(
    change: TestChange, thresholds: Sequence[Threshold]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The thresholds `change` crossed: failures, and time ones within the medians' noise.

    A benchmark median crosses a ``time`` threshold only by more than chance: the two medians'
    ~95% intervals (their notches, `benchmark_median_noise_s`) must not overlap. Where either
    report lacks the rounds' spread, the threshold alone decides, as in pytest-benchmark.
    """
    failures = []
    noisy = []
    for threshold in thresholds:
        base: float | None
        new: float | None
        metric = threshold.metric
        if metric == "peak":
            base, new = change.base.peak_bytes, change.new.peak_bytes
        elif metric == "time":  # only tests both runs benchmarked: a duration is no median
            base, new = change.base.median_s, change.new.median_s
        elif metric == "energy":
            base, new = change.base.energy_joules, change.new.energy_joules
        else:
            base, new = change.base.duration_s, change.new.duration_s
        if base is None or new is None or not threshold.crossed(base, new):
            continue
        what = {"peak": "peak growth", "time": "median time", "energy": "energy"}.get(
            metric, "duration"
        )
        if metric == "peak":
            shown = (format_bytes(base), format_bytes(new))
        elif metric == "energy":
            shown = (format_energy(base), format_energy(new))
        else:
            shown = (format_duration(base), format_duration(new))
        message = (
            f"{what} {shown[0]} -> {shown[1]}: {threshold.format_change(base, new)} > "
            f"{threshold.limit_text()} "
            f"({threshold.describe()})"
        )
        if metric == "time":
            base_noise, new_noise = change.base.median_noise_s, change.new.median_noise_s
            if base_noise is not None and new_noise is not None:
                noise = base_noise + new_noise
                if new - base <= noise:
                    noisy.append(
                        f"{message}, but within the medians' noise (+/-{format_duration(noise)})"
                    )
                    continue
        failures.append(message)
    return tuple(failures), tuple(noisy)


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
            change = TestChange(base_summary, new_summary)
            failures, noisy = _check(change, thresholds)
            if failures or noisy:
                change = TestChange(base_summary, new_summary, failures, noisy)
            changes.append(change)
    removed = [summary for key, summary in base_tests.items() if key not in new_tests]
    notes = []
    for name, report in ((base_name, base), (new_name, new)):
        if report.get("complete") is False:
            notes.append(f"note: {name} is incomplete (interrupted or crashed run)")
    deselected = _deselected(new.get("session"))
    return Comparison(
        changes=tuple(changes),
        added=tuple(added),
        removed=tuple(removed),
        skipped=tuple(skipped),
        thresholds=tuple(thresholds),
        base_name=base_name,
        new_name=new_name,
        notes=tuple(notes),
        deselected_in_new=deselected,
    )


def _deselected(session: object) -> int:
    """How many tests a report's run deselected (under xdist, the most any worker did)."""
    if not isinstance(session, Mapping):
        return 0
    counts = [session.get("deselected")]
    workers = session.get("workers")
    if isinstance(workers, Mapping):
        counts += [w.get("deselected") for w in workers.values() if isinstance(w, Mapping)]
    return max((c for c in counts if isinstance(c, int)), default=0)


def load_for_compare(path: str | os.PathLike[str]) -> Report:
    """Read a report for `compare_reports` through the one loader, without its timelines."""
    return load_report(path, timelines=False)
