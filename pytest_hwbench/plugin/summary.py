"""The terminal summary: the tests with the highest peak growth, and untimed benchmarks.

The top tests per platform are kept as tests finish, bounded, whatever the run's length.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from pytest_hwbench.units import format_bytes, format_duration

__all__ = [
    "RankedRow",
    "SummaryRow",
    "TopRows",
    "write_peak_summary",
    "write_throughput_summary",
    "write_untimed_summary",
]


class RankedRow(Protocol):
    """A row `TopRows` ranks: its platform, and the score that ranks it there."""

    @property
    def platform(self) -> str:
        """The platform the row's test ran on (rows rank per platform)."""

    @property
    def score(self) -> float:
        """What ranks it: the higher, the nearer the top."""


R = TypeVar("R", bound=RankedRow)


class SummaryRow(NamedTuple):
    """One measured test in the terminal summary (a tuple: the GC stops tracking it)."""

    platform: str
    growth_bytes: int
    peak_bytes: int
    series: str
    exact: bool
    nodeid: str

    @property
    def score(self) -> float:
        """Rows rank by peak growth."""
        return self.growth_bytes

    @classmethod
    def of(cls, platform: str, series: str, stats: Mapping[str, Any], nodeid: str) -> SummaryRow:
        """The row of a test whose `series` has these `get_metrics()` statistics."""
        return cls(
            platform,
            int(stats.get("peak_delta_bytes", 0)),
            int(stats.get("peak_bytes", 0)),
            series,
            bool(stats.get("exact_peak")),
            nodeid,
        )

    @classmethod
    def of_entry(cls, entry: Mapping[str, Any]) -> SummaryRow:
        """The row of a report entry with memory results (its primary scope's, if it has one)."""
        from pytest_hwbench.report.model import primary_stats

        stats: Mapping[str, Any] = primary_stats(entry) or {}
        memory = entry["memory"]
        # The measured platform: the host's, where it stood in for an unreadable device.
        platform = memory.get("platform") or entry["platform"] or "?"
        return cls.of(platform, memory["primary_series"], stats, entry["nodeid"])


class TopRows(Generic[R]):
    """The `size` tests with the highest score per platform (peak growth, joules), kept live.

    Kept as tests finish, bounded, so a run of any length keeps `size` rows a platform; a test
    that does not make the cut costs a comparison. Ties keep the earlier test, as a stable sort
    of every row would.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        #: Node ids of the tests that failed a limit (marked in the summary).
        self.over_limit: set[str] = set()
        self._added = 0
        # Min-heaps of (score, -order, row): the root is the row the next better one evicts.
        self._heaps: dict[str, list[tuple[float, int, R]]] = {}

    def would_keep(self, platform: str, score: float) -> bool:
        """Whether a test on `platform` with this score makes the top (build its row then)."""
        if self.size <= 0:
            return False
        heap = self._heaps.get(platform)
        return heap is None or len(heap) < self.size or score > heap[0][0]

    def add(self, row: R) -> None:
        """Keep `row` if it ranks among the top `size` of its platform."""
        score = row.score
        if not self.would_keep(row.platform, score):
            return
        self._added += 1
        ranked = (score, -self._added, row)
        heap = self._heaps.setdefault(row.platform, [])
        if len(heap) < self.size:
            heapq.heappush(heap, ranked)
        else:
            heapq.heapreplace(heap, ranked)

    def rows(self) -> list[R]:
        """The kept rows, in the order their tests finished."""
        ranked = [entry for heap in self._heaps.values() for entry in heap]
        return [row for _, _, row in sorted(ranked, key=lambda entry: -entry[1])]


def write_peak_summary(
    terminalreporter: Any,
    rows: Iterable[SummaryRow],
    top_n: int,
    over_limit: Set[str] = frozenset(),
) -> None:
    """The `top_n` tests with the highest peak growth per platform, under one heading.

    Tests in `over_limit` (they failed a memory limit) are marked ``OVER LIMIT``.
    """
    by_platform: dict[str, list[SummaryRow]] = {}
    for row in rows:
        by_platform.setdefault(row.platform, []).append(row)
    if top_n <= 0 or not by_platform:
        return
    terminalreporter.write_sep("-", "hwbench: peak memory growth")
    for name, platform_rows in sorted(by_platform.items()):
        platform_rows.sort(key=lambda row: row.growth_bytes, reverse=True)
        terminalreporter.write_line(f"{name} (top {min(top_n, len(platform_rows))}):")
        for row in platform_rows[:top_n]:
            terminalreporter.write_line(
                f"  {format_bytes(row.growth_bytes, signed=True):>12}  "
                f"peak {format_bytes(row.peak_bytes):>10}  "
                f"{row.series} ({'exact' if row.exact else 'sampled'})  {row.nodeid}"
                + ("  OVER LIMIT" if row.nodeid in over_limit else "")
            )


def write_untimed_summary(terminalreporter: Any, untimed: Mapping[str, int]) -> None:
    """Say which hw_benchmark tests ran without timings, and why (tests counted per reason)."""
    if not untimed:
        return
    terminalreporter.write_sep("-", "hwbench: benchmarks without timings")
    for warning, count in untimed.items():
        terminalreporter.write_line(f"{count} test{'s' if count != 1 else ''}: {warning}")


def write_throughput_summary(
    terminalreporter: Any, rows: Sequence[tuple[str, float | None, str]], shown_max: int
) -> None:
    """Each hw_benchmark test's achieved FLOP/s and bytes/s at its median (with the peak's share).

    `rows` are (label, median seconds, rates); at most `shown_max` were kept.
    """
    if not rows:
        return
    terminalreporter.write_sep("-", "hwbench: benchmark throughput (at the median)")
    for label, median_s, rates in rows:
        median = "-" if median_s is None else format_duration(median_s)
        terminalreporter.write_line(f"  {median:>10}  {rates}  {label}")
    if len(rows) >= shown_max:
        terminalreporter.write_line(f"  (the first {shown_max}; the report has every test's)")
