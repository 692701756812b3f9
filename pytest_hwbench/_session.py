"""`HwbenchSession`: the one object holding the plugin's state; its methods are the hooks."""

from __future__ import annotations

import gc
import os
import platform as platform_module
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwbench._options import HwbenchOptions
from pytest_hwbench.marks import (
    HardwareRequirement,
    MarkerError,
    MemoryLimit,
    parse_hardware_marker,
    parse_memory_limit,
)
from pytest_hwbench.units import format_bytes, parse_size

if TYPE_CHECKING:
    from pytest_hwbench.hardware.registry import HardwareRegistry
    from pytest_hwbench.metrics.memory.base import MemoryMetric
    from pytest_hwbench.report.writer import ReportWriter

__all__ = ["HwbenchSession"]

DEVICE_FIXTURE = "hw_device"
PROFILE_FIXTURE = "memory_profile"
#: Fixtures and markers whose tests need the per-test hooks.
OUR_FIXTURES = frozenset({DEVICE_FIXTURE, PROFILE_FIXTURE, "hw_backend", "hw_benchmark"})
OUR_MARKERS = ("hardware", "memory_limit", "memory_leak_limit")

_platform_key = pytest.StashKey[str]()
_unmet_key = pytest.StashKey[str]()
_metric_key = pytest.StashKey["MemoryMetric"]()
_result_key = pytest.StashKey[dict[str, Any]]()
_leak_baseline_key = pytest.StashKey[tuple["MemoryMetric", int]]()
#: Timing statistics of a test's `hw_benchmark` run, for its report entry.
benchmark_key = pytest.StashKey[dict[str, Any]]()


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


class HwbenchSession:
    """Turns markers and options into parametrization, skips, measurements and a report."""

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
        self._test_hooks: TestHooks | None = None
        workers = getattr(config.option, "numprocesses", None)
        if (
            options.report_path is not None
            or options.profile_all
            or options.leak_check
            or options.compare_base is not None
            or (self.worker_id is None and bool(workers))  # the xdist controller gathers reports
        ):
            self.enable_test_hooks()

    @property
    def registry(self) -> HardwareRegistry:
        """The session's hardware registry, built on first use (it imports every backend)."""
        return self._registry()

    def enable_test_hooks(self) -> None:
        """Register the per-test hooks (once); called when the run turns out to need them."""
        if self._test_hooks is None:
            self._test_hooks = TestHooks(self)
            self.config.pluginmanager.register(self._test_hooks, "hwbench_test_hooks")

    # -- collection ------------------------------------------------------------------------------

    def _requirement(self, node: pytest.Item | pytest.Function) -> HardwareRequirement | None:
        mark = node.get_closest_marker("hardware")
        return None if mark is None else parse_hardware_marker(mark, self.registry)

    def memory_limit(self, item: pytest.Item) -> MemoryLimit | None:
        """The limit on `item`'s peak growth: its marker, else ini ``hw_memory_limit``."""
        mark = item.get_closest_marker("memory_limit")
        if mark is not None:
            return parse_memory_limit("memory_limit", mark.args, mark.kwargs, self.registry)
        if self.options.memory_limit_bytes is not None:
            return MemoryLimit(self.options.memory_limit_bytes, source="ini hw_memory_limit")
        return None

    def leak_tolerance(self, item: pytest.Item) -> int | None:
        """Allowed growth over `item` (marker or --hw-leak-check), or None when not checked."""
        mark = item.get_closest_marker("memory_leak_limit")
        if mark is not None:
            if len(mark.args) != 1 or mark.kwargs:
                raise MarkerError(
                    "@pytest.mark.memory_leak_limit: give one size, e.g. memory_leak_limit('1MiB')"
                )
            try:
                return parse_size(mark.args[0])
            except ValueError as exc:
                raise MarkerError(f"@pytest.mark.memory_leak_limit: {exc}") from None
        return self.options.leak_tolerance_bytes if self.options.leak_check else None

    @pytest.hookimpl
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Validate our markers (bad ones are collection errors) and parametrize hw_device."""
        definition = metafunc.definition
        uses_device = DEVICE_FIXTURE in metafunc.fixturenames
        marker_names = {mark.name for mark in definition.iter_markers()}
        if not uses_device and marker_names.isdisjoint(OUR_MARKERS):
            return  # the common case in a suite that does not use us: nothing to check
        try:
            requirement = self._requirement(definition)
            self.memory_limit(definition)
            self.leak_tolerance(definition)
        except MarkerError as exc:
            raise pytest.Collector.CollectError(f"{definition.nodeid}: {exc}") from None
        if not uses_device:
            return
        if requirement is not None:
            names = list(requirement.platforms)
        elif self.options.devices is not None:
            names = list(self.options.devices)
        else:
            names = self.registry.available()
        metafunc.parametrize(DEVICE_FIXTURE, names, ids=names, indirect=True, scope="function")

    def _unmet_reason(self, item: pytest.Item) -> tuple[str, str | None]:
        """The platform `item` runs on, and why it cannot (None when it can)."""
        callspec = getattr(item, "callspec", None)
        requirement = self._requirement(item)
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

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Decide each test's platform; deselect the unrunnable under --hw-unavailable=deselect."""
        if config.hook.pytest_hwbench_register_backends.get_hookimpls():
            self._registry()  # a conftest collected later adds backends: register them now
        kept: list[pytest.Item] = []
        deselected: list[pytest.Item] = []
        for item in items:
            fixtures = getattr(item, "fixturenames", ())
            uses_device = DEVICE_FIXTURE in fixtures
            marker_names = {mark.name for mark in item.iter_markers()}
            if self._test_hooks is None and (
                not OUR_FIXTURES.isdisjoint(fixtures) or not marker_names.isdisjoint(OUR_MARKERS)
            ):
                self.enable_test_hooks()
            if "hardware" not in marker_names and not uses_device:
                item.stash[_platform_key] = "cpu"
                kept.append(item)
                continue
            name, reason = self._unmet_reason(item)
            item.stash[_platform_key] = name
            if reason is not None:
                item.stash[_unmet_key] = reason
                if self.options.unavailable == "deselect":
                    deselected.append(item)
                    continue
                if self.options.unavailable == "skip":
                    # A skip mark, not pytest.skip() in a hook: -rs then points at the test.
                    item.add_marker(pytest.mark.skip(reason=reason))
            kept.append(item)
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept

    # -- running ---------------------------------------------------------------------------------

    def platform_of(self, item: pytest.Item) -> str:
        """The registry name of the platform `item` runs on."""
        return item.stash.get(_platform_key, "cpu")

    def _profiled_by_hook(self, item: pytest.Item) -> bool:
        if PROFILE_FIXTURE in getattr(item, "fixturenames", ()):
            return False  # the fixture measures it
        return self.options.profile_all or item.get_closest_marker("memory_limit") is not None

    def create_metric(self, item: pytest.Item) -> MemoryMetric:
        """A new, unstarted metric for `item`'s device, with the session's sampling options."""
        from pytest_hwbench.metrics.memory.factory import MemoryMetricFactory

        return MemoryMetricFactory.create(
            self.registry.get(self.platform_of(item)),
            interval=self.options.interval_s,
            sampler=self.options.sampler,
        )

    def running_metric(self, item: pytest.Item) -> MemoryMetric | None:
        """The metric measuring `item` right now (memory_profile or the call wrapper's), if any."""
        return item.stash.get(_metric_key, None)

    def start_metric(self, item: pytest.Item) -> MemoryMetric:
        """Start measuring `item` (used by the memory_profile fixture and the call wrapper)."""
        metric = self.create_metric(item)
        metric.start()
        item.stash[_metric_key] = metric
        return metric

    def finish_metric(self, item: pytest.Item) -> None:
        """Stop `item`'s metric and keep its results for the report and user_properties."""
        metric = item.stash.get(_metric_key, None)
        if metric is None:
            return
        del item.stash[_metric_key]
        metrics = metric.stop() if metric.state.value == "running" else metric.get_metrics()
        primary = metric.primary_series
        result = {
            **metrics,
            "platform": self.platform_of(item),
            "primary_series": primary,
            "timeline": metric.get_memory_timeline().to_dict(),
        }
        item.stash[_result_key] = result
        for name, stats in metrics["series"].items():
            item.user_properties.append((f"hw_peak_bytes:{name}", stats["peak_bytes"]))
            item.user_properties.append((f"hw_peak_delta_bytes:{name}", stats["peak_delta_bytes"]))

    def runtest_setup(self, item: pytest.Item) -> None:
        """Fail tests whose hardware is absent under --hw-unavailable=fail; leak baseline."""
        reason = item.stash.get(_unmet_key, None)
        if reason is not None and self.options.unavailable == "fail":
            pytest.fail(
                f"required hardware unavailable (--hw-unavailable=fail): {reason}",
                pytrace=False,
            )
        tolerance = self.leak_tolerance(item)
        if tolerance is not None and reason is None:
            metric = self.create_metric(item)
            gc.collect()
            baseline = metric.read_current()[metric.primary_series]
            item.stash[_leak_baseline_key] = (metric, baseline)

    def runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        """Measure tests that need it but lack the fixture; enforce memory limits after the body."""
        own_metric = self._profiled_by_hook(item)
        if own_metric:
            self.start_metric(item)
        try:
            result = yield
        finally:
            if own_metric:
                self.finish_metric(item)
        self._check_limit(item)
        return result

    def _check_limit(self, item: pytest.Item) -> None:
        limit = self.memory_limit(item)
        if limit is None:
            return
        platform = self.platform_of(item)
        limit_bytes = limit.for_platform(platform)
        if limit_bytes is None:
            return
        metric = item.stash.get(_metric_key, None)
        if metric is not None:
            metrics = metric.get_metrics()
            primary = metric.primary_series
            marks = metric.get_memory_timeline().marks
        elif _result_key in item.stash:
            metrics = item.stash[_result_key]
            primary = metrics["primary_series"]
            marks = []
        else:
            return
        stats = metrics["series"].get(primary)
        if stats is None or stats["peak_delta_bytes"] <= limit_bytes:
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
            tolerance = self.leak_tolerance(item) or 0
            if after - before > tolerance:
                pytest.fail(
                    f"memory leak on {self.platform_of(item)}: {metric.primary_series!r} grew by "
                    f"{format_bytes(after - before)} over the test (before "
                    f"{format_bytes(before)}, after {format_bytes(after)}), tolerance "
                    f"{format_bytes(tolerance)}",
                    pytrace=False,
                )
        return result

    def runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Put the test's measurements on its teardown report, so they travel with it (xdist)."""
        report = yield
        if call.when == "teardown":
            data: dict[str, Any] = {
                "platform": self.platform_of(item),
                "memory": item.stash.get(_result_key, None),
                "benchmark": item.stash.get(benchmark_key, None),
                "worker": self.worker_id,
                "pinned_devices": _pinned_devices(),
                "host": platform_module.node(),
            }
            report.hwbench = data  # type: ignore[attr-defined]
        return report

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

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The N tests with the highest peak growth per platform, and where the report went."""
        top_n = self.options.summary
        measured = [e for e in self.entries if e.get("memory")]
        if top_n > 0 and measured:
            by_platform: dict[str, list[dict[str, Any]]] = {}
            for entry in measured:
                by_platform.setdefault(entry["platform"] or "?", []).append(entry)
            terminalreporter.write_sep("-", "hwbench: peak memory growth")
            for name, entries in sorted(by_platform.items()):
                entries.sort(key=_growth, reverse=True)
                terminalreporter.write_line(f"{name} (top {min(top_n, len(entries))}):")
                for entry in entries[:top_n]:
                    memory = entry["memory"]
                    stats = memory["series"].get(memory["primary_series"], {})
                    exact = "exact" if stats.get("exact_peak") else "sampled"
                    terminalreporter.write_line(
                        f"  {format_bytes(_growth(entry), signed=True):>12}  "
                        f"peak {format_bytes(stats.get('peak_bytes', 0)):>10}  "
                        f"{memory['primary_series']} ({exact})  {entry['nodeid']}"
                    )
        if self.writer is not None:
            terminalreporter.write_line(f"hwbench report: {_display_path(self.writer.path)}")
        if self.comparison is not None:
            terminalreporter.write_sep("-", "hwbench: comparison with --hw-compare")
            for line in self.comparison.format_table().rstrip("\n").splitlines():
                terminalreporter.write_line(line)


class TestHooks:
    """The per-test hooks, registered only when a run uses the plugin (see `HwbenchSession`).

    pytest calls every registered hook for every test; a run that uses none of our markers,
    fixtures or options must not pay for them.
    """

    def __init__(self, session: HwbenchSession) -> None:
        self.session = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """See `HwbenchSession.runtest_setup`."""
        self.session.runtest_setup(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        """See `HwbenchSession.runtest_call`."""
        return (yield from self.session.runtest_call(item))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        """See `HwbenchSession.runtest_teardown`."""
        return (yield from self.session.runtest_teardown(item, nextitem))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """See `HwbenchSession.runtest_makereport`."""
        return (yield from self.session.runtest_makereport(item, call))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """See `HwbenchSession.runtest_logreport`."""
        self.session.runtest_logreport(report)


class XdistHooks:
    """Hooks that only exist where pytest-xdist is installed, registered only there."""

    def __init__(self, session: HwbenchSession) -> None:
        self.session = session

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """Take the inventory a finished worker sent (a crashed worker sends none)."""
        writer = self.session.writer
        output = getattr(node, "workeroutput", None) or {}
        machine = output.get("hwbench_machine")
        if writer is not None and machine:
            worker = output.get("hwbench_worker") or "?"
            writer.add_machine(f"{machine.get('host')}/{worker}", machine)


def _pinned_devices() -> str | None:
    """The GPUs this xdist worker was pinned to ("CUDA_VISIBLE_DEVICES=2,3"), if it was."""
    xdist_module = sys.modules.get("pytest_hwbench._xdist")
    applied = getattr(xdist_module, "applied", None)
    return None if applied is None else f"{applied[0]}={applied[1]}"


def _growth(entry: dict[str, Any]) -> int:
    memory = entry["memory"]
    stats = memory["series"].get(memory["primary_series"], {})
    return int(stats.get("peak_delta_bytes", 0))


def _display_path(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
