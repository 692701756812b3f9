"""`HostStretch`: a host test's memory for a report, at little more than the peak probe's cost.

A full `CPUMemoryMetric` per test (a timeline, the sampler, the device's description) costs a
report of thousands of short tests more than the tests themselves. Most tests end inside one
sampling interval, where a timeline holds two points: a stretch keeps the start, the exact peak
(the run-long `RSSPeakProbe`) and the end, and samples only when the test outlives an interval:
the sampler thread parks readings, and only then is a timeline built.

The sampler thread itself is the larger cost: every wake-up takes the GIL from the test, and on
a 2-core VM a thread waking every 10 ms slows the code it interrupts by 2-3%. So while tests end
inside an interval, the thread looks in only every `LOOK_IN_S`; once a stretch outlives an
interval it samples at the interval again, until stretches are short again. A long test that
follows short ones is therefore sampled from at most `LOOK_IN_S` after its start (its exact peak
does not depend on sampling).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from pytest_hwbench.metrics.memory._host import (
    RSSPeakProbe,
    read_rss_bytes,
    read_rss_raw,
    rss_from_raw,
)
from pytest_hwbench.metrics.sampler import get_sampler

__all__ = ["LOOK_IN_S", "HostStretch", "StretchResult"]

#: How often the sampler looks at a run whose tests end inside one sampling interval.
LOOK_IN_S = 0.1


class StretchResult(NamedTuple):
    """One stretch's memory: the figures of a short one, or a long one's whole ``memory``.

    A tuple of numbers rather than nested dicts: a report of thousands of tests keeps one per
    test until its entry is written, and the entry of a short one is written from it directly.
    """

    start_bytes: int
    end_bytes: int
    peak_bytes: int
    exact_peak: bool
    duration_s: float
    interval_s: float
    #: A sampled (or warned) stretch's report ``memory``; None for a short, quiet one.
    long_form: dict[str, Any] | None = None

    @property
    def peak_delta_bytes(self) -> int:
        """How far the peak rose above the start."""
        return self.peak_bytes - self.start_bytes

    def to_memory(self) -> dict[str, Any]:
        """The stretch as an entry's ``memory``: a long one's own dict, a short one's anew."""
        if self.long_form is not None:
            return self.long_form
        return {
            "interval_s": self.interval_s,
            "sampler": "thread",
            "samples": 2,
            "duration_s": self.duration_s,
            "series": {
                "rss": {
                    "start_bytes": self.start_bytes,
                    "end_bytes": self.end_bytes,
                    "peak_bytes": self.peak_bytes,
                    "peak_delta_bytes": self.peak_delta_bytes,
                    "exact_peak": self.exact_peak,
                }
            },
            "warnings": [],
            "primary_series": "rss",
            "timeline": None,
        }


class HostStretch:
    """The RSS of one stretch of code (a test): start, exact peak, end, and samples if long.

    One object serves a whole run: `begin` and `end` around each test, `close` after the last.
    Linux only, as the probe.
    """

    __slots__ = (
        "_active",
        "_interval_ns",
        "_lasting",
        "_look_in_ns",
        "_t0_ns",
        "_ticks",
        "_token",
        "device",
        "interval_s",
        "probe",
        "sampler_error",
    )

    def __init__(
        self,
        probe: RSSPeakProbe,
        interval_s: float,
        device: dict[str, Any],
        *,
        look_in_s: float = LOOK_IN_S,
    ) -> None:
        self.probe = probe
        self.interval_s = interval_s
        self._interval_ns = int(interval_s * 1e9)
        self._look_in_ns = int(max(look_in_s, interval_s) * 1e9)
        # Whether the last stretch outlived an interval (the next may too: sample at the
        # interval) or not (look in rarely). The first is assumed to.
        self._lasting = True
        #: What a report says of the measured device (the host).
        self.device = device
        self.sampler_error: str | None = None
        self._ticks: list[tuple[int, bytes | int]] = []
        self._token: int | None = None
        self._t0_ns = 0
        self._active = False

    def begin(self) -> bool:
        """Start a stretch; False where the probe's VmHWM reset was refused."""
        if not self.probe.begin():
            return False
        self._ticks = []
        self._t0_ns = time.perf_counter_ns()
        self._active = True
        if self._token is None:
            # One client for the whole run, not one per stretch: its ticks park a reading only
            # while a stretch is on, and the stretches of thousands of short tests cost no
            # registering. (The thread polls at this interval while idle anyway.)
            self._token = get_sampler().add(self._tick, self.interval_s, self._on_error)
        return True

    def close(self) -> None:
        """No stretch follows: stop the sampler's client."""
        self._active = False
        if self._token is not None:
            get_sampler().remove(self._token)
            self._token = None

    def _tick(self, now_ns: int) -> int | None:
        """The sampler's call: park a reading of a stretch that outlived an interval.

        Returns when to be called next: at the interval (None) while stretches last, else
        after `LOOK_IN_S`. A tick only parks statm's bytes: the GIL is held as briefly as it can.
        """
        if self._active and now_ns - self._t0_ns >= self._interval_ns:
            self._ticks.append((now_ns, read_rss_raw()))
            return None
        return None if self._lasting else self._look_in_ns

    def _on_error(self, exc: BaseException) -> None:
        self.sampler_error = (
            f"background sampling stopped after an error ({type(exc).__name__}: {exc}); the "
            "timeline ends there, exact peaks are unaffected"
        )

    def end(self) -> StretchResult:
        """End the stretch: start, exact peak and end, and a timeline if it was sampled."""
        self._active = False
        end_ns = time.perf_counter_ns()
        t0 = self._t0_ns
        self._lasting = end_ns - t0 >= self._interval_ns
        probe = self.probe
        peak = probe.end()
        end_bytes = read_rss_bytes()
        start = probe.start_bytes
        duration_s = round((end_ns - t0) / 1e9, 7)
        if not self._ticks and self.sampler_error is None:  # the common case: short and quiet
            peak = max(peak, end_bytes) if probe.exact else max(peak, start, end_bytes)
            return StretchResult(start, end_bytes, peak, probe.exact, duration_s, self.interval_s)
        ticks = [(t, rss_from_raw(raw)) for t, raw in self._ticks if t >= t0]
        sampled = [start, *(value for _, value in ticks), end_bytes]
        warnings = [self.sampler_error] if self.sampler_error else []
        self.sampler_error = None
        # Without resets a peak below an earlier one is not in the mark: the samples bound it.
        peak = max(peak, end_bytes) if probe.exact else max(peak, *sampled)
        measured = StretchResult(start, end_bytes, peak, probe.exact, duration_s, self.interval_s)
        memory = measured.to_memory()  # the short form, with what sampling added
        memory["samples"], memory["warnings"] = len(sampled), warnings
        # A short test's entry leaves out what a reader knows without it (format 2): its device
        # and platform are the entry's; min and sampled peak are those of start and end.
        if ticks:
            stats = memory["series"]["rss"]
            stats["min_bytes"], stats["sampled_peak_bytes"] = min(sampled), max(sampled)
            memory["timeline"] = self._timeline(ticks, start, end_bytes, end_ns)
            memory["device"], memory["platform"] = self.device, self.device["platform"]
        return measured._replace(long_form=memory)

    def _timeline(
        self, ticks: list[tuple[int, int]], start: int, end: int, end_ns: int
    ) -> dict[str, Any]:
        from pytest_hwbench.metrics.memory.timeline import MemorySample, MemoryTimeline

        t0 = self._t0_ns
        timeline = MemoryTimeline(("rss",), interval_s=self.interval_s)
        timeline.append(MemorySample(0.0, {"rss": start}))
        for t, value in ticks:
            timeline.append(MemorySample((t - t0) / 1e9, {"rss": value}))
        timeline.append(MemorySample((end_ns - t0) / 1e9, {"rss": end}))
        return timeline.to_dict()
