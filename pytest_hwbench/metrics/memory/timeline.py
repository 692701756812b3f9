"""Memory samples and the bounded, columnar timeline they are kept in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_MAX_SAMPLES", "MemoryMark", "MemorySample", "MemoryTimeline"]

#: Past this many samples a timeline downsamples itself, keeping every bucket's extremes.
DEFAULT_MAX_SAMPLES = 10_000


@dataclass(frozen=True)
class MemorySample:
    """One reading: seconds since the metric's start, bytes per series, and an optional label."""

    t: float
    values: Mapping[str, int]
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {"t": self.t, "values": dict(self.values), "label": self.label}


@dataclass(frozen=True)
class MemoryMark:
    """A labelled point the user recorded (``record_memory("after forward")``)."""

    t: float
    label: str
    values: Mapping[str, int] = field(default_factory=dict)


class MemoryTimeline:
    """Samples stored by column (``t`` plus one list per series) and labelled marks.

    Its length is bounded: past `max_samples` it shrinks itself (to at most two thirds) by keeping,
    in each small bucket of consecutive samples, the first and last sample and every series'
    minimum and maximum, so no peak or trough ever disappears. Marks are never dropped.
    """

    def __init__(
        self,
        series: Iterable[str],
        *,
        interval_s: float | None,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        sampler: str = "thread",
    ) -> None:
        if max_samples < 16:
            raise ValueError(f"max_samples must be at least 16, got {max_samples}")
        self.series: tuple[str, ...] = tuple(series)
        self.interval_s = interval_s
        self.max_samples = max_samples
        self.sampler = sampler
        self.t: list[float] = []
        self.values: dict[str, list[int | None]] = {name: [] for name in self.series}
        self.marks: list[MemoryMark] = []
        #: How many samples were appended in all, before any downsampling.
        self.samples_seen = 0
        self.downsampled = False

    def __len__(self) -> int:
        return len(self.t)

    def append(self, sample: MemorySample) -> None:
        """Add a sample (series it lacks are stored as None); a labelled one is also a mark."""
        self.t.append(sample.t)
        for name in self.series:
            self.values[name].append(sample.values.get(name))
        self.samples_seen += 1
        if sample.label is not None:
            self.marks.append(MemoryMark(sample.t, sample.label, dict(sample.values)))
        if len(self.t) > self.max_samples:
            self._shrink()

    def extend(self, samples: Iterable[MemorySample]) -> None:
        """Add several samples in order."""
        for sample in samples:
            self.append(sample)

    def _shrink(self) -> None:
        keep_per_bucket = 1 + 2 * max(1, len(self.series))
        # Buckets twice the size of what one keeps, so every pass removes a third or more.
        bucket = max(2 * keep_per_bucket, 4)
        n = len(self.t)
        kept: list[int] = []
        for start in range(0, n, bucket):
            stop = min(start + bucket, n)
            chosen = {start, stop - 1}
            for column in self.values.values():
                window = [(v, i) for i, v in enumerate(column[start:stop], start) if v is not None]
                if window:
                    chosen.add(min(window)[1])
                    chosen.add(max(window)[1])
            kept.extend(sorted(chosen))
        self.t = [self.t[i] for i in kept]
        self.values = {name: [col[i] for i in kept] for name, col in self.values.items()}
        self.downsampled = True

    def samples(self) -> list[MemorySample]:
        """The stored samples as row objects (labels come from the marks at the same time)."""
        labels = {mark.t: mark.label for mark in self.marks}
        return [
            MemorySample(
                t=t,
                values={n: v for n, col in self.values.items() if (v := col[i]) is not None},
                label=labels.get(t),
            )
            for i, t in enumerate(self.t)
        ]

    def column(self, name: str) -> Sequence[int | None]:
        """The values of one series, aligned with ``t``."""
        return self.values[name]

    def to_dict(self) -> dict[str, Any]:
        """Columnar JSON-able form: ``t``, ``series`` ({name: [...]}) and ``marks``."""
        return {
            "interval_s": self.interval_s,
            "sampler": self.sampler,
            "max_samples": self.max_samples,
            "samples_seen": self.samples_seen,
            "downsampled": self.downsampled,
            "t": list(self.t),
            "series": {name: list(col) for name, col in self.values.items()},
            "marks": [{"t": m.t, "label": m.label, "values": dict(m.values)} for m in self.marks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryTimeline:
        """Rebuild a timeline written by `to_dict`."""
        series = dict(data["series"])
        timeline = cls(
            series,
            interval_s=data.get("interval_s"),
            max_samples=int(data.get("max_samples", DEFAULT_MAX_SAMPLES)),
            sampler=str(data.get("sampler", "thread")),
        )
        timeline.t = [float(x) for x in data["t"]]
        for name, column in series.items():
            if len(column) != len(timeline.t):
                raise ValueError(
                    f"series {name!r} has {len(column)} values but t has {len(timeline.t)}"
                )
            timeline.values[name] = [None if v is None else int(v) for v in column]
        timeline.marks = [
            MemoryMark(float(m["t"]), str(m["label"]), dict(m.get("values") or {}))
            for m in data.get("marks", [])
        ]
        timeline.samples_seen = int(data.get("samples_seen", len(timeline.t)))
        timeline.downsampled = bool(data.get("downsampled", False))
        return timeline
