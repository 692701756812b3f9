"""Measuring tests: metrics built by the factory, the RSS peak probe, memory limits, leak checks.

`Measurer` holds the run's measuring state; `CallHooks` (every measured test's call) and
`GuardHooks` (setup and teardown, for leak checks and absent hardware) are the hooks the session
registers only when a run needs them. The call hook is the hot path of ``--hw-profile-all``: it
reads the probe inline and touches only what `Measurer` offers for it.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwbench.names import (
    FAILURE_KEY,
    HOST_PLATFORM,
    MEMORY_RESULT_KEY,
    STRETCH_RESULT_KEY,
)
from pytest_hwbench.plugin.summary import SummaryRow, TopRows
from pytest_hwbench.units import format_bytes

if TYPE_CHECKING:
    from pytest_hwbench.hardware.registry import HardwareRegistry
    from pytest_hwbench.metrics.memory._host import RSSPeakProbe
    from pytest_hwbench.metrics.memory.base import MemoryMetric
    from pytest_hwbench.metrics.memory.stretch import HostStretch, StretchResult
    from pytest_hwbench.metrics.memory.timeline import MemoryMark
    from pytest_hwbench.plugin.options import HwbenchOptions
    from pytest_hwbench.plugin.planning import Planner
    from pytest_hwbench.plugin.requirements import MemoryLimit

__all__ = ["CallHooks", "GuardHooks", "Measurer"]

_metric_key = pytest.StashKey["MemoryMetric"]()
_leak_baseline_key = pytest.StashKey[tuple["MemoryMetric", int]]()
#: The platform whose unreadable memory the host's metric stands in for, in a test where it does.
_stands_in_key = pytest.StashKey[str]()


class Measurer:
    """Starts and stops each test's metric, keeps its results, and enforces limits and leaks."""

    def __init__(
        self,
        config: pytest.Config,
        options: HwbenchOptions,
        planner: Planner,
        registry: Callable[[], HardwareRegistry],
        top_rows: TopRows[SummaryRow],
        on_metric_use: Callable[[], None],
    ) -> None:
        self.config = config
        self.options = options
        self.planner = planner
        self._registry = registry
        #: The terminal summary's rows of tests measured without a report entry.
        self.top_rows = top_rows
        #: Whether each test's full results (timeline included) stay for its report entry.
        self.keep_results = False
        self._on_metric_use = on_metric_use
        # No probe (nor stretch) under --hw-heap: host tests need a metric that samples the heap.
        self._probe_refused = options.heap
        self._rss_probe: RSSPeakProbe | None = None
        self._stretch: HostStretch | None = None
        #: What each platform's warm-up cost (the report's session section), by platform.
        self.warmups: dict[str, dict[str, Any]] = {}
        #: Platforms warmed up: True once with an optimizer step (see `warm_up`).
        self._warmed: dict[str, bool] = {}
        #: Whether a measured test must first look for a platform to warm up (--hw-warmup).
        self.warmup_pending = options.warmup
        if not options.rss_reset:
            from pytest_hwbench.metrics.memory._host import allow_rss_resets

            allow_rss_resets(False)
            config.add_cleanup(lambda: allow_rss_resets(True))

    # -- a clean start for each measured test ------------------------------------------------------

    def prepare(self, platform: str, *, asked: bool) -> str | None:
        """Before a test is measured on `platform`: warm the platform up, free what others left.

        `asked`: the test asked to be measured (memory_profile, a memory limit, a leak check).
        Only such a test gets the whole clean start: a full garbage collection (tens of ms once
        torch is loaded), freed heap given back to the OS, glibc's mmap threshold held, and an
        optimizer step in its platform's warm-up (see `warm_up`). A test measured only because
        of --hw-profile-all or --hw-report gets the warm-up alone: on a real suite of thousands
        of tests the rest cost ~0.8 ms a test (a trim of a torch-sized heap, and the page faults
        of memory given back and taken again). Returns a warning for the test's entry where the
        C library cannot give freed heap back.
        """
        if self.warmup_pending:
            done = self._warmed.get(platform)
            if done is None or (asked and not done):
                self.warm_up(platform, optimizer_step=asked)
        if not asked:
            return None
        from pytest_hwbench.metrics.memory._host import (
            NO_TRIM_REASON,
            heap_trimmer,
            hold_malloc_thresholds,
            release_freed_memory,
        )

        hold_malloc_thresholds()  # once a process (cached); a test asking at run time comes here
        release_freed_memory()
        return NO_TRIM_REASON if heap_trimmer() is None else None

    def hold_heap_thresholds(self) -> None:
        """Hold glibc's malloc thresholds now, before any test or warm-up frees a big block.

        For a run with host tests that ask to be measured. Held after such a free, they leave
        the heap as fragmented as that free made it: a conv net's forward then read 12-18 MiB
        from one process to the next, against 7.8 MiB held from the start
        (`hold_malloc_thresholds`). Not for runs measured only because of --hw-profile-all:
        every block of 128 KiB and more is then mapped afresh, which a suite that asked for
        nothing should not pay.
        """
        from pytest_hwbench.metrics.memory._host import hold_malloc_thresholds

        hold_malloc_thresholds()

    def warm_up(self, platform: str, *, optimizer_step: bool) -> None:
        """Run `platform`'s warm-up (`HardwareBackend.warm_up`), recording what it cost.

        Only where torch is already loaded: a run whose tests never import it is not made to.
        The optimizer step is left out until a test asks to be measured: its first call imports
        torch._dynamo (about a second and 70 MiB on a CPU), which a suite that never trains
        would pay for nothing. A warm-up that fails is recorded and never fails a test.
        """
        if "torch" not in sys.modules:
            return  # not yet: a later test may have loaded it
        from pytest_hwbench.metrics.memory._host import release_freed_memory
        from pytest_hwbench.metrics.memory.factory import MemoryMetricFactory

        facts = self.warmups.setdefault(platform, {"seconds": 0.0})
        self._warmed[platform] = optimizer_step
        start = time.perf_counter()
        try:
            backend = self._registry().get(platform)
            if not backend.is_available():
                facts["skipped"] = backend.unavailable_reason()
                self._warmed[platform] = True  # nothing to warm, now or later
                return
            reader = MemoryMetricFactory.create(backend)
            before = reader.read_current()
            backend.warm_up(0, optimizer_step=optimizer_step)
            # What it left resident, not what it freed. Its garbage is young: a full collection
            # would cost ~100 ms more on a torch-sized heap, for nothing of the warm-up's.
            release_freed_memory(young_only=True)
            after = reader.read_current()
            retained = facts.setdefault("retained_bytes", {})
            for name in after.keys() & before.keys():
                retained[name] = retained.get(name, 0) + after[name] - before[name]
            facts["optimizer_step"] = optimizer_step
        except Exception as exc:  # a broken platform must not cost the run its tests
            facts["error"] = f"{type(exc).__name__}: {exc}"
            self._warmed[platform] = True  # not again
        finally:
            facts["seconds"] = round(facts["seconds"] + time.perf_counter() - start, 4)

    def session_facts(self) -> dict[str, Any]:
        """What the report's session section says of measuring: warm-ups, the process's peak."""
        from pytest_hwbench.metrics.memory._host import process_peak_rss_bytes

        facts: dict[str, Any] = {"rss_reset": "on" if self.options.rss_reset else "off"}
        peak = process_peak_rss_bytes()
        if peak is not None:
            facts["process_peak_rss_bytes"] = peak
        if self.warmups:
            facts["warmup"] = self.warmups
        return facts

    # -- metrics -----------------------------------------------------------------------------------

    def create(self, item: pytest.Item) -> MemoryMetric:
        """A new, unstarted metric for `item`'s device, with the run's sampling options."""
        from pytest_hwbench.metrics.memory.factory import MemoryMetricFactory

        backend = self._registry().get(self.planner.platform_of(item))
        options = self.options
        extra = {"include_heap": True} if options.heap and backend.is_host else {}
        return MemoryMetricFactory.create(
            backend, interval=options.interval_s, sampler=options.sampler, **extra
        )

    def running(self, item: pytest.Item) -> MemoryMetric | None:
        """The metric measuring `item` right now (memory_profile or the call wrapper's), if any."""
        return item.stash.get(_metric_key, None)

    def start(self, item: pytest.Item) -> MemoryMetric:
        """Start measuring `item` (for the memory_profile fixture and the call wrapper)."""
        self._on_metric_use()  # a test that asked for the fixture at run time reports too
        metric = self.create(item)
        warning = self.prepare(self.planner.platform_of(item), asked=True)
        try:
            metric.start()
        except Exception as exc:
            # Measuring never fails a test: a device whose memory cannot be read is measured
            # on the host, and the entry says why.
            failed = metric
            metric = self._host_metric()
            metric.start()
            metric.warnings.append(
                f"{failed.platform} memory could not be measured ({type(exc).__name__}: {exc}): "
                "measured on the host only"
            )
            item.stash[_stands_in_key] = failed.platform
        if warning is not None:
            metric.warnings.append(warning)
        item.stash[_metric_key] = metric
        return metric

    def _host_metric(self) -> MemoryMetric:
        from pytest_hwbench.metrics.memory.factory import MemoryMetricFactory

        options = self.options
        host = next(b for b in self._registry() if b.is_host)
        return MemoryMetricFactory.create(
            host, interval=options.interval_s, sampler=options.sampler
        )

    def finish(self, item: pytest.Item) -> tuple[MemoryMetric, dict[str, Any]] | None:
        """Stop `item`'s metric; keep its results for the report, summary and user_properties.

        Returns the metric and its results (None when nothing measured `item`).
        """
        metric = item.stash.get(_metric_key, None)
        if metric is None:
            return None
        del item.stash[_metric_key]
        stands_in = item.stash.get(_stands_in_key, None)
        if metric.state.value == "running":
            try:
                metrics = metric.stop()
            except Exception as exc:
                # The device stopped answering mid-test: what was measured until then stands,
                # and the test's outcome is its own.
                metric.warnings.append(
                    f"the last {metric.platform} memory reading failed ({type(exc).__name__}: "
                    f"{exc}): the results end at the reading before"
                )
                metrics = metric.get_metrics()
        else:
            metrics = metric.get_metrics()
        primary = metric.primary_series
        # The host's numbers, where they stood in for an unreadable device, are the host's.
        platform = self.planner.platform_of(item) if stands_in is None else metric.platform
        _add_peak_properties(item, metrics["series"])
        scope = primary_scope(metrics, primary)
        if scope is not None:
            metrics["primary_scope"] = scope["label"]
        if self.keep_results:
            # The device's properties are the machine inventory's: once a run, not per test.
            metrics["device"] = {k: v for k, v in metrics["device"].items() if k != "properties"}
            del metrics["running"]  # always false once stopped
            metrics["platform"] = platform
            metrics["primary_series"] = primary
            metrics["timeline"] = metric.get_memory_timeline().to_dict()
            item.stash[MEMORY_RESULT_KEY] = metrics
        else:
            # No report gathers entries: keep one summary row, not the metrics and timeline.
            # Thousands of kept dicts and lists would make pytest's own GC passes slower.
            stats = (scope or metrics)["series"].get(primary)
            if stats is not None:
                self.top_rows.add(SummaryRow.of(platform, primary, stats, item.nodeid))
        return metric, metrics

    # -- the RSS peak probe ------------------------------------------------------------------------

    def rss_probe(self) -> RSSPeakProbe | None:
        """The run's RSS peak probe, opened on first use; None off Linux or once refused."""
        probe = self._rss_probe
        if probe is None and not self._probe_refused:
            from pytest_hwbench.metrics.memory._host import RSSPeakProbe

            probe = self._rss_probe = RSSPeakProbe.open()
            if probe is None:
                self._probe_refused = True
            else:
                self.config.add_cleanup(probe.close)
        return probe

    def probe_refused(self) -> None:
        """A probe was refused (a needed VmHWM reset was): measure with metrics from now on."""
        self._probe_refused = True
        probe, self._rss_probe = self._rss_probe, None
        stretch, self._stretch = self._stretch, None
        if stretch is not None:
            stretch.close()
        if probe is not None:
            probe.close()

    def host_stretch(self) -> HostStretch | None:
        """The run's `HostStretch` (the probe's, for reports); None where there is no probe."""
        stretch = self._stretch
        if stretch is None:
            probe = self.rss_probe()
            if probe is None:
                return None
            from pytest_hwbench.metrics.memory.stretch import HostStretch
            from pytest_hwbench.metrics.sampler import DEFAULT_INTERVAL_S

            host = self._registry().get(HOST_PLATFORM)
            device = {"platform": host.name, "index": 0, "device": host.device_label(0)}
            interval_s = self.options.interval_s or DEFAULT_INTERVAL_S
            stretch = self._stretch = HostStretch(probe, interval_s, device)
            self.config.add_cleanup(stretch.close)
        return stretch

    def keep_stretch(self, item: pytest.Item, measured: StretchResult) -> None:
        """Keep a stretch's results for `item`'s entry and its junitxml properties."""
        properties = item.user_properties
        properties.append(("hw_peak_bytes:rss", measured.peak_bytes))
        properties.append(("hw_peak_delta_bytes:rss", measured.peak_delta_bytes))
        item.stash[STRETCH_RESULT_KEY] = measured

    # -- limits and leaks --------------------------------------------------------------------------

    def check_limit(
        self,
        item: pytest.Item,
        limit: MemoryLimit,
        platform: str,
        finished: tuple[MemoryMetric, dict[str, Any]] | None,
    ) -> None:
        """Fail `item` if its measured peak growth exceeds `limit` (see `enforce_limit`)."""
        running = item.stash.get(_metric_key, None)
        if running is not None:  # memory_profile's metric, stopped at teardown
            metric, metrics = running, running.get_metrics()
        elif finished is not None:
            metric, metrics = finished
        else:
            return
        if item.stash.get(_stands_in_key, None) is not None:
            # The host stood in for the device: its growth is not what the limit is about.
            note = f"memory limit on {platform} not checked: its memory could not be read"
            if note not in metric.warnings:
                metric.warnings.append(note)
                # A stopped metric's results are already taken: they get the note too.
                if note not in metrics["warnings"]:
                    metrics["warnings"].append(note)
            return
        primary = metric.primary_series
        scope = primary_scope(metrics, primary)
        stats = (scope or metrics)["series"].get(primary)
        if stats is not None:
            marks = metric.get_memory_timeline().marks
            where = None if scope is None else scope["label"]
            self.enforce_limit(item, limit, platform, primary, stats, marks, scope=where)

    def enforce_limit(
        self,
        item: pytest.Item,
        limit: MemoryLimit,
        platform: str,
        primary: str,
        stats: Mapping[str, Any],
        marks: Sequence[MemoryMark],
        *,
        scope: str | None = None,
        who: str = "",
    ) -> None:
        """Fail the test when its peak growth on `platform` exceeds `limit`, showing the marks.

        `scope`: the ``measure()`` block the growth is of, when the test measured blocks;
        `who`: the process that grew, when not the test's own ("rank 1 of 2").
        """
        limit_bytes = limit.for_platform(platform)
        if limit_bytes is None or stats["peak_delta_bytes"] <= limit_bytes:
            return
        where = "" if scope is None else f" in measure({scope!r})"
        lines = [
            f"{who}: " * bool(who) + f"memory limit exceeded on {platform}{where}: peak growth "
            f"{format_bytes(stats['peak_delta_bytes'])} > limit {format_bytes(limit_bytes)} "
            f"({limit.source})",
            f"  series {primary!r}: start {format_bytes(stats['start_bytes'])}, "
            f"peak {format_bytes(stats['peak_bytes'])} "
            f"({'exact' if stats['exact_peak'] else 'sampled'})",
        ]
        for mark in marks:
            value = mark.values.get(primary)
            shown = format_bytes(value - stats["start_bytes"], signed=True) if value else "?"
            lines.append(f"  mark {mark.label!r} at {mark.t:.3f}s: {shown}")
        message = "\n".join(lines)
        self.top_rows.over_limit.add(item.nodeid)
        item.stash[FAILURE_KEY] = {
            "kind": "memory_limit",
            "message": message,
            "limit_bytes": limit_bytes,
            "series": primary,
        }
        pytest.fail(message, pytrace=False)

    def setup(self, item: pytest.Item) -> None:
        """Fail tests whose hardware is absent under --hw-unavailable=fail; leak baseline."""
        plan = self.planner.plan(item)
        if plan.unmet is not None and self.options.unavailable == "fail":
            pytest.fail(
                f"required hardware unavailable (--hw-unavailable=fail): {plan.unmet}",
                pytrace=False,
            )
        if plan.leak_tolerance is not None and plan.unmet is None:
            if self.warmup_pending and not self._warmed.get(plan.platform):
                self.warm_up(plan.platform, optimizer_step=True)  # one-time costs are no leak
            metric = self.create(item)
            gc.collect()
            try:
                baseline = metric.read_current()[metric.primary_series]
            except Exception as exc:  # an unreadable device: the leak goes unchecked, said so
                _leak_unchecked(item, exc)
                return
            item.stash[_leak_baseline_key] = (metric, baseline)

    def check_leak(self, item: pytest.Item) -> None:
        """After every fixture is torn down, fail `item` if its memory grew past the tolerance."""
        baseline = item.stash.get(_leak_baseline_key, None)
        if baseline is None:
            return
        del item.stash[_leak_baseline_key]
        metric, before = baseline
        gc.collect()
        try:
            after = metric.read_current()[metric.primary_series]
        except Exception as exc:
            _leak_unchecked(item, exc)
            return
        tolerance = self.planner.plan(item).leak_tolerance or 0
        if after - before > tolerance:
            message = (
                f"memory leak on {self.planner.platform_of(item)}: {metric.primary_series!r} grew "
                f"by {format_bytes(after - before)} over the test (before "
                f"{format_bytes(before)}, after {format_bytes(after)}), tolerance "
                f"{format_bytes(tolerance)}"
            )
            item.stash[FAILURE_KEY] = {
                "kind": "leak",
                "message": message,
                "limit_bytes": tolerance,
                "series": metric.primary_series,
            }
            pytest.fail(message, pytrace=False)


def primary_scope(metrics: Mapping[str, Any], primary: str) -> Mapping[str, Any] | None:
    """Of a test's ``measure()`` blocks, the one whose `primary` series grew most (or None).

    A test that measures blocks is judged on them: its report figure and its limit.
    """
    best: Mapping[str, Any] | None = None
    for scope in metrics.get("scopes") or ():
        stats = scope["series"].get(primary)
        if stats is not None and (
            best is None or stats["peak_delta_bytes"] > best["series"][primary]["peak_delta_bytes"]
        ):
            best = scope
    return best


def _add_peak_properties(item: pytest.Item, series: Mapping[str, Mapping[str, Any]]) -> None:
    """Each series' peak and peak growth as `item`'s user properties (junitxml copies them)."""
    properties = item.user_properties
    for name, stats in series.items():
        properties.append((f"hw_peak_bytes:{name}", stats["peak_bytes"]))
        properties.append((f"hw_peak_delta_bytes:{name}", stats["peak_delta_bytes"]))


class CallHooks:
    """The per-test measuring hook, registered only when a run uses hwbench.

    pytest calls every registered hook for every test; a run that uses none of our markers,
    fixtures or options must not pay for them.
    """

    def __init__(self, measurer: Measurer) -> None:
        self.measurer = measurer

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        """Measure tests that need it but lack the fixture; enforce memory limits after the body.

        The whole path, not a ``yield from`` into the measurer: one generator a test, not two.
        """
        measurer = self.measurer
        plan = measurer.planner.plan(item)
        if plan.profile_by_hook and plan.on_host and measurer.keep_results:
            # A report keeps each test's memory: start, exact peak and end, a timeline if long.
            stretch = measurer.host_stretch()
            warning = measurer.prepare(plan.platform, asked=plan.limit is not None)
            if stretch is not None and stretch.begin():
                try:
                    result = yield
                finally:
                    measured = stretch.end()
                    if warning is not None:
                        memory = measured.to_memory()
                        memory["warnings"].append(warning)
                        measured = measured._replace(long_form=memory)
                    measurer.keep_stretch(item, measured)
                if plan.limit is not None:
                    stats = measured.to_memory()["series"]["rss"]
                    measurer.enforce_limit(item, plan.limit, plan.platform, "rss", stats, ())
                return result
            if stretch is not None:
                measurer.probe_refused()
        elif plan.profile_by_hook and plan.on_host:
            probe = measurer.rss_probe()
            measurer.prepare(plan.platform, asked=plan.limit is not None)
            if probe is not None and probe.begin():
                try:
                    result = yield
                finally:
                    # Inlined, not a method: every test runs this, with its code cold.
                    peak = probe.end()
                    start_bytes = probe.start_bytes
                    growth = peak - start_bytes
                    properties = item.user_properties
                    properties.append(("hw_peak_bytes:rss", peak))
                    properties.append(("hw_peak_delta_bytes:rss", growth))
                    top_rows = measurer.top_rows
                    platform = plan.platform
                    if top_rows.would_keep(platform, growth):
                        top_rows.add(
                            SummaryRow(platform, growth, peak, "rss", probe.exact, item.nodeid)
                        )
                if plan.limit is not None:
                    stats = {
                        "start_bytes": start_bytes,
                        "peak_bytes": peak,
                        "peak_delta_bytes": growth,
                        "exact_peak": probe.exact,
                    }
                    measurer.enforce_limit(item, plan.limit, platform, "rss", stats, ())
                return result
            if probe is not None:
                measurer.probe_refused()
        finished = None
        if plan.profile_by_hook:
            measurer.start(item)
            try:
                result = yield
            finally:
                finished = measurer.finish(item)
        else:
            result = yield
        if plan.limit is not None:
            measurer.check_limit(item, plan.limit, plan.platform, finished)
        return result


class GuardHooks:
    """Setup and teardown hooks, registered only when a run checks leaks or fails absent GPUs."""

    def __init__(self, measurer: Measurer) -> None:
        self.measurer = measurer

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """See `Measurer.setup`."""
        self.measurer.setup(item)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        """After every fixture is torn down, compare device memory with the baseline."""
        result = yield
        self.measurer.check_leak(item)
        return result


def _leak_unchecked(item: pytest.Item, exc: Exception) -> None:
    """Say in the test's properties (junitxml) why its leak tolerance was not checked."""
    item.user_properties.append(
        ("hw_leak_unchecked", f"memory could not be read ({type(exc).__name__}: {exc})")
    )
