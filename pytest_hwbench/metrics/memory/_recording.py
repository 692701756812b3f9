"""What one measurement saw of its series: the samples, their extremes, and the parked ticks.

`SeriesRecord` is the bookkeeping half of a `MemoryMetric`: it files samples into the bounded
timeline, keeps each series' sampled minimum and maximum and its start and end values, holds the
readings the sampler thread parks until someone reads the results, and turns all of that (with
the platform's high-water marks) into per-series statistics. The metric holds the lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from pytest_hwbench.metrics.memory.timeline import MemorySample, MemoryTimeline

__all__ = ["SeriesRecord"]


class SeriesRecord:
    """The samples of one measurement, from its start (`t0_ns`) on."""

    def __init__(self, timeline: MemoryTimeline, t0_ns: int = 0) -> None:
        self.timeline = timeline
        self.t0_ns = t0_ns
        self.start_values: dict[str, int] = {}
        self.end_values: dict[str, int] = {}
        self.sampled_max: dict[str, int] = {}
        self.sampled_min: dict[str, int] = {}
        # Sampler ticks not yet in the timeline: (time, raw reading). A tick only parks its
        # reading here, so the sampler holds the GIL, which the measured code hands over on
        # every tick, for as little as possible; readers of the results file them first.
        self.pending: deque[tuple[int, object]] = deque()
        #: While a scope is open (`MemoryMetric.measure`): each series' sampled maximum in it.
        self.scope_max: dict[str, int] | None = None

    def add(self, now_ns: int, values: Mapping[str, int], label: str | None) -> MemorySample:
        """File one reading, taken at `now_ns`, as a sample (a mark, when labelled)."""
        sample = MemorySample(t=max(now_ns - self.t0_ns, 0) / 1e9, values=values, label=label)
        self.timeline.append(sample)
        sampled_max, sampled_min = self.sampled_max, self.sampled_min
        for name, value in values.items():
            if value > sampled_max.get(name, -1):
                sampled_max[name] = value
            if name not in sampled_min or value < sampled_min[name]:
                sampled_min[name] = value
        scope_max = self.scope_max
        if scope_max is not None:
            for name, value in values.items():
                if value > scope_max.get(name, -1):
                    scope_max[name] = value
        return sample

    def file_pending(self, decode: Callable[[Any], Mapping[str, int]]) -> str | None:
        """Decode the parked ticks into samples; returns why they were dropped, if they were."""
        pending = self.pending
        t0_ns = self.t0_ns
        while pending:
            try:
                now_ns, raw = pending.popleft()
            except IndexError:  # the sampler thread filed them meanwhile
                return None
            if now_ns < t0_ns:
                continue  # a tick of an earlier run that landed after it stopped
            try:
                values = decode(raw)
            except Exception as exc:
                pending.clear()
                return (
                    f"decoding a background sample failed ({type(exc).__name__}: {exc}); "
                    "samples were dropped, exact peaks are unaffected"
                )
            self.add(now_ns, values, None)
        return None

    def statistics(
        self, high_water: Mapping[str, int], exact_series: frozenset[str], running: bool
    ) -> dict[str, dict[str, Any]]:
        """Per series: start, end, min, peak, growth, and whether the peak is exact.

        A series' peak is exact when the platform's high-water mark covers it (`exact_series`
        with a mark in `high_water`): the larger of the mark and the sampled maximum.
        """
        series: dict[str, dict[str, Any]] = {}
        for name in self.timeline.series:
            if name not in self.start_values:
                continue
            start = self.start_values[name]
            sampled_peak = self.sampled_max.get(name, start)
            exact = name in exact_series and name in high_water
            peak = max(sampled_peak, high_water[name]) if exact else sampled_peak
            series[name] = {
                "start_bytes": start,
                "end_bytes": None if running else self.end_values.get(name),
                "min_bytes": self.sampled_min.get(name, start),
                "peak_bytes": peak,
                "peak_delta_bytes": peak - start,
                "sampled_peak_bytes": sampled_peak,
                "exact_peak": exact,
            }
        return series
