"""`EnergyMetric`: the joules a device used over a stretch of code, from its own counters."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.hardware.energy import EnergyCounter

__all__ = ["COUNTER", "POWER_TIMES_DURATION", "EnergyMetric", "EnergyMetricError"]

#: How a domain's joules were found: the counter's difference (measured).
COUNTER = "counter"
#: ...or, for a window shorter than the counter's update period, the device's reported power
#: times the window's length (estimated).
POWER_TIMES_DURATION = "power x duration"
#: ...or that difference where there is no power reading to estimate from (0 or a whole step).
SHORT_COUNTER = "counter, window shorter than its update period"


class EnergyMetricError(RuntimeError):
    """An energy metric used out of order (stopped before started, read while running)."""


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

    @property
    def available(self) -> bool:
        """Whether the metric reads counters (else `unavailable_reason` says why not)."""
        return self.unavailable_reason is None

    @property
    def running(self) -> bool:
        """Whether the metric has started and not yet stopped."""
        return self._start is not None and self._stop is None

    def start(self) -> EnergyMetric:
        """Read every counter now: the window starts (again, if it ran before)."""
        self._start, self._stop = _Reading(self.counters, self._clock), None
        return self

    def stop(self) -> EnergyMetric:
        """Read every counter now: the window ends."""
        if self._start is None:
            raise EnergyMetricError("stop() before start(): start the metric first")
        if self._stop is None:
            self._stop = _Reading(self.counters, self._clock)
        return self

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
        {"joules", "mean_watts", "exact", "method", "update_period_s", "covers"}}}``; for a
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
            domains[counter.domain] = {
                "joules": joules,
                "mean_watts": joules / duration if duration > 0 else None,
                "exact": method == COUNTER,
                "method": method,
                "update_period_s": period,
                "covers": counter.covers,
            }
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
