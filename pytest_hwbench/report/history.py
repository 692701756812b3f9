"""A test's figures over commits, and where they stepped (``hwbench matrix``'s history).

Reports of one machine at several commits are placed in time: by their commits' dates where
every report has one (a commit re-run later stays in its place), else by when they ran. Each
test's series is then searched for step changes: a shift of its level larger than the test's
own run-to-run spread, the way asv marks regressions, with a rule that can be said in a line:

    the median of the (up to) three runs from a commit on differs from the median of the
    three before it by more than the larger of 3 x the runs' scatter about those levels,
    2 x the widest notch of a run's median (its rounds' spread), and 2% of the level
    (and, for memory, 1 MiB).

The run-to-run spread is the larger of the scatter within those windows and the whole
series' (from its runs' successive differences), so a test that swings from run to run shows
no steps and a slow drift is not one. Where several neighbouring commits would qualify, the
one that splits the runs into the flattest levels is the step; then each side is searched
again, never across a step found. A step with fewer than three runs after it is tentative: a
single slow run at the newest commit shows as one until later runs confirm or clear it.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MEMORY_LEAST",
    "MIN_CHANGE",
    "WINDOW",
    "Run",
    "Step",
    "find_steps",
    "order_runs",
    "sparkline",
]

#: How many runs on each side of a commit stand for the level there.
WINDOW = 3
#: A step is at least this fraction of the level before it, however quiet the test.
MIN_CHANGE = 0.02
#: A memory step is at least this many bytes: a process's resident set moves by pages and by
#: its allocators' slack from run to run (`hwbench compare`'s peak thresholds take the same).
MEMORY_LEAST = 2**20
#: Multiples of the scatter (a standard deviation, from the median absolute deviation) and of
#: a median's notch (already a ~95% half-width) that a step must exceed.
SCATTER_FACTOR = 3.0
NOTCH_FACTOR = 2.0
#: The median absolute deviation times this estimates a normal spread's standard deviation.
_MAD_TO_SIGMA = 1.4826
_SPARKS = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"


@dataclass(frozen=True)
class Run:
    """One report in a machine's history: the commit it ran at, and when."""

    commit: str
    source: str
    branch: str | None = None
    #: The commit's date (ISO 8601), where the report recorded it.
    committed: str | None = None
    #: When the report was written (ISO 8601).
    created: str | None = None

    @property
    def short(self) -> str:
        """The commit's abbreviated name, as git prints it."""
        return self.commit[:7]

    @property
    def date(self) -> str:
        """The day the run is placed at: its commit's, else its own."""
        return (self.committed or self.created or "")[:10]


def order_runs(runs: Sequence[Run]) -> list[int]:
    """The indices of `runs`, oldest first: by commit date if all have one, else by run date."""
    by_commit = all(run.committed for run in runs)

    def when(index: int) -> tuple[str, str]:
        run = runs[index]
        primary = run.committed if by_commit else run.created
        return (primary or "", run.created or "")

    return sorted(range(len(runs)), key=when)


@dataclass(frozen=True)
class Step:
    """A shift of a test's level at one run of its history."""

    #: The first run at the new level (an index into the history).
    index: int
    before: float
    after: float
    #: The smallest change that counted as a step there.
    threshold: float
    #: Fewer than `WINDOW` runs at the new level yet.
    tentative: bool

    @property
    def ratio(self) -> float:
        """The new level over the old (above 1: slower, more memory or energy)."""
        return self.after / self.before if self.before else float("inf")


def _scatter(*windows: Sequence[float]) -> float:
    """The runs' spread about their own window's level, as a standard deviation."""
    deviations = [abs(v - statistics.median(w)) for w in windows if w for v in w]
    return _MAD_TO_SIGMA * statistics.median(deviations) if deviations else 0.0


def _jitter(series: Sequence[float]) -> float:
    """The series' run-to-run spread, as a standard deviation, from successive differences.

    A median, so that the steps themselves (a few large differences) do not count; a
    difference of two runs spreads sqrt(2) times as wide as one run.
    """
    if len(series) < 3:
        return 0.0
    differences = [abs(b - a) for a, b in itertools.pairwise(series)]
    return _MAD_TO_SIGMA * statistics.median(differences) / math.sqrt(2)


def find_steps(
    values: Sequence[float | None], notches: Sequence[float | None], least: float = 0.0
) -> list[Step]:
    """The step changes in `values` (one per run, None where the test has no figure there).

    `notches` are the runs' own uncertainty of each value (a benchmark median's notch
    half-width), None where a value has none (an exact peak); `least` is the smallest change
    that can be a step, in the figure's units (memory: `MEMORY_LEAST`). Indices in the steps
    are those of `values`. Binary segmentation: the best step of the whole series, then of
    each side of it, until no side has one; a window never reaches across a step found.
    """
    points = [i for i, value in enumerate(values) if value is not None]
    series = [float(v) for v in values if v is not None]
    if series and max(series) - min(series) <= max(least, MIN_CHANGE * min(series)):
        return []  # no two runs differ by the least a step is: most series, found at once
    jitter = _jitter(series)
    steps: list[Step] = []
    segments = [(0, len(series))]
    while segments:
        low, high = segments.pop()
        best: tuple[float, float, int, Step] | None = None  # (fit cost per run, -score, at, step)
        for at in range(low + 1, high):
            before = series[max(low, at - WINDOW) : at]
            after = series[at : min(high, at + WINDOW)]
            level_before, level_after = statistics.median(before), statistics.median(after)
            notch = max(
                (notches[points[i]] or 0.0 for i in range(max(low, at - WINDOW), at + len(after))),
                default=0.0,
            )
            threshold = max(
                SCATTER_FACTOR * max(jitter, _scatter(before, after)),
                NOTCH_FACTOR * notch,
                MIN_CHANGE * abs(level_before),
                least,
            )
            change = abs(level_after - level_before)
            if change <= threshold or change == 0:
                continue
            cost = sum(abs(v - level_before) for v in before)
            cost += sum(abs(v - level_after) for v in after)
            cost /= len(before) + len(after)  # per run: windows cut short compare fairly
            tentative = len(series) - at < WINDOW
            step = Step(points[at], level_before, level_after, threshold, tentative)
            candidate = (cost, -change / threshold, at, step)
            if best is None or candidate[:3] < best[:3]:
                best = candidate
        if best is not None:
            at = best[2]
            steps.append(best[3])
            segments += [(low, at), (at, high)]
    return sorted(steps, key=lambda step: step.index)


def sparkline(values: Sequence[float | None]) -> str:
    """The series in block characters, lowest to highest; a space where a run lacks it."""
    present = [v for v in values if v is not None]
    if not present:
        return ""
    low, high = min(present), max(present)
    span = high - low
    return "".join(
        " " if v is None else _SPARKS[0 if span == 0 else min(7, int((v - low) / span * 8))]
        for v in values
    )
