"""The ``hw_benchmark`` fixture: pytest-benchmark timings that wait for the device, plus memory.

pytest-benchmark reads its clock at the start and end of every round. The hardware layer's
`DeviceTimer` is that clock: it synchronizes the test's device before each reading (or reads its
timing events, on CUDA and ROCm), so a round's time includes the kernels it queued, not only
their launches. Memory is measured on one extra, untimed call; under ``--hw-energy``, energy on
extra, untimed calls back to back, for at least `ENERGY_WINDOW_UPDATES` of the device counter's
updates. Importing this module loads neither torch nor pytest_benchmark.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_hwbench.hardware.timing import DeviceTimer, load_clock
from pytest_hwbench.names import (
    BENCHMARK_RESULT_KEY,
    DEVICE_FIXTURE,
    PYTEST_BENCHMARK_FIXTURE,
)
from pytest_hwbench.plugin.benchmark.driving import (
    Aborted,
    Untimed,
    call_arguments,
    check_pedantic,
    timing_stats,
    untimed_reason,
)
from pytest_hwbench.plugin.benchmark.peaks import PeakSpec, parse_peak_lines
from pytest_hwbench.plugin.benchmark.work import Work
from pytest_hwbench.plugin.options import benchmark_plugin_loaded

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.plugin.energy import EnergyMeter
    from pytest_hwbench.plugin.measuring import Measurer
    from pytest_hwbench.plugin.options import HwbenchOptions

__all__ = [
    "ENERGY_WINDOW_MIN_S",
    "ENERGY_WINDOW_UPDATES",
    "BenchmarkSettings",
    "HwBenchmark",
    "benchmark_settings",
    "hw_benchmark_fixture",
    "require_benchmark_fixture",
]

T = TypeVar("T")

#: Energy per call is measured over calls lasting at least this many updates of the device's
#: counter: a window's ends each fall up to one update off, so 20 keep that within ~5%.
ENERGY_WINDOW_UPDATES = 20
#: ...and at least this long (RAPL updates every ms: 20 updates would be over before it says much).
ENERGY_WINDOW_MIN_S = 0.1

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
        untimed: Untimed | None,
        energy: EnergyMeter | None = None,
    ) -> None:
        self.item = item
        #: The run's energy meter when it measures energy (--hw-energy): joules per call.
        self.energy = energy
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
                self._measure_energy(call)
            elif self.benchmark is not None:  # disabled: it calls once, untimed
                self._handed_over = True
                result = self.benchmark(self._measure_memory, call)
            else:
                result = self._measure_memory(call)
        except Exception as exc:
            self._fail_benchmark(exc)
            raise
        _record_results(self, work, warmup)
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
        check_pedantic(rounds, warmup, iterations, setup)
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
            call_args, call_kwargs = call_arguments(setup, options["args"], options["kwargs"])
            self._measure_memory(functools.partial(target, *call_args, **call_kwargs))
            self._measure_energy(functools.partial(target, *call_args, **call_kwargs))
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
                call_args, call_kwargs = call_arguments(setup, options["args"], options["kwargs"])
                result = measured(*call_args, **call_kwargs)
        _record_results(self, work, warmup)
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
            raise Aborted(f"hw_benchmark failed before timing: {exc!r}")

        with contextlib.suppress(Aborted):
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

    def _measure_energy(self, call: Callable[[], object]) -> None:
        """Under --hw-energy, the joules a call uses: calls back to back over a long window.

        One call is shorter than the counter's update on most devices (NVML's: 20-100 ms), so
        calls are repeated, synchronized, for `ENERGY_WINDOW_UPDATES` updates (at least
        `ENERGY_WINDOW_MIN_S`); their energy over their count is a call's. Timed rounds are
        not used: pytest-benchmark calibrates between them, and its calls are not counted.
        Counters are device-wide, idle power included: a call's figure holds the device's
        whole draw while it ran. Where there is no counter, `extra_info` says why.
        """
        meter = self.energy
        if meter is None:
            return
        metric = meter.metric(self.backend.name)  # device 0's counters: the device it times
        if isinstance(metric, str):
            self.extra_info["energy"] = {"unavailable": metric}
            return
        period = max((c.update_period_s or 0.0 for c in metric.counters), default=0.0)
        window_s = max(ENERGY_WINDOW_UPDATES * period, ENERGY_WINDOW_MIN_S)
        synchronize = self.backend.synchronize
        calls = 0
        try:
            synchronize(self.device)  # queued work of earlier calls is not this window's
            metric.start()
            deadline = time.perf_counter() + window_s
            while True:
                call()
                calls += 1
                synchronize(self.device)
                if time.perf_counter() >= deadline:
                    break
            results = metric.stop().get_metrics()
        except Exception as exc:  # a counter failing: the benchmark's timings still stand
            self.extra_info["energy"] = {"unavailable": f"reading failed ({exc!r})"}
            return
        duration = results["duration_s"]
        self.extra_info["energy"] = {
            "joules_per_call": results["total_joules"] / calls,
            "mean_watts": results["total_joules"] / duration if duration > 0 else None,
            "calls": calls,
            "window_s": round(duration, 7),
            "exact": results["exact"],
            "domains": {
                name: domain["joules"] / calls for name, domain in results["domains"].items()
            },
        }


def _device_identity(bench: HwBenchmark) -> tuple[str | None, int | None]:
    """The timed device's name and compute units (SMs, CUs), as the peaks table matches them."""
    index = getattr(bench.device, "index", None)
    try:
        properties = bench.backend.properties(index if isinstance(index, int) else 0)
    except Exception:  # a backend that cannot describe itself still gets timed
        return None, None
    return properties.name, properties.multiprocessor_count


def _record_results(bench: HwBenchmark, work: Work, warmup: int) -> None:
    """Put the run's timings and throughput in `extra_info` and the test's report entry."""
    device_name, compute_units = _device_identity(bench)
    info = bench.extra_info
    info["device"] = str(bench.device)
    info["platform"] = bench.backend.name
    info["device_name"] = device_name
    record: dict[str, Any] = {"timed": bench.timed, "unit": "seconds"}
    warnings: list[str] = []
    if bench.timed and bench.timer is not None:
        stats = timing_stats(bench.benchmark)
        bench.stats = stats
        record.update(stats)
        info["timer"] = record["timer"] = bench.timer.kind
        if bench.timer.fallback_reason is not None:
            info["timer_note"] = record["timer_note"] = bench.timer.fallback_reason
        info["warmup_rounds"] = record["warmup_rounds"] = warmup
    else:
        assert bench.untimed is not None
        info["timer"] = record["timer"] = None
        record["reason"] = bench.untimed.reason
        if bench.untimed.warning is not None:
            warnings.append(bench.untimed.warning)
    median = bench.stats["median"] if bench.stats else None
    figures = work.figures(median, device_name, compute_units, bench.settings.peaks)
    info.update(figures)
    energy = info.get("energy")
    if energy is not None:
        per_call = energy.get("joules_per_call")
        if per_call and work.flops is not None:
            energy["flops_per_joule"] = info["flops_per_joule"] = work.flops / per_call
        record["energy"] = energy
    record["throughput"] = figures or None
    record["warnings"] = warnings
    bench.item.stash[BENCHMARK_RESULT_KEY] = record


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
    energy: EnergyMeter | None = None,
) -> Iterator[HwBenchmark]:
    """Set up ``hw_benchmark`` for `request`'s test on `backend`, measured by `measuring`.

    `energy`: the run's meter, when it measures energy (joules per call). The plugin's
    fixture yields from this.
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
    untimed: Untimed | None = None
    if settings.benchmark_plugin:
        timer = _install_timer(item, config)
        benchmark = request.getfixturevalue(PYTEST_BENCHMARK_FIXTURE)  # may skip (--benchmark-skip)
        if benchmark.disabled:
            untimed = untimed_reason(config)
        else:
            timer.bind(backend, device)
    else:
        untimed = Untimed("pytest-benchmark is not active (not installed, or -p no:benchmark)")
    bench = HwBenchmark(
        item=item,
        measuring=measuring,
        settings=settings,
        backend=backend,
        device=device,
        benchmark=benchmark,
        timer=timer,
        untimed=untimed,
        energy=energy,
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
