"""`MemoryMetric`: measure one device's memory over a stretch of code, with exact peaks."""

from __future__ import annotations

import enum
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Hashable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from pytest_hwbench.hardware.peak_counters import (
    counters_lock,
    fold_running_high_water,
    holders_of,
    join_shared_counter,
    release_shared_counter,
)
from pytest_hwbench.metrics.memory.sampler import DEFAULT_INTERVAL_S, MIN_INTERVAL_S, get_sampler
from pytest_hwbench.metrics.memory.timeline import (
    DEFAULT_MAX_SAMPLES,
    MemorySample,
    MemoryTimeline,
)
from pytest_hwbench.units import parse_duration

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.base import HardwareBackend

__all__ = ["MemoryMetric", "MemoryMetricError", "MetricState", "fold_running_high_water"]

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


def _device_index(device: object) -> int:
    """The index in "cuda:1" or ``torch.device("cuda", 1)``; 0 when none is given."""
    raw = getattr(device, "index", None)
    if isinstance(raw, int):
        return raw
    if isinstance(device, str) and ":" in device:
        tail = device.rsplit(":", 1)[1]
        return int(tail) if tail.isdigit() else 0
    return 0


class MemoryMetric(ABC):
    """Measures memory series (bytes) of one device between `start()` and `stop()`.

    Subclasses say which series they read (`_read`), and where the platform keeps high-water
    marks, how to reset (`_reset_high_water`) and read (`_read_high_water`) them. The base class
    runs the state machine, the shared background sampler, the timeline and the statistics.
    """

    #: The registry name of the platform this metric measures.
    platform: ClassVar[str] = "cpu"
    #: The series that limits, leak checks and summaries use (the test's own memory).
    primary_series: ClassVar[str] = "rss"
    #: The samplers this metric implements; others fall back to the thread, with a warning.
    supported_samplers: ClassVar[tuple[str, ...]] = ("thread",)

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
        self.device = device
        self.backend = backend
        self.device_index = _device_index(device) if index is None else index
        self.state = MetricState.CREATED
        self.warnings: list[str] = []
        self._lock = threading.RLock()
        self._timeline = MemoryTimeline(
            self.series(), interval_s=self.interval_s, max_samples=max_samples, sampler=sampler
        )
        self._t0_ns = 0
        self._end_ns: int | None = None
        self._sampler_token: int | None = None
        self._start_values: dict[str, int] = {}
        self._end_values: dict[str, int] = {}
        self._sampled_max: dict[str, int] = {}
        self._sampled_min: dict[str, int] = {}
        self._folded_high_water: dict[str, int] = {}
        self._exact_series: frozenset[str] = frozenset()
        self._device_info: dict[str, Any] | None = None
        # Sampler ticks not yet in the timeline: (time, raw reading). A tick only parks its
        # reading here, so the sampler holds the GIL, which the measured code hands over on
        # every tick, for as little as possible; readers of the results file them first.
        self._pending: deque[tuple[int, object]] = deque()

    # -- what subclasses provide -----------------------------------------------------------------

    @abstractmethod
    def series(self) -> tuple[str, ...]:
        """The names of the series this metric reads, e.g. ("allocated", "reserved", "rss")."""

    @abstractmethod
    def _read(self) -> dict[str, int]:
        """Read every series now, in bytes."""

    def _read_raw(self) -> object:
        """What a sampler tick reads: `_decode_raw` turns it into `_read`'s values later.

        Runs on the sampler thread while the measured code waits for the GIL: a subclass may
        return something cheaper than `_read`'s dict (bytes as read) and decode it later.
        """
        return self._read()

    def _decode_raw(self, raw: Any) -> Mapping[str, int]:
        """`_read`'s values from what `_read_raw` returned."""
        return raw  # type: ignore[no-any-return]

    def _synchronize(self) -> None:
        """Wait for the device's queued work, so counters include it (no-op on the host)."""

    def _high_water_counters(self) -> tuple[Hashable, ...]:
        """Keys naming the high-water counters this metric resets (VmHWM, a device's peaks)."""
        return ()

    def _reset_high_water(self) -> frozenset[str]:
        """Reset the platform's high-water marks; return the series whose peak is now exact."""
        return frozenset()

    def _read_high_water(self) -> dict[str, int]:
        """The platform's high-water marks (bytes) for the series `_reset_high_water` named."""
        return {}

    def _on_start(self) -> None:
        """Prepare platform resources (open files, handles) before the first reading."""

    def _on_stop(self) -> None:
        """Release what `_on_start` prepared."""

    def describe_device(self) -> dict[str, Any]:
        """The measured device for reports: name, index and, where known, its properties."""
        if self._device_info is None:  # a device's properties do not change: build it once
            info: dict[str, Any] = {"platform": self.platform, "index": self.device_index}
            if self.backend is not None:
                # "cuda:0", not the "cuda" a caller may have passed: reports name one device.
                info["device"] = self.backend.device_label(self.device_index)
            elif self.device is not None:
                info["device"] = str(self.device)
            if self.backend is not None:
                try:
                    info["properties"] = self.backend.properties_dict(self.device_index)
                except Exception as exc:
                    info["properties_error"] = f"{type(exc).__name__}: {exc}"
            self._device_info = info
        return dict(self._device_info)

    def read_current(self) -> dict[str, int]:
        """Synchronize the device and read every series now, started or not (bytes)."""
        self._synchronize()
        return self._read()

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
            self._t0_ns = time.perf_counter_ns()
            self.state = MetricState.RUNNING
            first = self._take_sample(self._t0_ns, label=None)
            self._start_values = dict(first.values)
            self._start_sampling()
        return self

    def record_memory(self, label: str | None = None) -> MemorySample:
        """Take a sample now (after synchronizing the device); a label also makes it a mark."""
        with self._lock:
            if self.state is not MetricState.RUNNING:
                raise MemoryMetricError(
                    f"record_memory() needs a running metric; this one is {self.state.value}: "
                    "call start() first"
                )
            self._synchronize()
            self._file_pending()
            return self._take_sample(time.perf_counter_ns(), label=label)

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
                self._end_values = dict(last.values)
                self._fold_high_water()
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
            return self._timeline

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
            series: dict[str, dict[str, Any]] = {}
            for name in self._timeline.series:
                if name not in self._start_values:
                    continue
                start = self._start_values[name]
                sampled_peak = self._sampled_max.get(name, start)
                exact = name in self._exact_series and name in high_water
                peak = max(sampled_peak, high_water[name]) if exact else sampled_peak
                end = self._end_values.get(name) if not running else None
                series[name] = {
                    "start_bytes": start,
                    "end_bytes": end,
                    "min_bytes": self._sampled_min.get(name, start),
                    "peak_bytes": peak,
                    "peak_delta_bytes": peak - start,
                    "sampled_peak_bytes": sampled_peak,
                    "exact_peak": exact,
                }
            return {
                "device": self.describe_device(),
                "running": running,
                "interval_s": self.interval_s,
                "sampler": self.sampler,
                "samples": self._timeline.samples_seen,
                "duration_s": (end_ns - self._t0_ns) / 1e9,
                "series": series,
                "warnings": list(self.warnings),
            }

    # -- internals -------------------------------------------------------------------------------

    def _reset_results(self) -> None:
        self._timeline = MemoryTimeline(
            self.series(),
            interval_s=self.interval_s,
            max_samples=self.max_samples,
            sampler=self.sampler,
        )
        self.warnings = [self._sampler_note] if self._sampler_note else []
        self._start_values, self._end_values = {}, {}
        self._sampled_max, self._sampled_min = {}, {}
        self._folded_high_water = {}
        self._exact_series = frozenset()
        self._end_ns = None
        self._pending.clear()

    def _take_sample(self, now_ns: int, label: str | None) -> MemorySample:
        values = self._read()
        return self._add_sample(now_ns, values, label)

    def _add_sample(
        self, now_ns: int, values: Mapping[str, int], label: str | None
    ) -> MemorySample:
        with self._lock:
            sample = MemorySample(t=max(now_ns - self._t0_ns, 0) / 1e9, values=values, label=label)
            self._timeline.append(sample)
            for name, value in values.items():
                if value > self._sampled_max.get(name, -1):
                    self._sampled_max[name] = value
                if name not in self._sampled_min or value < self._sampled_min[name]:
                    self._sampled_min[name] = value
            return sample

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
        pending = self._pending
        pending.append((now_ns, self._read_raw()))
        if len(pending) >= PENDING_TICKS_MAX:
            with self._lock:
                if self.state is MetricState.RUNNING:
                    self._file_pending()

    def _file_pending(self) -> None:
        """Decode the parked sampler ticks into the timeline (caller holds the lock)."""
        pending = self._pending
        t0_ns = self._t0_ns
        while pending:
            try:
                now_ns, raw = pending.popleft()
            except IndexError:  # the sampler thread filed them meanwhile
                return
            if now_ns < t0_ns:
                continue  # a tick of an earlier run that landed after it stopped
            try:
                values = self._decode_raw(raw)
            except Exception as exc:
                pending.clear()
                self.warnings.append(
                    f"decoding a background sample failed ({type(exc).__name__}: {exc}); "
                    "samples were dropped, exact peaks are unaffected"
                )
                return
            self._add_sample(now_ns, values, None)

    def _on_sampler_error(self, exc: BaseException) -> None:
        with self._lock:
            self.warnings.append(
                f"background sampling stopped after an error ({type(exc).__name__}: {exc}); "
                "the timeline ends there, exact peaks are unaffected"
            )

    def _safe_read_high_water(self) -> dict[str, int]:
        if not self._exact_series:
            return {}
        try:
            return self._read_high_water()
        except Exception as exc:
            self.warnings.append(
                f"reading high-water marks failed ({type(exc).__name__}: {exc}); peaks are sampled"
            )
            self._exact_series = frozenset()
            return {}

    def _fold_high_water(self) -> None:
        """Keep the high-water marks seen so far before another metric resets the counter."""
        with self._lock:
            for name, value in self._safe_read_high_water().items():
                self._folded_high_water[name] = max(self._folded_high_water.get(name, 0), value)
