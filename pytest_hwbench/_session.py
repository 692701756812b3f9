"""`HwbenchSession`: the one object holding the plugin's state; its methods are the hooks."""

from __future__ import annotations

import gc
import heapq
import os
import platform as platform_module
import sys
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from pytest_hwbench._options import HwbenchOptions, is_xdist_controller
from pytest_hwbench.plugin import BENCHMARK_FIXTURE, DEVICE_FIXTURE, OUR_MARKERS, PROFILE_FIXTURE
from pytest_hwbench.units import format_bytes, parse_size

if TYPE_CHECKING:
    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.hardware.registry import HardwareRegistry

    # Loaded where a marker is read: a run that only profiles memory never needs them.
    from pytest_hwbench.marks import HardwareRequirement, MemoryLimit
    from pytest_hwbench.metrics.memory._host import RSSPeakProbe
    from pytest_hwbench.metrics.memory.base import MemoryMetric
    from pytest_hwbench.metrics.memory.timeline import MemoryMark
    from pytest_hwbench.report.writer import ReportWriter

__all__ = ["HwbenchSession", "TestPlan"]

_plan_key = pytest.StashKey["TestPlan"]()
_metric_key = pytest.StashKey["MemoryMetric"]()
_result_key = pytest.StashKey[dict[str, Any]]()
_leak_baseline_key = pytest.StashKey[tuple["MemoryMetric", int]]()
#: Timing statistics of a test's `hw_benchmark` run, for its report entry.
benchmark_key = pytest.StashKey[dict[str, Any]]()


def _our_marks(node: pytest.Item | pytest.Function) -> dict[str, pytest.Mark]:
    """The closest of each of our markers on `node` (its own, its class's, its module's)."""
    marks: dict[str, pytest.Mark] = {}
    for mark in node.iter_markers():
        if mark.name in OUR_MARKERS:
            marks.setdefault(mark.name, mark)
    return marks


def _final_outcome(phases: dict[str, pytest.TestReport]) -> tuple[str, str | None]:
    """One outcome per test from its phase reports, the way pytest's summary counts them."""
    setup, call, teardown = phases.get("setup"), phases.get("call"), phases.get("teardown")
    for report in (setup, call):
        if report is not None and report.skipped:
            if hasattr(report, "wasxfail"):
                return "xfailed", None
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            return "skipped", reason.removeprefix("Skipped: ")
    if setup is not None and setup.failed:
        return "error", None
    if call is not None and call.failed:
        return "failed", None
    if teardown is not None and teardown.failed:
        return "error", None
    if call is not None and hasattr(call, "wasxfail"):
        return "xpassed", None
    return "passed", None


class TestPlan:
    """What the session does around one test, decided once (at collection) and kept in its stash."""

    __slots__ = ("leak_tolerance", "limit", "platform", "profile_by_hook", "unmet")

    def __init__(
        self,
        platform: str,
        *,
        unmet: str | None = None,
        profile_by_hook: bool = False,
        limit: MemoryLimit | None = None,
        leak_tolerance: int | None = None,
    ) -> None:
        #: The registry name of the platform the test runs on.
        self.platform = platform
        #: Why it cannot run there (None when it can).
        self.unmet = unmet
        #: Whether the call wrapper measures it (no memory_profile fixture does).
        self.profile_by_hook = profile_by_hook
        #: The limit on its peak growth (marker, else ini hw_memory_limit).
        self.limit = limit
        #: The allowed growth over the test when leak-checked, else None.
        self.leak_tolerance = leak_tolerance


class HwbenchSession:
    """Turns markers and options into parametrization, skips, measurements and a report.

    Created by the plugin only when a run uses hwbench (an option, or a test using one of our
    markers or fixtures); it registers the per-test hooks a run needs, and no others.
    """

    def __init__(
        self,
        config: pytest.Config,
        options: HwbenchOptions,
        registry: Callable[[], HardwareRegistry],
    ) -> None:
        self.config = config
        self.options = options
        self._registry = registry
        self.worker_id: str | None = getattr(config, "workerinput", {}).get("workerid")
        self.writer: ReportWriter | None = None
        self.entries: list[dict[str, Any]] = []
        self._phases: dict[str, dict[str, pytest.TestReport]] = {}
        self._distributed = False
        self.comparison: Any = None
        self._call_hooks: CallHooks | None = None
        self._report_hooks: ReportHooks | None = None
        self._guard_hooks: GuardHooks | None = None
        #: The terminal summary's rows of tests measured without a report entry.
        self.top_rows = _TopRows(options.summary)
        self._probe_refused = False
        self._rss_probe: RSSPeakProbe | None = None
        self._collected = False  # whether classify_items planned the collected tests
        # Per run, not per test: the host and this worker's pinned GPUs do not change.
        self._host = platform_module.node()
        self._pinned = _pinned_devices()
        self._metric_classes: dict[str, tuple[type[MemoryMetric], HardwareBackend]] = {}
        ini_limit = options.memory_limit_bytes
        default_limit: MemoryLimit | None = None
        if ini_limit is not None:
            from pytest_hwbench.marks import MemoryLimit

            default_limit = MemoryLimit(ini_limit, source="ini hw_memory_limit")
        #: The plan of every test that uses none of our markers or fixtures.
        self.plain_plan = TestPlan(
            "cpu",
            profile_by_hook=options.profile_all,
            limit=default_limit,
            leak_tolerance=options.leak_tolerance_bytes if options.leak_check else None,
        )
        if options.measures_every_test or is_xdist_controller(config):
            self.enable_test_hooks()
        if (
            options.report_path is not None
            or options.compare_base is not None
            or self.worker_id is not None  # the controller gets results only from reports
            or is_xdist_controller(config)
        ):
            self.enable_report_hooks()
        if options.leak_check:
            self.enable_guard_hooks()

    @property
    def registry(self) -> HardwareRegistry:
        """The session's hardware registry, built on first use (it imports every backend)."""
        return self._registry()

    def enable_test_hooks(self) -> None:
        """Register the per-test measuring hook (once)."""
        if self._call_hooks is None:
            self._call_hooks = CallHooks(self)
            self.config.pluginmanager.register(self._call_hooks, "hwbench_test_hooks")

    def enable_report_hooks(self) -> None:
        """Register the hooks that gather one entry per test (a report, compare, xdist; once)."""
        self.enable_test_hooks()
        if self._report_hooks is None:
            self._report_hooks = ReportHooks(self)
            self.config.pluginmanager.register(self._report_hooks, "hwbench_report_hooks")

    def enable_guard_hooks(self) -> None:
        """Register the setup/teardown hooks: leak checks, --hw-unavailable=fail (once)."""
        if self._guard_hooks is None:
            self._guard_hooks = GuardHooks(self)
            self.config.pluginmanager.register(self._guard_hooks, "hwbench_guard_hooks")

    # -- collection ------------------------------------------------------------------------------

    def _requirement(self, mark: pytest.Mark | None) -> HardwareRequirement | None:
        if mark is None:
            return None
        from pytest_hwbench.marks import parse_hardware_marker

        return parse_hardware_marker(mark, self.registry)

    def _memory_limit(self, mark: pytest.Mark | None) -> MemoryLimit | None:
        """The limit on peak growth: the marker's, else ini ``hw_memory_limit``."""
        if mark is not None:
            from pytest_hwbench.marks import parse_memory_limit

            return parse_memory_limit("memory_limit", mark.args, mark.kwargs, self.registry)
        return self.plain_plan.limit

    def _leak_tolerance(self, mark: pytest.Mark | None) -> int | None:
        """Allowed growth over a test (marker or --hw-leak-check), or None when not checked."""
        if mark is not None:
            from pytest_hwbench.marks import MarkerError

            if len(mark.args) != 1 or mark.kwargs:
                raise MarkerError(
                    "@pytest.mark.memory_leak_limit: give one size, e.g. memory_leak_limit('1MiB')"
                )
            try:
                return parse_size(mark.args[0])
            except ValueError as exc:
                raise MarkerError(f"@pytest.mark.memory_leak_limit: {exc}") from None
        return self.plain_plan.leak_tolerance

    def generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Validate our markers (bad ones are collection errors) and parametrize hw_device."""
        definition = metafunc.definition
        marks = _our_marks(definition)
        from pytest_hwbench.marks import MarkerError

        try:
            requirement = self._requirement(marks.get("hardware"))
            self._memory_limit(marks.get("memory_limit"))
            self._leak_tolerance(marks.get("memory_leak_limit"))
        except MarkerError as exc:
            raise pytest.Collector.CollectError(f"{definition.nodeid}: {exc}") from None
        if DEVICE_FIXTURE not in metafunc.fixturenames:
            return
        if requirement is not None:
            names = list(requirement.platforms)
        elif self.options.devices is not None:
            names = list(self.options.devices)
        else:
            names = self.registry.available()
        metafunc.parametrize(DEVICE_FIXTURE, names, ids=names, indirect=True, scope="function")

    def _unmet_reason(
        self, item: pytest.Item, requirement: HardwareRequirement | None
    ) -> tuple[str, str | None]:
        """The platform `item` runs on, and why it cannot (None when it can)."""
        callspec = getattr(item, "callspec", None)
        if callspec is not None and DEVICE_FIXTURE in callspec.params:
            name = str(callspec.params[DEVICE_FIXTURE])
            if self.options.devices is not None and name not in self.options.devices:
                return name, f"{name}: not selected by --hw-devices"
            backend = self.registry.get(name)
            if requirement is not None:
                return name, requirement.unmet_reason(backend)
            if not backend.is_available():
                return name, f"{name}: {backend.unavailable_reason()}"
            return name, None
        if requirement is None:
            return "cpu", None
        reasons = []
        for name in requirement.platforms:
            reason = requirement.unmet_reason(self.registry.get(name))
            if reason is None:
                return name, None
            reasons.append(reason)
        return requirement.platforms[0], "; ".join(reasons)

    def make_plan(self, item: pytest.Item) -> TestPlan:
        """Decide `item`'s platform, whether it can run there, and how it is measured."""
        marks = _our_marks(item)
        fixtures = getattr(item, "fixturenames", ())
        if not marks and DEVICE_FIXTURE not in fixtures and PROFILE_FIXTURE not in fixtures:
            return self.plain_plan
        platform, unmet = self._unmet_reason(item, self._requirement(marks.get("hardware")))
        return TestPlan(
            platform,
            unmet=unmet,
            profile_by_hook=PROFILE_FIXTURE not in fixtures
            and (self.options.profile_all or "memory_limit" in marks),
            limit=self._memory_limit(marks.get("memory_limit")),
            leak_tolerance=self._leak_tolerance(marks.get("memory_leak_limit")),
        )

    def plan(self, item: pytest.Item) -> TestPlan:
        """`item`'s plan, made now if collection did not (a test that asked for us at run time)."""
        stash = item.stash
        # `in`, not stash.get(): a miss, every plain test's case, raises KeyError inside get().
        if _plan_key in stash:
            return stash[_plan_key]
        if self._collected:  # collection planned every test of ours: this one is plain
            return self.plain_plan
        plan = stash[_plan_key] = self.make_plan(item)
        return plan

    def _collected_plan(self, item: pytest.Item) -> TestPlan:
        """`make_plan`, with a marker made bad after collection (by a hook) a usage error."""
        from pytest_hwbench.marks import MarkerError

        try:
            return self.make_plan(item)
        except MarkerError as exc:
            raise pytest.UsageError(f"{item.nodeid}: {exc}") from None

    def classify_items(self, items: list[pytest.Item], ours: list[pytest.Item]) -> None:
        """Plan every test (`ours` use our markers or fixtures); skip or deselect the unrunnable.

        Called after every other plugin's ``pytest_collection_modifyitems``.
        """
        config = self.config
        if config.hook.pytest_hwbench_register_backends.get_hookimpls():
            self._registry()  # a conftest collected later adds backends: register them now
        if ours:
            self.enable_test_hooks()
        if any(BENCHMARK_FIXTURE in getattr(item, "fixturenames", ()) for item in ours):
            self.enable_report_hooks()  # benchmark timings travel in the entries
        self._collected = True
        unrunnable: set[pytest.Item] = set()
        for item in ours:
            plan = item.stash[_plan_key] = self._collected_plan(item)
            if plan.leak_tolerance is not None:
                self.enable_guard_hooks()
            if plan.unmet is None:
                continue
            if self.options.unavailable == "deselect":
                unrunnable.add(item)
            elif self.options.unavailable == "skip":
                # A skip mark, not pytest.skip() in a hook: -rs then points at the test.
                item.add_marker(pytest.mark.skip(reason=plan.unmet))
            else:
                self.enable_guard_hooks()  # fails the test at setup
        if unrunnable:
            config.hook.pytest_deselected(items=[i for i in items if i in unrunnable])
            items[:] = [i for i in items if i not in unrunnable]

    # -- running ---------------------------------------------------------------------------------

    def platform_of(self, item: pytest.Item) -> str:
        """The registry name of the platform `item` runs on."""
        return self.plan(item).platform

    def create_metric(self, item: pytest.Item) -> MemoryMetric:
        """A new, unstarted metric for `item`'s device, with the session's sampling options."""
        platform = self.platform_of(item)
        known = self._metric_classes.get(platform)
        if known is not None:
            metric_class, backend = known
            # What the factory built the first time, without its checks again: same device.
            return metric_class(
                backend.name,
                backend=backend,
                index=0,
                interval=self.options.interval_s,
                sampler=self.options.sampler,
            )
        from pytest_hwbench.metrics.memory.factory import MemoryMetricFactory

        backend = self.registry.get(platform)
        metric = MemoryMetricFactory.create(
            backend, interval=self.options.interval_s, sampler=self.options.sampler
        )
        self._metric_classes[platform] = (type(metric), backend)
        return metric

    def running_metric(self, item: pytest.Item) -> MemoryMetric | None:
        """The metric measuring `item` right now (memory_profile or the call wrapper's), if any."""
        return item.stash.get(_metric_key, None)

    def start_metric(self, item: pytest.Item) -> MemoryMetric:
        """Start measuring `item` (used by the memory_profile fixture and the call wrapper)."""
        self.enable_test_hooks()  # a test that asked for the fixture at run time reports too
        metric = self.create_metric(item)
        metric.start()
        item.stash[_metric_key] = metric
        return metric

    def finish_metric(self, item: pytest.Item) -> tuple[MemoryMetric, dict[str, Any]] | None:
        """Stop `item`'s metric; keep its results for the report, summary and user_properties.

        Returns the metric and its results (None when nothing measured `item`).
        """
        metric = item.stash.get(_metric_key, None)
        if metric is None:
            return None
        del item.stash[_metric_key]
        metrics = metric.stop() if metric.state.value == "running" else metric.get_metrics()
        primary = metric.primary_series
        platform = self.platform_of(item)
        properties = item.user_properties
        for name, stats in metrics["series"].items():
            properties.append((f"hw_peak_bytes:{name}", stats["peak_bytes"]))
            properties.append((f"hw_peak_delta_bytes:{name}", stats["peak_delta_bytes"]))
        if self._report_hooks is not None:
            metrics["platform"] = platform
            metrics["primary_series"] = primary
            metrics["timeline"] = metric.get_memory_timeline().to_dict()
            item.stash[_result_key] = metrics
        else:
            # No report gathers entries: keep one summary row, not the metrics and timeline.
            # Thousands of kept dicts and lists would make pytest's own GC passes slower.
            stats = metrics["series"].get(primary)
            if stats is not None:
                self.top_rows.add(_SummaryRow.of(platform, primary, stats, item.nodeid))
        return metric, metrics

    def runtest_setup(self, item: pytest.Item) -> None:
        """Fail tests whose hardware is absent under --hw-unavailable=fail; leak baseline."""
        plan = self.plan(item)
        if plan.unmet is not None and self.options.unavailable == "fail":
            pytest.fail(
                f"required hardware unavailable (--hw-unavailable=fail): {plan.unmet}",
                pytrace=False,
            )
        if plan.leak_tolerance is not None and plan.unmet is None:
            metric = self.create_metric(item)
            gc.collect()
            baseline = metric.read_current()[metric.primary_series]
            item.stash[_leak_baseline_key] = (metric, baseline)

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
        if probe is not None:
            probe.close()

    def _check_limit(
        self,
        item: pytest.Item,
        limit: MemoryLimit,
        platform: str,
        finished: tuple[MemoryMetric, dict[str, Any]] | None,
    ) -> None:
        running = item.stash.get(_metric_key, None)
        if running is not None:  # memory_profile's metric, stopped at teardown
            metric, metrics = running, running.get_metrics()
        elif finished is not None:
            metric, metrics = finished
        else:
            return
        primary = metric.primary_series
        stats = metrics["series"].get(primary)
        if stats is not None:
            self._enforce_limit(limit, platform, primary, stats, metric.get_memory_timeline().marks)

    def _enforce_limit(
        self,
        limit: MemoryLimit,
        platform: str,
        primary: str,
        stats: dict[str, Any],
        marks: Sequence[MemoryMark],
    ) -> None:
        """Fail the test when its peak growth on `platform` exceeds `limit`, showing the marks."""
        limit_bytes = limit.for_platform(platform)
        if limit_bytes is None or stats["peak_delta_bytes"] <= limit_bytes:
            return
        lines = [
            f"memory limit exceeded on {platform}: peak growth "
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
        pytest.fail("\n".join(lines), pytrace=False)

    def runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        """After every fixture is torn down, compare device memory with the baseline."""
        result = yield
        baseline = item.stash.get(_leak_baseline_key, None)
        if baseline is not None:
            del item.stash[_leak_baseline_key]
            metric, before = baseline
            gc.collect()
            after = metric.read_current()[metric.primary_series]
            tolerance = self.plan(item).leak_tolerance or 0
            if after - before > tolerance:
                pytest.fail(
                    f"memory leak on {self.platform_of(item)}: {metric.primary_series!r} grew by "
                    f"{format_bytes(after - before)} over the test (before "
                    f"{format_bytes(before)}, after {format_bytes(after)}), tolerance "
                    f"{format_bytes(tolerance)}",
                    pytrace=False,
                )
        return result

    def report_data(self, item: pytest.Item) -> dict[str, Any]:
        """What `item`'s teardown report carries for the report (it travels with it, xdist)."""
        stash = item.stash
        return {
            "platform": self.platform_of(item),
            "memory": stash.get(_result_key, None),
            "benchmark": stash.get(benchmark_key, None),
            "worker": self.worker_id,
            "pinned_devices": self._pinned,
            "host": self._host,
        }

    # -- reporting -------------------------------------------------------------------------------

    def machine_inventory(self) -> dict[str, Any]:
        """The hardware inventory of the host running tests (imports torch: only there)."""
        from pytest_hwbench.hardware import hardware_inventory

        return hardware_inventory(self.registry)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Open the report journal (in the process that writes the report)."""
        path = self.options.report_path
        if path is None or self.worker_id is not None:
            return
        from pytest_hwbench.report.writer import ReportWriter

        self._distributed = self.config.pluginmanager.has_plugin("dsession")
        # The inventory is taken at the end: reading device properties initializes CUDA, which
        # must not happen before tests that fork. Under xdist the controller never touches the
        # hardware at all: each worker sends its own inventory when it finishes.
        from pytest_hwbench.hardware import host_inventory

        self.writer = ReportWriter(path, {"hosts": {}} if self._distributed else host_inventory())

    def runtest_logreport(self, report: pytest.TestReport) -> None:
        """Gather each test's phase reports into one entry once its teardown report arrives."""
        phases = self._phases.setdefault(report.nodeid, {})
        phases[report.when] = report
        if report.when != "teardown":
            return
        del self._phases[report.nodeid]
        data: dict[str, Any] = getattr(report, "hwbench", None) or {}
        outcome, skip_reason = _final_outcome(phases)
        entry: dict[str, Any] = {
            "nodeid": report.nodeid,
            "outcome": outcome,
            "platform": data.get("platform"),
            "device": (data.get("memory") or {}).get("device", {}).get("device"),
            "duration_s": sum(r.duration for r in phases.values()),
            "worker": data.get("worker"),
            "pinned_devices": data.get("pinned_devices"),
            "host": data.get("host"),
            "memory": data.get("memory"),
            "benchmark": data.get("benchmark"),
        }
        if entry["device"] is None and entry["platform"] is not None:
            entry["device"] = entry["platform"]
        if skip_reason is not None:
            entry["skip_reason"] = skip_reason
        self.entries.append(entry)
        if self.writer is not None:
            self.writer.add_test(entry)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Compare with --hw-compare's base; write the report (incomplete runs say so)."""
        if self.options.compare_base is not None and self.worker_id is None:
            from pytest_hwbench.report.compare import compare_reports

            self.comparison = compare_reports(
                self.options.compare_base,
                {"tests": self.entries},
                self.options.compare_thresholds,
                base_name=str(self.options.compare_base_path),
                new_name="this run",
            )
            if self.comparison.failed and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None and self.options.report_path is not None:
            workeroutput["hwbench_machine"] = self.machine_inventory()
            workeroutput["hwbench_worker"] = self.worker_id
        if self.writer is None:
            return
        if not self._distributed:
            self.writer.machine.update(self.machine_inventory())
        complete = exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.TESTS_FAILED,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ) and not (session.shouldstop or session.shouldfail)
        self.writer.finish(complete=complete)

    def take_worker_inventory(self, node: Any) -> None:
        """Take the inventory a finished xdist worker sent (a crashed worker sends none)."""
        output = getattr(node, "workeroutput", None) or {}
        machine = output.get("hwbench_machine")
        if self.writer is not None and machine:
            worker = output.get("hwbench_worker") or "?"
            self.writer.add_machine(f"{machine.get('host')}/{worker}", machine)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The N tests with the highest peak growth per platform, and where the report went."""
        if any(entry.get("benchmark") for entry in self.entries):
            from pytest_hwbench._benchmark import write_untimed_summary

            write_untimed_summary(terminalreporter, self.entries)
        top_n = self.options.summary
        rows = self.top_rows.rows() + [
            _row_of(entry) for entry in self.entries if entry.get("memory")
        ]
        if top_n > 0 and rows:
            by_platform: dict[str, list[_SummaryRow]] = {}
            for row in rows:
                by_platform.setdefault(row.platform, []).append(row)
            terminalreporter.write_sep("-", "hwbench: peak memory growth")
            for name, platform_rows in sorted(by_platform.items()):
                platform_rows.sort(key=lambda row: row.growth_bytes, reverse=True)
                terminalreporter.write_line(f"{name} (top {min(top_n, len(platform_rows))}):")
                for row in platform_rows[:top_n]:
                    terminalreporter.write_line(
                        f"  {format_bytes(row.growth_bytes, signed=True):>12}  "
                        f"peak {format_bytes(row.peak_bytes):>10}  "
                        f"{row.series} ({'exact' if row.exact else 'sampled'})  {row.nodeid}"
                    )
        if self.writer is not None:
            terminalreporter.write_line(f"hwbench report: {_display_path(self.writer.path)}")
        if self.comparison is not None:
            terminalreporter.write_sep("-", "hwbench: comparison with --hw-compare")
            for line in self.comparison.format_table().rstrip("\n").splitlines():
                terminalreporter.write_line(line)


class CallHooks:
    """The per-test measuring hook, registered only when a run uses hwbench.

    pytest calls every registered hook for every test; a run that uses none of our markers,
    fixtures or options must not pay for them.
    """

    def __init__(self, session: HwbenchSession) -> None:
        self.session = session

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        """Measure tests that need it but lack the fixture; enforce memory limits after the body.

        The whole path, not a ``yield from`` into the session: one generator a test, not two.
        """
        session = self.session
        plan = session.plan(item)
        if plan.profile_by_hook and session._report_hooks is None and plan.platform == "cpu":
            probe = session.rss_probe()
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
                    top_rows = session.top_rows
                    if top_rows.would_keep("cpu", growth):
                        top_rows.add(_SummaryRow("cpu", growth, peak, "rss", True, item.nodeid))
                if plan.limit is not None:
                    stats = {
                        "start_bytes": start_bytes,
                        "peak_bytes": peak,
                        "peak_delta_bytes": growth,
                        "exact_peak": True,
                    }
                    session._enforce_limit(plan.limit, "cpu", "rss", stats, ())
                return result
            if probe is not None:
                session.probe_refused()
        finished = None
        if plan.profile_by_hook:
            session.start_metric(item)
            try:
                result = yield
            finally:
                finished = session.finish_metric(item)
        else:
            result = yield
        if plan.limit is not None:
            session._check_limit(item, plan.limit, plan.platform, finished)
        return result


class ReportHooks:
    """Hooks that turn each test's phase reports into one entry: for a report, compare, xdist."""

    def __init__(self, session: HwbenchSession) -> None:
        self.session = session

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Put the test's measurements on its teardown report, so they travel with it (xdist)."""
        report = yield
        if call.when == "teardown":
            report.hwbench = self.session.report_data(item)  # type: ignore[attr-defined]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """See `HwbenchSession.runtest_logreport`."""
        self.session.runtest_logreport(report)


class GuardHooks:
    """Setup and teardown hooks, registered only when a run checks leaks or fails absent GPUs."""

    def __init__(self, session: HwbenchSession) -> None:
        self.session = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """See `HwbenchSession.runtest_setup`."""
        self.session.runtest_setup(item)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        """See `HwbenchSession.runtest_teardown`."""
        return (yield from self.session.runtest_teardown(item, nextitem))


def _pinned_devices() -> str | None:
    """The GPUs this xdist worker was pinned to ("CUDA_VISIBLE_DEVICES=2,3"), if it was."""
    xdist_module = sys.modules.get("pytest_hwbench._xdist")
    applied = getattr(xdist_module, "applied", None)
    return None if applied is None else f"{applied[0]}={applied[1]}"


class _SummaryRow(NamedTuple):
    """One measured test in the terminal summary (a tuple: the GC stops tracking it)."""

    platform: str
    growth_bytes: int
    peak_bytes: int
    series: str
    exact: bool
    nodeid: str

    @classmethod
    def of(cls, platform: str, series: str, stats: dict[str, Any], nodeid: str) -> _SummaryRow:
        """The row of a test whose `series` has these `get_metrics()` statistics."""
        return cls(
            platform,
            int(stats.get("peak_delta_bytes", 0)),
            int(stats.get("peak_bytes", 0)),
            series,
            bool(stats.get("exact_peak")),
            nodeid,
        )


class _TopRows:
    """The `size` tests with the highest peak growth per platform, kept as tests finish.

    Bounded, so a run of any length keeps `size` rows a platform; a test that does not make the
    cut costs a comparison. Ties keep the earlier test, as a stable sort of every row would.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._added = 0
        # Min-heaps of (growth, -order, row): the root is the row the next better one evicts.
        self._heaps: dict[str, list[tuple[int, int, _SummaryRow]]] = {}

    def would_keep(self, platform: str, growth_bytes: int) -> bool:
        """Whether a test on `platform` with this growth makes the top (build its row then)."""
        if self.size <= 0:
            return False
        heap = self._heaps.get(platform)
        return heap is None or len(heap) < self.size or growth_bytes > heap[0][0]

    def add(self, row: _SummaryRow) -> None:
        """Keep `row` if it ranks among the top `size` of its platform."""
        if not self.would_keep(row.platform, row.growth_bytes):
            return
        self._added += 1
        ranked = (row.growth_bytes, -self._added, row)
        heap = self._heaps.setdefault(row.platform, [])
        if len(heap) < self.size:
            heapq.heappush(heap, ranked)
        else:
            heapq.heapreplace(heap, ranked)

    def rows(self) -> list[_SummaryRow]:
        """The kept rows, in the order their tests finished."""
        ranked = [entry for heap in self._heaps.values() for entry in heap]
        return [row for _, _, row in sorted(ranked, key=lambda entry: -entry[1])]


def _row_of(entry: dict[str, Any]) -> _SummaryRow:
    memory = entry["memory"]
    stats = memory["series"].get(memory["primary_series"], {})
    return _SummaryRow.of(
        entry["platform"] or "?", memory["primary_series"], stats, entry["nodeid"]
    )


def _display_path(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
