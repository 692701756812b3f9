"""`EnergyMetric`: the joules a device used over a stretch of code, from its own counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.hardware.energy import EnergyCounter

__all__ = [
    "COUNTER",
    "DEFAULT_POWER_INTERVAL_S",
    "POWER_TIMES_DURATION",
    "EnergyMetric",
    "EnergyMetricError",
]

#: How often the plugin samples power: less often than memory, since NVML's reading changes
#: only every ~0.1 s (an average over ~1 s), and each tick reads every counter (~15 µs each,
#: taken from the measured program while it holds the GIL).
DEFAULT_POWER_INTERVAL_S = 0.05

#: How a domain's joules were found: the counter's difference (measured).
COUNTER = "counter"
#: ...or, for a window shorter than the counter's update period, the device's reported power
#: times the window's length (estimated).
POWER_TIMES_DURATION = "power x duration"
#: ...or that difference where there is no power reading to estimate from (0 or a whole step).
SHORT_COUNTER = "counter, window shorter than its update period"


class EnergyMetricError(RuntimeError):
    """An energy metric used out of order (stopped before started, read while running)."""


#: Past this many points a power timeline halves itself (neighbours merged, time-weighted);
#: peaks and integrals are kept as the points arrive, so they lose nothing.
MAX_POWER_POINTS = 10_000


def _merge_pairs(times: list[float], series: list[list[float]]) -> None:
    """Halve a timeline in place, each pair of points made one at the later time.

    Its value is the pair's time-weighted mean: a mean power over the longer interval.
    """
    merged_t: list[float] = []
    merged: list[list[float]] = [[] for _ in series]
    before = 0.0
    for i in range(1, len(times), 2):
        first, second = times[i - 1] - before, times[i] - times[i - 1]
        span = first + second
        for values, out in zip(series, merged, strict=True):
            if span > 0:
                out.append((values[i - 1] * first + values[i] * second) / span)
            else:
                out.append(values[i])
        merged_t.append(times[i])
        before = times[i]
    if len(times) % 2:  # the odd last point stays as it is
        merged_t.append(times[-1])
        for values, out in zip(series, merged, strict=True):
            out.append(values[-1])
    times[:] = merged_t
    for values, out in zip(series, merged, strict=True):
        values[:] = out


class _Reading:
    __slots__ = ("joules", "seconds", "watts")

    def __init__(self, counters: list[EnergyCounter], clock: Callable[[], float]) -> None:
        self.seconds = clock()
        self.joules = [counter.read_joules() for counter in counters]
        self.watts = [counter.read_watts() for counter in counters]


class EnergyMetric:
    """What a device used between `start` and `stop`, per counter (CPU package, DRAM, GPU).

    Counters are device-wide: every process on the device counts, idle power included. A
    window shorter than a counter's update period is estimated (its result says how), since the
    counter shows only whole updates.
    """

    def __init__(
        self,
        device: str,
        *,
        backend: HardwareBackend,
        index: int,
        counters: list[EnergyCounter],
        clock: Callable[[], float] = time.perf_counter,
        unavailable_reason: str | None = None,
        interval_s: float | None = None,
    ) -> None:
        if unavailable_reason is None and not counters:
            raise ValueError("an energy metric needs counters, or the reason there are none")
        self.device = device
        #: Why this device's energy cannot be read here (None: it can).
        self.unavailable_reason = unavailable_reason
        self.backend = backend
        self.index = index
        self.counters = counters
        self._clock = clock
        self._start: _Reading | None = None
        self._stop: _Reading | None = None
        #: How often the shared sampler thread reads power while the metric runs (None: never).
        self.interval_s = interval_s
        self._sampler_token: int | None = None
        self._lock = threading.Lock()  # the sampler's thread appends while the test reads
        #: The power timeline: seconds since start, and per domain the watts at those times.
        self._power_t: list[float] = []
        self._power: list[list[float]] = [[] for _ in counters]
        #: Per counter without a power reading (RAPL): its last (seconds, joules), to derive
        #: the mean power over each sampling interval from the counter.
        self._last: list[tuple[float, float] | None] = [None for _ in counters]
        #: Per domain, the highest power seen, and (counters that read power) the readings'
        #: trapezoid integral so far with the last (seconds since start, watts) it reached.
        self._peak: list[float | None] = [None for _ in counters]
        self._power_joules: list[float] = [0.0 for _ in counters]
        self._integrated_to: list[tuple[float, float]] = [(0.0, 0.0) for _ in counters]

    @property
    def available(self) -> bool:
        """Whether the metric reads counters (else `unavailable_reason` says why not)."""
        return self.unavailable_reason is None

    @property
    def running(self) -> bool:
        """Whether the metric has started and not yet stopped."""
        return self._start is not None and self._stop is None

    def start(self) -> EnergyMetric:
        """Read every counter now: the window starts (again, if it ran before).

        With `interval_s`, the process's sampler thread reads power from now on (the
        counters' own reading where they have one, NVML's; else the counter's rise over
        each interval, RAPL's).
        """
        self._stop_sampling()
        start = _Reading(self.counters, self._clock)
        with self._lock:
            self._power_t = []
            self._power = [[] for _ in self.counters]
            self._last = [
                (start.seconds, joules) if watts is None else None
                for joules, watts in zip(start.joules, start.watts, strict=True)
            ]
            self._peak = [None for _ in self.counters]
            self._power_joules = [0.0 for _ in self.counters]
            self._integrated_to = [(0.0, watts or 0.0) for watts in start.watts]
            self._start, self._stop = start, None
        if self.interval_s is not None and self.counters:
            from pytest_hwbench.metrics.sampler import get_sampler

            self._sampler_token = get_sampler().add(
                self._sample_power, self.interval_s, self._on_sampler_error
            )
        return self

    def stop(self) -> EnergyMetric:
        """Read every counter now: the window ends (and power sampling with it)."""
        if self._start is None:
            raise EnergyMetricError("stop() before start(): start the metric first")
        if self._stop is None:
            self._stop_sampling()
            stop = _Reading(self.counters, self._clock)
            with self._lock:
                if self._power_t:  # the timeline ends with the window
                    self._add_power(stop.seconds, stop.joules, stop.watts)
                self._stop = stop
        return self

    def _stop_sampling(self) -> None:
        token, self._sampler_token = self._sampler_token, None
        if token is not None:
            from pytest_hwbench.metrics.sampler import get_sampler

            get_sampler().remove(token)

    def _sample_power(self, now_ns: int) -> None:
        """The sampler thread's tick: each domain's power now."""
        counters = self.counters
        seconds = self._clock()
        joules = [
            counter.read_joules() if last is not None else 0.0
            for counter, last in zip(counters, self._last, strict=True)
        ]
        watts = [
            None if last is not None else counter.read_watts()
            for counter, last in zip(counters, self._last, strict=True)
        ]
        with self._lock:
            if self._start is not None and self._stop is None:
                self._add_power(seconds, joules, watts)

    def _add_power(self, seconds: float, joules: list[float], watts: list[float | None]) -> None:
        """Append a point of the power timeline (caller holds the lock)."""
        assert self._start is not None
        since_start = seconds - self._start.seconds
        points: list[float] = []
        for i, last in enumerate(self._last):
            if last is None:  # the counter reads power itself: integrate its readings
                value = watts[i] or 0.0
                then, before = self._integrated_to[i]
                self._power_joules[i] += (since_start - then) * (value + before) / 2
                self._integrated_to[i] = (since_start, value)
            else:
                then, joules_then = last
                elapsed = seconds - then
                value = (joules[i] - joules_then) / elapsed if elapsed > 0 else 0.0
                self._last[i] = (seconds, joules[i])
            peak = self._peak[i]
            self._peak[i] = value if peak is None or value > peak else peak
            points.append(value)
        self._power_t.append(since_start)
        for series, value in zip(self._power, points, strict=True):
            series.append(value)
        if len(self._power_t) > MAX_POWER_POINTS:
            _merge_pairs(self._power_t, self._power)

    def _on_sampler_error(self, exc: BaseException) -> None:
        self._sampler_token = None
        self.sampling_error = f"power sampling stopped ({type(exc).__name__}: {exc})"

    #: Why the power timeline stopped early, if it did.
    sampling_error: str | None = None

    def get_power_timeline(self) -> dict[str, Any] | None:
        """The power the sampler read: ``{"t": [s], "watts": {domain: [W]}}``; None if none.

        A counter that reads power (NVML) gives its reading (a moving average over the
        driver's window); one that does not (RAPL) the mean power over the interval ending
        at each time, from its rise.
        """
        with self._lock:
            if not self._power_t:
                return None
            return {
                "t": list(self._power_t),
                "watts": {
                    counter.domain: list(series)
                    for counter, series in zip(self.counters, self._power, strict=True)
                },
            }

    def __enter__(self) -> EnergyMetric:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def get_metrics(self) -> dict[str, Any]:
        """The window's energy per domain, its total, and how each figure was found.

        ``{"device": {...}, "duration_s", "total_joules", "exact", "domains": {domain:
        {"joules", "mean_watts", "exact", "method", "update_period_s", "covers"}}}``; where
        power was sampled, a domain also has ``peak_watts`` and, for a counter that reads power
        itself (NVML), ``power_joules``: its power readings integrated over the window (a
        check on the counter, and what a window shorter than its update can trust); for a
        metric without counters, ``total_joules`` is None, ``domains`` empty, and
        ``"unavailable"`` says why.
        """
        start, stop = self._start, self._stop
        if start is None or stop is None:
            state = "running" if self.running else "not started"
            raise EnergyMetricError(f"get_metrics() on a metric {state}: stop it first")
        duration = max(stop.seconds - start.seconds, 0.0)
        domains: dict[str, dict[str, Any]] = {}
        for i, counter in enumerate(self.counters):
            joules = max(stop.joules[i] - start.joules[i], 0.0)
            period = counter.update_period_s
            method = COUNTER
            if period is not None and duration < period:
                watts = [w for w in (start.watts[i], stop.watts[i]) if w is not None]
                if watts:
                    joules, method = sum(watts) / len(watts) * duration, POWER_TIMES_DURATION
                else:
                    method = SHORT_COUNTER
            domain: dict[str, Any] = {
                "joules": joules,
                "mean_watts": joules / duration if duration > 0 else None,
                "exact": method == COUNTER,
                "method": method,
                "update_period_s": period,
                "covers": counter.covers,
            }
            peak = self._peak[i]
            if peak is not None:
                domain["peak_watts"] = peak
                if self._last[i] is None:  # its own power readings, from the window's start
                    domain["power_joules"] = self._power_joules[i]
            domains[counter.domain] = domain
        results: dict[str, Any] = {
            "device": {
                "platform": self.backend.name,
                "index": self.index,
                "device": self.backend.device_label(self.index),
            },
            "duration_s": duration,
            "total_joules": sum(domain["joules"] for domain in domains.values()),
            "exact": all(domain["exact"] for domain in domains.values()),
            "domains": domains,
        }
        if self.unavailable_reason is not None:
            results.update(total_joules=None, exact=False, unavailable=self.unavailable_reason)
        return results
