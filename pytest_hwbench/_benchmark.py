"""The ``hw_benchmark`` fixture: pytest-benchmark timings that wait for the device, plus memory.

pytest-benchmark reads its clock at the start and end of every round. `DeviceTimer` is that clock:
it synchronizes the test's device before each reading (on CUDA and ROCm it reads CUDA events), so
a round's time includes the kernels it queued, not only their launches. Memory is measured on one
extra, untimed call. Importing this module loads neither torch nor pytest_benchmark.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_hwbench._session import benchmark_key
from pytest_hwbench.plugin import benchmark_plugin_loaded

if TYPE_CHECKING:
    import torch

    from pytest_hwbench._options import HwbenchOptions
    from pytest_hwbench._session import HwbenchSession
    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.hardware.registry import HardwareRegistry

__all__ = [
    "BUILTIN_PEAKS",
    "DTYPE_KEYS",
    "DeviceTimer",
    "HwBenchmark",
    "PeakSpec",
    "benchmark_settings",
    "canonical_dtype",
    "hw_benchmark_fixture",
    "parse_peak_lines",
]

T = TypeVar("T")

FIXTURE = "hw_benchmark"
BENCHMARK_FIXTURE = "benchmark"  # pytest-benchmark's
#: Which per-call time the throughput figures divide by.
THROUGHPUT_TIME = "median"

#: The precisions a peak is known for; ``bandwidth`` (bytes/s) is the memory bandwidth.
DTYPE_KEYS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8")
BANDWIDTH_KEY = "bandwidth"
_DTYPE_ALIASES = {
    "fp64": "fp64",
    "float64": "fp64",
    "double": "fp64",
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "tf32": "tf32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "fp8": "fp8",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "float8_e4m3fnuz": "fp8",
    "float8_e5m2fnuz": "fp8",
}
_PEAK_LINE_FORM = (
    "'DEVICE NAME:key=value[,key=value...]' where DEVICE NAME is a substring of the device name "
    f"torch reports, key is one of {', '.join((*DTYPE_KEYS, BANDWIDTH_KEY))}, and value is a "
    "positive number (FLOP/s, or bytes/s for bandwidth), e.g. "
    "'NVIDIA H100 80GB HBM3:bf16=989e12,bandwidth=3.35e12'"
)

_settings_key = pytest.StashKey["BenchmarkSettings"]()
_conflict_key = pytest.StashKey[bool]()


# -- theoretical peaks -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PeakSpec:
    """The theoretical peaks of the devices whose name matches `pattern`, and where they come from.

    Built-in entries are per product; `compute_units` (SMs or CUs of the whole product) lets a
    partition (a MIG instance, one GCD of an MI250X) get its share. Ini entries are used as is.
    """

    pattern: str
    source: str
    flops_per_s: Mapping[str, float]
    bandwidth_bytes_per_s: float | None = None
    compute_units: int | None = None
    regex: bool = True

    def matches(self, device_name: str) -> bool:
        """Whether this entry describes a device that torch names `device_name`."""
        if self.regex:
            return re.search(self.pattern, device_name, re.IGNORECASE) is not None
        return self.pattern.casefold() in device_name.casefold()

    def scale(self, compute_units: int | None) -> float:
        """The share of the product a device with `compute_units` SMs/CUs has (1 when unknown)."""
        if self.compute_units and compute_units and 0 < compute_units < self.compute_units:
            return compute_units / self.compute_units
        return 1.0


def _dense(sparse_tflops: float) -> float:
    """Dense FLOP/s from a datasheet's "with sparsity" TFLOPS figure (2:4 sparsity doubles it)."""
    return sparse_tflops * 1e12 / 2


# Dense figures at boost clock. NVIDIA datasheets quote tensor-core TF32/BF16/FP16/FP8 "with
# sparsity"; dense is half (`_dense`). FP16 and BF16 are the FP32-accumulate rates (what torch's
# matmuls use). FP64 and AMD's FP32 are the tensor-core / matrix-core rates. AMD quotes dense.
BUILTIN_PEAKS: tuple[PeakSpec, ...] = (
    PeakSpec(
        r"\bH100\b.*\bPCIe\b",
        "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe)",
        {"fp64": 51e12, "fp32": 51e12, "tf32": _dense(756), "bf16": _dense(1513),
         "fp16": _dense(1513), "fp8": _dense(3026)},
        2.0e12,
        114,
    ),
    PeakSpec(
        r"\bH100 NVL\b",
        "NVIDIA H100 Tensor Core GPU datasheet (H100 NVL)",
        {"fp64": 60e12, "fp32": 60e12, "tf32": _dense(835), "bf16": _dense(1671),
         "fp16": _dense(1671), "fp8": _dense(3341)},
        3.9e12,
        132,
    ),
    PeakSpec(
        r"\bH100\b",  # "NVIDIA H100 80GB HBM3" is the SXM5 board
        "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM)",
        {"fp64": 67e12, "fp32": 67e12, "tf32": _dense(989), "bf16": _dense(1979),
         "fp16": _dense(1979), "fp8": _dense(3958)},
        3.35e12,
        132,
    ),
    PeakSpec(
        r"\bH200 NVL\b",
        "NVIDIA H200 Tensor Core GPU datasheet (H200 NVL)",
        {"fp64": 60e12, "fp32": 60e12, "tf32": _dense(835), "bf16": _dense(1671),
         "fp16": _dense(1671), "fp8": _dense(3341)},
        4.8e12,
        132,
    ),
    PeakSpec(
        r"\bH200\b",
        "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM)",
        {"fp64": 67e12, "fp32": 67e12, "tf32": _dense(989), "bf16": _dense(1979),
         "fp16": _dense(1979), "fp8": _dense(3958)},
        4.8e12,
        132,
    ),
    PeakSpec(
        r"\bA100\b.*SXM4?-80GB",
        "NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM)",
        {"fp64": 19.5e12, "fp32": 19.5e12, "tf32": _dense(312), "bf16": _dense(624),
         "fp16": _dense(624)},
        2.039e12,
        108,
    ),
    PeakSpec(
        r"\bA100\b.*80GB.*PCIe",
        "NVIDIA A100 Tensor Core GPU datasheet (A100 80GB PCIe)",
        {"fp64": 19.5e12, "fp32": 19.5e12, "tf32": _dense(312), "bf16": _dense(624),
         "fp16": _dense(624)},
        1.935e12,
        108,
    ),
    PeakSpec(
        r"\bA100\b",  # the 40GB boards, SXM4 and PCIe
        "NVIDIA A100 Tensor Core GPU datasheet (A100 40GB)",
        {"fp64": 19.5e12, "fp32": 19.5e12, "tf32": _dense(312), "bf16": _dense(624),
         "fp16": _dense(624)},
        1.555e12,
        108,
    ),
    PeakSpec(
        r"\bL4\b",  # not L40/L40S
        "NVIDIA L4 Tensor Core GPU datasheet",
        {"fp32": 30.3e12, "tf32": _dense(120), "bf16": _dense(242), "fp16": _dense(242),
         "fp8": _dense(485)},
        300e9,
        58,
    ),
    PeakSpec(
        r"\bRTX 4090\b",
        "NVIDIA Ada GPU Architecture whitepaper (GeForce RTX 4090, FP32 accumulate)",
        {"fp32": 82.6e12, "tf32": _dense(165.2), "bf16": _dense(330.4), "fp16": _dense(330.4),
         "fp8": _dense(660.6)},
        1008e9,
        128,
    ),
    PeakSpec(
        r"\bMI250X?\b",  # torch sees each of the two GCDs: it gets half (110 of 220 CUs)
        "AMD Instinct MI250X accelerator datasheet",
        {"fp64": 95.7e12, "fp32": 95.7e12, "bf16": 383e12, "fp16": 383e12},
        3.2768e12,
        220,
    ),
    PeakSpec(
        r"\bMI300X\b",
        "AMD Instinct MI300X accelerator datasheet",
        {"fp64": 163.4e12, "fp32": 163.4e12, "tf32": 653.7e12, "bf16": 1307.4e12,
         "fp16": 1307.4e12, "fp8": 2614.9e12},
        5.3e12,
        304,
    ),
)  # fmt: skip


def canonical_dtype(dtype: object) -> str:
    """The peak-table key ("bf16", "fp32", ...) for a torch.dtype or a name such as "bfloat16"."""
    text = str(dtype).strip().lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(text)
    if key is None:
        raise ValueError(
            f"hw_benchmark: unknown dtype {dtype!r}; give a torch.dtype or one of "
            f"{', '.join(sorted(_DTYPE_ALIASES))}"
        )
    return key


def parse_peak_lines(lines: Sequence[str]) -> tuple[PeakSpec, ...]:
    """Parse ini ``hw_peak_flops`` lines; a bad line is a usage error naming it and the form."""
    specs = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, assignments = line.rpartition(":")
        name = name.strip().strip("\"'")
        if not sep:
            raise _peak_error(raw, "no ':' between the device name and the values")
        if not name or not assignments.strip():
            raise _peak_error(raw, "a device name and at least one value are needed")
        flops: dict[str, float] = {}
        bandwidth: float | None = None
        for assignment in assignments.split(","):
            key, eq, value_text = assignment.partition("=")
            key = key.strip().lower()
            if not eq or key not in (*DTYPE_KEYS, BANDWIDTH_KEY):
                raise _peak_error(raw, f"bad entry {assignment.strip()!r}")
            try:
                value = float(value_text.strip().strip("\"'"))
            except ValueError:
                raise _peak_error(raw, f"{value_text.strip()!r} is not a number") from None
            if not math.isfinite(value) or value <= 0:
                raise _peak_error(raw, f"{value_text.strip()!r} is not a positive number")
            if key == BANDWIDTH_KEY:
                bandwidth = value
            else:
                flops[key] = value
        specs.append(
            PeakSpec(name, f"ini hw_peak_flops: {line}", flops, bandwidth, None, regex=False)
        )
    return tuple(specs)


def _peak_error(line: str, problem: str) -> pytest.UsageError:
    return pytest.UsageError(
        f"pytest-hwbench: ini hw_peak_flops line {line.strip()!r}: {problem}; "
        f"expected {_PEAK_LINE_FORM}"
    )


def find_peak(
    peaks: Sequence[PeakSpec], device_name: str, compute_units: int | None, key: str
) -> tuple[float, str] | None:
    """The peak (per second) of `key` (a dtype key or "bandwidth") for this device, and its source.

    Ini entries come first, unscaled; then the built-in table, scaled to the device's SMs/CUs.
    """
    for spec in (*peaks, *BUILTIN_PEAKS):
        if not spec.matches(device_name):
            continue
        value = spec.bandwidth_bytes_per_s if key == BANDWIDTH_KEY else spec.flops_per_s.get(key)
        if value is None:
            continue
        share = spec.scale(compute_units)
        source = spec.source
        if share != 1.0:
            source += f", scaled to {compute_units} of {spec.compute_units} compute units"
        return value * share, source
    return None


@dataclasses.dataclass(frozen=True)
class _Work:
    """What one call does, as the user said: FLOPs, bytes moved, and the dtype computed in."""

    flops: float | None
    bytes_moved: float | None
    dtype: str | None

    @classmethod
    def from_arguments(cls, flops: object, bytes_moved: object, dtype: object) -> _Work:
        if dtype is not None and flops is None:
            raise TypeError(
                "hw_benchmark: dtype= only picks the peak that flops= is compared with; to pass "
                "dtype to the benchmarked function, use hw_benchmark.pedantic(fn, "
                "kwargs={'dtype': ...}) or functools.partial"
            )
        return cls(
            _positive("flops", flops),
            _positive("bytes_moved", bytes_moved),
            None if dtype is None else canonical_dtype(dtype),
        )

    def figures(
        self,
        time_s: float | None,
        device_name: str | None,
        compute_units: int | None,
        peaks: Sequence[PeakSpec],
    ) -> dict[str, Any]:
        """Achieved rates over `time_s` and, where the device's peak is known, their fraction."""
        out: dict[str, Any] = {}
        timed = time_s is not None and time_s > 0
        if self.flops is not None:
            out["flops"] = self.flops
            if self.dtype is not None:
                out["dtype"] = self.dtype
            if timed:
                assert time_s is not None
                out["flops_per_s"] = self.flops / time_s
                peak = None
                if self.dtype is not None:
                    peak = find_peak(peaks, device_name or "", compute_units, self.dtype)
                if peak is not None:
                    out["peak_flops_per_s"] = peak[0]
                    out["fraction_of_peak_flops"] = out["flops_per_s"] / peak[0]
                    out["peak_flops_source"] = peak[1]
        if self.bytes_moved is not None:
            out["bytes_moved"] = self.bytes_moved
            if timed:
                assert time_s is not None
                out["bytes_per_s"] = self.bytes_moved / time_s
                peak = find_peak(peaks, device_name or "", compute_units, BANDWIDTH_KEY)
                if peak is not None:
                    out["peak_bandwidth_bytes_per_s"] = peak[0]
                    out["fraction_of_peak_bandwidth"] = out["bytes_per_s"] / peak[0]
                    out["peak_bandwidth_source"] = peak[1]
        if out and timed:
            out["throughput_time"] = THROUGHPUT_TIME
        return out


def _positive(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"hw_benchmark: {name}= must be a number per call, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"hw_benchmark: {name}= must be a positive number per call, got {value!r}")
    return float(value)


# -- options ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings:
    """The ini settings of ``hw_benchmark``, checked at start-up, and whether timing is possible."""

    peaks: tuple[PeakSpec, ...]
    warmup_rounds: int
    benchmark_plugin: bool


def benchmark_settings(config: pytest.Config, options: HwbenchOptions) -> BenchmarkSettings:
    """The run's ``hw_benchmark`` settings, built on first use (the ini was checked at start)."""
    settings = config.stash.get(_settings_key, None)
    if settings is None:
        settings = BenchmarkSettings(
            peaks=parse_peak_lines(config.getini("hw_peak_flops")),
            warmup_rounds=options.benchmark_warmup,
            benchmark_plugin=benchmark_plugin_loaded(config),
        )
        config.stash[_settings_key] = settings
    return settings


# -- the clock -------------------------------------------------------------------------------------


class _EventClock:
    """Seconds of device time, summed from CUDA/HIP events recorded on the current stream."""

    def __init__(self, synchronize: Callable[[], None], device: torch.device) -> None:
        import torch

        self._cuda: Any = torch.cuda  # Event is untyped
        self._device = device
        self._synchronize = synchronize
        self._seconds = 0.0
        # A first pair proves events work here before any timing trusts them.
        self._last = self._record()
        probe = self._record()
        self._synchronize()
        float(self._last.elapsed_time(probe))
        self._last = probe

    def _record(self) -> Any:
        event = self._cuda.Event(enable_timing=True)
        event.record(self._cuda.current_stream(self._device))
        return event

    def read(self) -> float:
        event = self._record()
        self._synchronize()  # every stream of the device, not only the event's
        # Summing short intervals keeps float32 milliseconds precise over a long session.
        self._seconds += float(self._last.elapsed_time(event)) / 1e3
        self._last = event
        return self._seconds


class DeviceTimer:
    """The clock pytest-benchmark reads around each round: it waits for the device first.

    Bound to a CUDA or ROCm device it reads CUDA events when they work there; otherwise it
    synchronizes the device through its backend and reads `base` (perf_counter by default).
    """

    __name__: str

    def __init__(self, base: Callable[[], float] = time.perf_counter) -> None:
        self.base = base
        #: How readings are taken: "cuda_events", "synchronize+perf_counter", or the bare clock.
        self.kind = _callable_name(base)
        #: Why events were not used where they were wanted (None: used, or not wanted).
        self.fallback_reason: str | None = None
        self._synchronize: Callable[[], None] | None = None
        self._events: _EventClock | None = None
        self.__name__ = f"hwbench_{self.kind}"  # pytest-benchmark's JSON names the timer so

    def bind(self, backend: HardwareBackend, device: torch.device, *, events: bool) -> None:
        """Wait for `device` through `backend` at every reading; try CUDA events if `events`."""
        from pytest_hwbench.hardware.base import HardwareBackend

        if type(backend).synchronize is HardwareBackend.synchronize:
            return  # nothing is ever queued (the host): the bare clock, without a call per reading
        self._synchronize = functools.partial(backend.synchronize, device)
        self.kind = f"synchronize+{self.kind}"
        if events:
            try:
                self._events = _EventClock(self._synchronize, device)
            except Exception as exc:
                self.fallback_reason = (
                    f"CUDA events do not work here ({type(exc).__name__}: {exc}); timed with "
                    f"{self.kind}"
                )
            else:
                self.kind = "cuda_events"
        self.__name__ = f"hwbench_{self.kind}"

    def unbind(self) -> None:
        """Drop the device (pytest-benchmark keeps timers for the session)."""
        self._synchronize = None
        self._events = None

    def __call__(self) -> float:
        if self._events is not None:
            return self._events.read()
        if self._synchronize is not None:
            self._synchronize()
        return self.base()

    # pytest-benchmark caches each timer's precision in a dict: equal timers share one entry.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceTimer):
            return NotImplemented
        return (self.kind, self.base) == (other.kind, other.base)

    def __hash__(self) -> int:
        return hash((DeviceTimer, self.kind, self.base))

    def __repr__(self) -> str:
        return f"<DeviceTimer {self.kind}>"


def _callable_name(function: Callable[..., Any]) -> str:
    return str(getattr(function, "__name__", None) or repr(function))


def _load_callable(dotted: str) -> Callable[[], float]:
    """The function named "module.attr" (as ``--benchmark-timer`` takes it)."""
    module, _, attr = dotted.rpartition(".")
    function: Callable[[], float] = getattr(importlib.import_module(module), attr)
    return function


# -- the fixture -----------------------------------------------------------------------------------


class _Aborted(Exception):
    """Hands pytest-benchmark's fixture the failure of a test that never reached it."""


@dataclasses.dataclass(frozen=True)
class _Untimed:
    """Why a run has no timings, and the warning to record when the user likely wanted them."""

    reason: str
    warning: str | None = None


class HwBenchmark:
    """What ``hw_benchmark`` gives a test: pytest-benchmark's calls, timed on the test's device.

    ``hw_benchmark(fn, *args, **kwargs)`` and ``hw_benchmark.pedantic(fn, ...)`` return fn's
    result. Keywords ``flops``, ``bytes_moved`` and ``dtype`` are ours and never reach fn.
    """

    def __init__(
        self,
        *,
        item: pytest.Item,
        session: HwbenchSession,
        settings: BenchmarkSettings,
        backend: HardwareBackend,
        device: torch.device,
        benchmark: Any | None,
        timer: DeviceTimer | None,
        untimed: _Untimed | None,
    ) -> None:
        self.item = item
        self.session = session
        self.settings = settings
        #: The backend and `torch.device` the function is timed on.
        self.backend = backend
        self.device = device
        #: pytest-benchmark's fixture (None where that plugin is not active).
        self.benchmark = benchmark
        self.timer = timer
        self.untimed = untimed
        #: Saved with the benchmark's JSON (pytest-benchmark's own dict when it is active).
        self.extra_info: dict[str, Any] = benchmark.extra_info if benchmark is not None else {}
        #: The timing statistics (seconds per call) once the benchmark ran; None when untimed.
        self.stats: dict[str, Any] | None = None
        self._mode: str | None = None
        self._handed_over = False  # whether pytest-benchmark's fixture was called

    @property
    def timed(self) -> bool:
        """Whether calls are timed (pytest-benchmark active and enabled)."""
        return self.untimed is None

    # -- the two ways to call it -------------------------------------------------------------------

    def __call__(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        flops: float | None = None,
        bytes_moved: float | None = None,
        dtype: object = None,
        **kwargs: Any,
    ) -> T:
        """Time ``fn(*args, **kwargs)`` as ``benchmark(fn, ...)`` does, synchronized; return fn's.

        `flops` and `bytes_moved` are per call; `dtype` picks the peak FLOP/s to compare with.
        """
        self._start("hw_benchmark(...)")
        try:
            work = _Work.from_arguments(flops, bytes_moved, dtype)
            call = functools.partial(fn, *args, **kwargs)
            warmup = 0
            if self.timed:
                warmup = self.settings.warmup_rounds
                for _ in range(warmup):
                    call()
                    self.backend.synchronize(self.device)
                self._handed_over = True
                result: T = self.benchmark(fn, *args, **kwargs)  # type: ignore[misc]
                self._measure_memory(call)
            elif self.benchmark is not None:  # disabled: it calls once, untimed
                self._handed_over = True
                result = self.benchmark(self._measure_memory, call)
            else:
                result = self._measure_memory(call)
        except Exception as exc:
            self._fail_benchmark(exc)
            raise
        self._finish(work, warmup)
        return result

    def pedantic(
        self,
        target: Callable[..., T],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        setup: Callable[[], Any] | None = None,
        teardown: Callable[..., Any] | None = None,
        rounds: int = 1,
        warmup_rounds: int | None = None,
        iterations: int = 1,
        *,
        flops: float | None = None,
        bytes_moved: float | None = None,
        dtype: object = None,
    ) -> T:
        """As ``benchmark.pedantic``; `warmup_rounds` defaults to ini ``hw_benchmark_warmup``."""
        self._start("hw_benchmark.pedantic(...)")
        try:
            return self._pedantic(
                target, args, kwargs, setup, teardown, rounds, warmup_rounds, iterations,
                _Work.from_arguments(flops, bytes_moved, dtype),
            )  # fmt: skip
        except Exception as exc:
            self._fail_benchmark(exc)
            raise

    def _pedantic(
        self,
        target: Callable[..., T],
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        setup: Callable[[], Any] | None,
        teardown: Callable[..., Any] | None,
        rounds: int,
        warmup_rounds: int | None,
        iterations: int,
        work: _Work,
    ) -> T:
        warmup = self.settings.warmup_rounds if warmup_rounds is None else warmup_rounds
        _check_pedantic(rounds, warmup, iterations, setup)
        options: dict[str, Any] = {
            "args": tuple(args),
            "kwargs": dict(kwargs or {}),
            "setup": setup,
            "teardown": teardown,
            "rounds": rounds,
            "warmup_rounds": warmup,
            "iterations": iterations,
        }
        if self.timed:
            self._handed_over = True
            result: T = self.benchmark.pedantic(target, **options)  # type: ignore[union-attr]
            call_args, call_kwargs = _arguments(setup, options["args"], options["kwargs"])
            self._measure_memory(functools.partial(target, *call_args, **call_kwargs))
            if teardown is not None:
                teardown(*call_args, **call_kwargs)
        else:
            warmup = 0

            def measured(*call_args: Any, **call_kwargs: Any) -> T:
                return self._measure_memory(functools.partial(target, *call_args, **call_kwargs))

            if self.benchmark is not None:  # disabled: setup, one call, no teardown
                self._handed_over = True
                result = self.benchmark.pedantic(measured, **options)
            else:  # the same, without pytest-benchmark
                call_args, call_kwargs = _arguments(setup, options["args"], options["kwargs"])
                result = measured(*call_args, **call_kwargs)
        self._finish(work, warmup)
        return result

    # -- what both do ------------------------------------------------------------------------------

    def _start(self, mode: str) -> None:
        if self._mode is not None:
            raise RuntimeError(
                f"hw_benchmark can only be used once per test; it was used as {self._mode}"
            )
        self._mode = mode

    def _fail_benchmark(self, exc: Exception) -> None:
        """Let pytest-benchmark's fixture fail with `exc` if it was not called yet.

        Otherwise it sees an unused fixture and warns, on top of the test's real error.
        """
        if self.benchmark is None or self._handed_over:
            return
        self._handed_over = True

        def fail() -> None:
            raise _Aborted(f"hw_benchmark failed before timing: {exc!r}")

        with contextlib.suppress(_Aborted):
            self.benchmark.pedantic(fail)  # marks its result as an error, excluded from JSON

    def _measure_memory(self, call: Callable[[], T]) -> T:
        """Run `call` once under a memory metric; its peaks go to `extra_info`."""
        item, session = self.item, self.session
        if session.running_metric(item) is not None:  # memory_profile or the call wrapper does
            metric = session.create_metric(item)
            metric.start()
            try:
                result = call()
            finally:
                metric.stop()
        else:  # this call is the test's memory measurement: report entry, limits, junitxml
            metric = session.start_metric(item)
            try:
                result = call()
            finally:
                session.finish_metric(item)
        series = metric.get_metrics()["series"]
        self.extra_info["peak_bytes"] = {n: s["peak_bytes"] for n, s in series.items()}
        self.extra_info["peak_delta_bytes"] = {n: s["peak_delta_bytes"] for n, s in series.items()}
        self.extra_info["exact_peak"] = {n: s["exact_peak"] for n, s in series.items()}
        return result

    def _device_identity(self) -> tuple[str | None, int | None]:
        index = getattr(self.device, "index", None)
        try:
            properties = self.backend.properties(index if isinstance(index, int) else 0)
        except Exception:  # a backend that cannot describe itself still gets timed
            return None, None
        return properties.name, properties.multiprocessor_count

    def _finish(self, work: _Work, warmup: int) -> None:
        device_name, compute_units = self._device_identity()
        info = self.extra_info
        info["device"] = str(self.device)
        info["platform"] = self.backend.name
        info["device_name"] = device_name
        record: dict[str, Any] = {"timed": self.timed, "unit": "seconds"}
        warnings: list[str] = []
        if self.timed and self.timer is not None:
            stats = _timing_stats(self.benchmark)
            self.stats = stats
            record.update(stats)
            info["timer"] = record["timer"] = self.timer.kind
            if self.timer.fallback_reason is not None:
                info["timer_note"] = record["timer_note"] = self.timer.fallback_reason
            info["warmup_rounds"] = record["warmup_rounds"] = warmup
        else:
            assert self.untimed is not None
            info["timer"] = record["timer"] = None
            record["reason"] = self.untimed.reason
            if self.untimed.warning is not None:
                warnings.append(self.untimed.warning)
        median = self.stats["median"] if self.stats else None
        figures = work.figures(median, device_name, compute_units, self.settings.peaks)
        info.update(figures)
        record["throughput"] = figures or None
        record["warnings"] = warnings
        self.item.stash[benchmark_key] = record


def _timing_stats(benchmark: Any) -> dict[str, Any]:
    """Seconds per call over the rounds pytest-benchmark ran (its ``stats`` object)."""
    metadata = benchmark.stats
    stats = metadata.stats
    return {
        "min": float(stats.min),
        "max": float(stats.max),
        "mean": float(stats.mean),
        "median": float(stats.median),
        "stddev": float(stats.stddev),
        "rounds": int(stats.rounds),
        "iterations": int(metadata.iterations),
    }


def _check_pedantic(
    rounds: object, warmup: object, iterations: object, setup: object | None
) -> None:
    """pytest-benchmark's checks of pedantic's arguments, also where it is not running."""
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError("Must have positive int for `iterations`.")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError("Must have positive int for `rounds`.")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError("Must have positive int for `warmup_rounds`.")
    if iterations > 1 and setup:
        raise ValueError("Can't use more than 1 `iterations` with a `setup` function.")


def _arguments(
    setup: Callable[[], Any] | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of one call: what `setup` returns, if anything, else `args` and `kwargs`."""
    if setup is not None:
        produced = setup()
        if produced:
            if args or kwargs:
                raise TypeError("Can't use `args` or `kwargs` if `setup` returns the arguments.")
            new_args, new_kwargs = produced
            return tuple(new_args), dict(new_kwargs)
    return args, kwargs


def _untimed_reason(config: pytest.Config) -> _Untimed:
    """Why pytest-benchmark's fixture is disabled in this process."""
    disabled_by_user = bool(config.getoption("benchmark_disable", False)) and not bool(
        config.getoption("benchmark_enable", False)
    )
    if disabled_by_user:
        return _Untimed("--benchmark-disable")
    if hasattr(config, "workerinput") or os.environ.get("PYTEST_XDIST_WORKER"):
        reason = "pytest-benchmark disables itself under pytest-xdist"
        return _Untimed(
            reason,
            f"timings were not collected: {reason} (-n); memory was measured. Run without -n "
            "(or -n 0) to time",
        )
    return _Untimed("pytest-benchmark disabled benchmarks (see its warning)")


def _install_timer(item: pytest.Item, config: pytest.Config) -> DeviceTimer:
    """Give `item` a closest `benchmark` marker whose timer is a `DeviceTimer`.

    The options of the marker it had and the ``--benchmark-timer`` clock are kept.
    """
    existing = item.get_closest_marker(BENCHMARK_FIXTURE)
    options: dict[str, Any] = dict(existing.kwargs) if existing is not None else {}
    base = options.get("timer")
    if base is None:
        base = _load_callable(str(config.getoption("benchmark_timer", "time.perf_counter")))
    timer = DeviceTimer(base)
    options["timer"] = timer
    item.add_marker(pytest.mark.benchmark(**options), append=False)  # closest: read first
    return timer


def hw_benchmark_fixture(
    request: pytest.FixtureRequest, session: HwbenchSession
) -> Iterator[HwBenchmark]:
    """Set up ``hw_benchmark`` for `request`'s test; the plugin's fixture yields from this."""
    item = request.node
    assert isinstance(item, pytest.Item)
    config = request.config
    settings = benchmark_settings(config, session.options)
    if item.stash.get(_conflict_key, False):
        pytest.fail(
            f"{item.nodeid}: uses both hw_benchmark and pytest-benchmark's benchmark fixture "
            "(directly or through another fixture); a test can time one thing: use hw_benchmark",
            pytrace=False,
        )
    backend = session.registry.get(session.platform_of(item))
    if "hw_device" in getattr(item, "fixturenames", ()):
        device = request.getfixturevalue("hw_device")
    else:
        device = backend.initialize(0, strict=True)
    benchmark: Any | None = None
    timer: DeviceTimer | None = None
    untimed: _Untimed | None = None
    if settings.benchmark_plugin:
        timer = _install_timer(item, config)
        benchmark = request.getfixturevalue(BENCHMARK_FIXTURE)  # may skip (--benchmark-skip)
        if benchmark.disabled:
            untimed = _untimed_reason(config)
        else:
            from pytest_hwbench.hardware._torch_cuda import TorchCudaBackend

            timer.bind(backend, device, events=isinstance(backend, TorchCudaBackend))
    else:
        untimed = _Untimed("pytest-benchmark is not active (not installed, or -p no:benchmark)")
    bench = HwBenchmark(
        item=item,
        session=session,
        settings=settings,
        backend=backend,
        device=device,
        benchmark=benchmark,
        timer=timer,
        untimed=untimed,
    )
    try:
        yield bench
    finally:
        if timer is not None:
            timer.unbind()


# -- hooks that exist only with pytest-benchmark ---------------------------------------------------


def require_benchmark_fixture(items: list[pytest.Item]) -> None:
    """Make `items` (they use hw_benchmark) benchmark tests to pytest-benchmark (--benchmark-only).

    Called before pytest-benchmark sorts tests, and only where its plugin is loaded.
    """
    for item in items:
        fixturenames = getattr(item, "fixturenames", ())
        if BENCHMARK_FIXTURE in fixturenames:
            item.stash[_conflict_key] = True
            continue
        # A new list: parametrized items share the one pytest made.
        item.fixturenames = [*fixturenames, BENCHMARK_FIXTURE]  # type: ignore[attr-defined]


def write_untimed_summary(terminalreporter: Any, entries: list[dict[str, Any]]) -> None:
    """Say which hw_benchmark tests ran without timings, and why."""
    untimed: dict[str, list[str]] = {}
    for entry in entries:  # workers' tests too, under xdist
        for warning in (entry.get("benchmark") or {}).get("warnings") or ():
            untimed.setdefault(str(warning), []).append(entry["nodeid"])
    if not untimed:
        return
    terminalreporter.write_sep("-", "hwbench: benchmarks without timings")
    for warning, nodeids in untimed.items():
        count = len(nodeids)
        terminalreporter.write_line(f"{count} test{'s' if count != 1 else ''}: {warning}")


def update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any], registry: HardwareRegistry
) -> None:
    """Add the accelerators and torch build, so --benchmark-compare flags another GPU."""
    session = getattr(config, "_benchmarksession", None)
    if getattr(session, "disabled", False) or config.pluginmanager.has_plugin("dsession"):
        return  # nothing is timed here (an xdist controller must never import torch)
    machine_info["hwbench"] = accelerator_inventory(registry)


def accelerator_inventory(registry: HardwareRegistry) -> dict[str, Any]:
    """The torch build and every visible device's identity (what makes timings comparable)."""
    import torch

    devices: list[dict[str, Any]] = []
    for backend in registry:
        if not backend.is_available():
            continue
        for index in range(backend.device_count()):
            try:
                props = backend.properties(index)
            except Exception as exc:
                devices.append({"platform": backend.name, "index": index, "error": str(exc)})
                continue
            devices.append(
                {
                    "platform": backend.name,
                    "index": index,
                    "name": props.name,
                    "vendor": props.vendor,
                    "total_memory_bytes": props.total_memory_bytes,
                    "compute_capability": props.compute_capability,
                    "multiprocessor_count": props.multiprocessor_count,
                    "driver_version": props.driver_version,
                    "runtime_version": props.runtime_version,
                }
            )
    return {
        "torch": {
            "version": str(torch.__version__),
            "cuda": torch.version.cuda,
            "hip": getattr(torch.version, "hip", None),
        },
        "devices": devices,
    }
