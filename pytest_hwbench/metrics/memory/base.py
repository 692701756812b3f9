"""`MemoryMetric`: measure one device's memory over a stretch of code, with exact peaks."""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pytest_hwbench.hardware.peak_counters import (
    counters_lock,
    fold_running_high_water,
    holders_of,
    join_shared_counter,
    release_shared_counter,
)
from pytest_hwbench.metrics.memory._host import release_freed_memory
from pytest_hwbench.metrics.memory._recording import SeriesRecord
from pytest_hwbench.metrics.memory.reader import MemoryReader
from pytest_hwbench.metrics.memory.timeline import DEFAULT_MAX_SAMPLES, MemorySample, MemoryTimeline
from pytest_hwbench.metrics.sampler import DEFAULT_INTERVAL_S, MIN_INTERVAL_S, get_sampler
from pytest_hwbench.units import parse_duration

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.base import HardwareBackend

__all__ = [
    "MemoryMetric",
    "MemoryMetricError",
    "MemoryScope",
    "MetricState",
    "fold_running_high_water",
]

SAMPLERS = ("thread", "process")
#: Sampler ticks parked before the sampler thread files them itself (a ~2.5 s backlog at 10 ms).
PENDING_TICKS_MAX = 256


class MemoryMetricError(RuntimeError):
    """A metric used out of order (record before start, start twice, stop before start)."""


class MetricState(enum.Enum):
    """Where a metric is in its life: created, running, or stopped with results."""

    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass
class MemoryScope:
    """One ``with metric.measure(label):`` block: its own start, exact peak and growth.

    `series` is filled in when the block ends, in the form of ``get_metrics()["series"]``.
    """

    label: str
    #: Seconds from the metric's start to the block's start and end.
    t_start: float
    t_end: float | None = None
    series: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The scope as a report's ``memory.scopes`` item."""
        return {
            "label": self.label,
            "t_start": round(self.t_start, 6),
            "t_end": None if self.t_end is None else round(self.t_end, 6),
            "series": self.series,
        }


class MemoryMetric(MemoryReader):
    """Measures memory series (bytes) of one device between `start()` and `stop()`.

    Subclasses say which series they read (`_read`), and where the platform keeps high-water
    marks, how to reset (`_reset_high_water`) and read (`_read_high_water`) them: the hooks of
    `MemoryReader`. This class runs the state machine, the shared background sampler, the
    timeline and the statistics.
    """

    def __init__(
        self,
        device: torch.device | str | None = None,
        *,
        backend: HardwareBackend | None = None,
        index: int | None = None,
        interval: float | str | None = None,
        sampler: str = "thread",
        max_samples: int = DEFAULT_MAX_SAMPLES,
    ) -> None:
        self.interval_s = DEFAULT_INTERVAL_S if interval is None else parse_duration(interval)
        if self.interval_s < MIN_INTERVAL_S:
            raise ValueError(
                f"sampling interval {self.interval_s * 1e3:g} ms is below the 1 ms minimum: "
                "shorter intervals cannot be sampled honestly; exact peaks come from high-water "
                "marks anyway"
            )
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
        self._sampler_note: str | None = None
        if sampler not in self.supported_samplers:
            self._sampler_note = (
                f'{type(self).__name__} has no sampler="{sampler}": its series are sampled by '
                "the thread sampler"
            )
            sampler = "thread"
        self.sampler = sampler
        self.max_samples = max_samples
        super().__init__(device, backend=backend, index=index)
        self.state = MetricState.CREATED
        self._record = SeriesRecord(self._new_timeline())
        self._scopes: list[MemoryScope] = []
        self._t0_ns = 0
        self._end_ns: int | None = None
        self._sampler_token: int | None = None

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> MemoryMetric:
        """Begin a fresh measurement: reset high-water marks, take the first sample, sample on."""
        # Lock order everywhere: the counters lock, then a metric's own lock.
        with counters_lock, self._lock:
            if self.state is MetricState.RUNNING:
                raise MemoryMetricError("start() called twice: this metric is already running")
            self._reset_results()
            self._on_start()
            self._synchronize()
            counters = self._high_water_counters()
            for other in holders_of(counters):
                other._fold_high_water()
            self._exact_series = self._reset_high_water()
            for counter in counters:
                join_shared_counter(self, counter)
            try:
                self._t0_ns = self._record.t0_ns = time.perf_counter_ns()
                self.state = MetricState.RUNNING
                first = self._take_sample(self._t0_ns, label=None)
                self._record.start_values = dict(first.values)
                self._start_sampling()
            except BaseException:
                # A first reading that fails (a driver refusing a query) leaves nothing behind:
                # no counter holder, no sampler, a metric that can be started again.
                for counter in counters:
                    release_shared_counter(self, counter)
                self.state = MetricState.CREATED
                raise
        return self

    def record_memory(self, label: str | None = None) -> MemorySample:
        """Take a sample now (after synchronizing the device); a label also makes it a mark."""
        if label is not None and not isinstance(label, str):
            raise TypeError(
                f"record_memory() takes a str label (or none), got {type(label).__name__} {label!r}"
            )
        with self._lock:
            if self.state is not MetricState.RUNNING:
                raise MemoryMetricError(
                    f"record_memory() needs a running metric; this one is {self.state.value}: "
                    "call start() first"
                )
            self._synchronize()
            self._file_pending()
            return self._take_sample(time.perf_counter_ns(), label=label)

    @contextlib.contextmanager
    def measure(self, label: str) -> Iterator[MemoryScope]:
        """Measure the block alone: its own start, exact peak and growth, as a `MemoryScope`.

        For costs a test pays once before the code it means to measure (a model's first call
        loads kernels and fills caches): call the step once, then measure it again inside
        ``with metric.measure("step"):``. Garbage is collected and freed heap given back to the
        OS before the block (so it cannot reuse what came before), the high-water marks are reset
        at its start
        (the metric's own peak keeps what came before), the timeline marks its start and end,
        and ``get_metrics()["scopes"]`` lists every block; the pytest plugin reports a test's
        peak growth, and checks its memory limit, on its scopes. Blocks do not nest.
        """
        if not isinstance(label, str) or not label.strip():
            raise TypeError(f"measure() takes a non-empty str label, got {label!r}")
        if self.state is MetricState.RUNNING:
            release_freed_memory()  # what the code before the block freed is not its to reuse
        with counters_lock:
            with self._lock:
                if self.state is not MetricState.RUNNING:
                    raise MemoryMetricError(
                        f"measure() needs a running metric; this one is {self.state.value}"
                    )
                if self._record.scope_max is not None:
                    raise MemoryMetricError(
                        f"measure({label!r}) inside another measure() block: blocks do not nest"
                    )
                self._synchronize()
                self._file_pending()
            # What every holder of the counters saw so far stays theirs (this metric included).
            for holder in holders_of(self._high_water_counters()):
                holder._fold_high_water()
            with self._lock:
                exact = self._reset_high_water() & self._exact_series
                first = self._take_sample(time.perf_counter_ns(), label=label)
                scope = MemoryScope(label, t_start=first.t)
                start_values = dict(first.values)
                self._record.scope_max = dict(start_values)
                self._scopes.append(scope)
        try:
            yield scope
        finally:
            with self._lock:
                if self.state is MetricState.RUNNING:
                    self._end_scope(scope, start_values, exact)

    def _end_scope(
        self, scope: MemoryScope, start_values: Mapping[str, int], exact: frozenset[str]
    ) -> None:
        self._synchronize()
        self._file_pending()
        high_water = self._safe_read_high_water()
        last = self._take_sample(time.perf_counter_ns(), label=f"{scope.label}:end")
        sampled = self._record.scope_max or {}
        self._record.scope_max = None
        scope.t_end = last.t
        for name, start in start_values.items():
            sampled_peak = max(sampled.get(name, start), last.values.get(name, start))
            is_exact = name in exact and name in high_water
            peak = max(sampled_peak, high_water[name]) if is_exact else sampled_peak
            scope.series[name] = {
                "start_bytes": start,
                "end_bytes": last.values.get(name),
                "peak_bytes": peak,
                "peak_delta_bytes": peak - start,
                "exact_peak": is_exact,
            }

    @property
    def scopes(self) -> list[MemoryScope]:
        """The `measure` blocks so far, in order."""
        return list(self._scopes)

    def stop(self) -> dict[str, Any]:
        """End the measurement: last sample, exact peaks read; returns `get_metrics()`."""
        with self._lock:
            if self.state is not MetricState.RUNNING:
                raise MemoryMetricError(
                    f"stop() needs a running metric; this one is {self.state.value}"
                )
        # Outside the lock: stopping a sampler may wait for it to deliver its last samples.
        self._stop_sampling()
        with counters_lock, self._lock:
            try:
                self._synchronize()
                self._file_pending()
                last = self._take_sample(time.perf_counter_ns(), label=None)
                self._record.end_values = dict(last.values)
                self._fold_high_water()
            except BaseException:
                # The marks were not read to the end: no peak can be called exact.
                self._exact_series = frozenset()
                raise
            finally:
                self._end_ns = time.perf_counter_ns()
                self.state = MetricState.STOPPED
                for counter in self._high_water_counters():
                    release_shared_counter(self, counter)
                self._on_stop()
            return self.get_metrics()

    def __enter__(self) -> MemoryMetric:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state is MetricState.RUNNING:
            self.stop()

    # -- results ---------------------------------------------------------------------------------

    def get_memory_timeline(self) -> MemoryTimeline:
        """The timeline so far (a running metric keeps adding to it)."""
        with self._lock:
            self._file_pending()
            return self._record.timeline

    def get_metrics(self) -> dict[str, Any]:
        """Per series: start, end, min, peak, peak growth and whether the peak is exact.

        Available while running too (a snapshot) and after `stop()`; before `start()` it raises.
        """
        with self._lock:
            if self.state is MetricState.CREATED:
                raise MemoryMetricError("get_metrics() before start(): nothing was measured yet")
            running = self.state is MetricState.RUNNING
            if running:
                self._file_pending()
            high_water = dict(self._folded_high_water)
            if running:
                for name, value in self._safe_read_high_water().items():
                    high_water[name] = max(high_water.get(name, 0), value)
            end_ns = time.perf_counter_ns() if running else (self._end_ns or self._t0_ns)
            series = self._record.statistics(high_water, self._exact_series, running)
            result = {
                "device": self.describe_device(),
                "running": running,
                "interval_s": self.interval_s,
                "sampler": self.sampler,
                "samples": self._record.timeline.samples_seen,
                "duration_s": (end_ns - self._t0_ns) / 1e9,
                "series": series,
                "warnings": list(self.warnings),
            }
            if self._scopes:
                result["scopes"] = [scope.to_dict() for scope in self._scopes if scope.series]
            return result

    # -- internals -------------------------------------------------------------------------------

    def _new_timeline(self) -> MemoryTimeline:
        return MemoryTimeline(
            self.series(),
            interval_s=self.interval_s,
            max_samples=self.max_samples,
            sampler=self.sampler,
        )

    def _reset_results(self) -> None:
        self._record = SeriesRecord(self._new_timeline())
        self._scopes = []
        self.warnings = [self._sampler_note] if self._sampler_note else []
        self._folded_high_water = {}
        self._exact_series = frozenset()
        self._end_ns = None

    def _take_sample(self, now_ns: int, label: str | None) -> MemorySample:
        values = self._read()
        return self._add_sample(now_ns, values, label)

    def _add_sample(
        self, now_ns: int, values: Mapping[str, int], label: str | None
    ) -> MemorySample:
        with self._lock:
            return self._record.add(now_ns, values, label)

    def _start_sampling(self) -> None:
        self._sampler_token = get_sampler().add(
            self._sample_tick, self.interval_s, self._on_sampler_error
        )

    def _stop_sampling(self) -> None:
        if self._sampler_token is not None:
            get_sampler().remove(self._sampler_token)
            self._sampler_token = None

    def _is_running(self) -> bool:
        return self.state is MetricState.RUNNING

    def _sample_tick(self, now_ns: int) -> None:
        pending = self._record.pending
        pending.append((now_ns, self._read_raw()))
        if len(pending) >= PENDING_TICKS_MAX:
            with self._lock:
                if self.state is MetricState.RUNNING:
                    self._file_pending()

    def _file_pending(self) -> None:
        """Decode the parked sampler ticks into the timeline (caller holds the lock)."""
        dropped = self._record.file_pending(self._decode_raw)
        if dropped is not None:
            self.warnings.append(dropped)

    def _on_sampler_error(self, exc: BaseException) -> None:
        with self._lock:
            self.warnings.append(
                f"background sampling stopped after an error ({type(exc).__name__}: {exc}); "
                "the timeline ends there, exact peaks are unaffected"
            )
