"""The ``hw_benchmark`` fixture: pytest-benchmark timings that wait for the device, plus memory.

pytest-benchmark reads its clock at the start and end of every round. The hardware layer's
`DeviceTimer` is that clock: it synchronizes the test's device before each reading (or reads its
timing events, on CUDA and ROCm), so a round's time includes the kernels it queued, not only
their launches. Memory is measured on one extra, untimed call. Importing this module loads
neither torch nor pytest_benchmark.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_hwbench.hardware.timing import DeviceTimer, load_clock
from pytest_hwbench.names import (
    BENCHMARK_RESULT_KEY,
    DEVICE_FIXTURE,
    PYTEST_BENCHMARK_FIXTURE,
    XDIST_WORKER_ENV,
)
from pytest_hwbench.plugin.benchmark.peaks import PeakSpec, parse_peak_lines
from pytest_hwbench.plugin.benchmark.work import Work
from pytest_hwbench.plugin.options import benchmark_plugin_loaded

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.plugin.measuring import Measurer
    from pytest_hwbench.plugin.options import HwbenchOptions

__all__ = [
    "BenchmarkSettings",
    "HwBenchmark",
    "benchmark_settings",
    "hw_benchmark_fixture",
    "require_benchmark_fixture",
]

T = TypeVar("T")

_settings_key = pytest.StashKey["BenchmarkSettings"]()
_conflict_key = pytest.StashKey[bool]()


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
        measuring: Measurer,
        settings: BenchmarkSettings,
        backend: HardwareBackend,
        device: torch.device,
        benchmark: Any | None,
        timer: DeviceTimer | None,
        untimed: _Untimed | None,
    ) -> None:
        self.item = item
        self.measuring = measuring
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
            work = Work.from_arguments(flops, bytes_moved, dtype)
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
                Work.from_arguments(flops, bytes_moved, dtype),
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
        work: Work,
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
        item, measuring = self.item, self.measuring
        if measuring.running(item) is not None:  # memory_profile or the call wrapper does
            metric = measuring.create(item)
            metric.start()
            try:
                result = call()
            finally:
                metric.stop()
        else:  # this call is the test's memory measurement: report entry, limits, junitxml
            metric = measuring.start(item)
            try:
                result = call()
            finally:
                measuring.finish(item)
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

    def _finish(self, work: Work, warmup: int) -> None:
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
        self.item.stash[BENCHMARK_RESULT_KEY] = record


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
    if hasattr(config, "workerinput") or os.environ.get(XDIST_WORKER_ENV):
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
    existing = item.get_closest_marker(PYTEST_BENCHMARK_FIXTURE)
    options: dict[str, Any] = dict(existing.kwargs) if existing is not None else {}
    base = options.get("timer")
    if base is None:
        base = load_clock(str(config.getoption("benchmark_timer", "time.perf_counter")))
    timer = DeviceTimer(base)
    options["timer"] = timer
    item.add_marker(pytest.mark.benchmark(**options), append=False)  # closest: read first
    return timer


def hw_benchmark_fixture(
    request: pytest.FixtureRequest,
    measuring: Measurer,
    backend: HardwareBackend,
    options: HwbenchOptions,
) -> Iterator[HwBenchmark]:
    """Set up ``hw_benchmark`` for `request`'s test on `backend`, measured by `measuring`.

    The plugin's fixture yields from this.
    """
    item = request.node
    assert isinstance(item, pytest.Item)
    config = request.config
    settings = benchmark_settings(config, options)
    if item.stash.get(_conflict_key, False):
        pytest.fail(
            f"{item.nodeid}: uses both hw_benchmark and pytest-benchmark's benchmark fixture "
            "(directly or through another fixture); a test can time one thing: use hw_benchmark",
            pytrace=False,
        )
    if DEVICE_FIXTURE in getattr(item, "fixturenames", ()):
        device = request.getfixturevalue(DEVICE_FIXTURE)
    else:
        device = backend.initialize(0, strict=True)
    benchmark: Any | None = None
    timer: DeviceTimer | None = None
    untimed: _Untimed | None = None
    if settings.benchmark_plugin:
        timer = _install_timer(item, config)
        benchmark = request.getfixturevalue(PYTEST_BENCHMARK_FIXTURE)  # may skip (--benchmark-skip)
        if benchmark.disabled:
            untimed = _untimed_reason(config)
        else:
            timer.bind(backend, device)
    else:
        untimed = _Untimed("pytest-benchmark is not active (not installed, or -p no:benchmark)")
    bench = HwBenchmark(
        item=item,
        measuring=measuring,
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
        if PYTEST_BENCHMARK_FIXTURE in fixturenames:
            item.stash[_conflict_key] = True
            continue
        # A new list: parametrized items share the one pytest made.
        item.fixturenames = [*fixturenames, PYTEST_BENCHMARK_FIXTURE]  # type: ignore[attr-defined]
