"""Reporting: one entry per test from its phase reports, the ``--hw-report`` writer, compare.

Each test's measurements travel on its teardown report (`ReportHooks`), so under xdist the
controller gathers every worker's tests without measuring anything itself. `Reporter` turns the
phase reports into entries, journals them, and at the end compares and writes the report.
"""

from __future__ import annotations

import os
import platform as platform_module
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwbench.names import BENCHMARK_RESULT_KEY, MEMORY_RESULT_KEY
from pytest_hwbench.plugin.summary import (
    SummaryRow,
    TopRows,
    write_peak_summary,
    write_untimed_summary,
)

if TYPE_CHECKING:
    from pytest_hwbench.plugin.options import HwbenchOptions
    from pytest_hwbench.report.writer import ReportWriter

__all__ = ["ReportHooks", "Reporter", "final_outcome"]


def final_outcome(phases: dict[str, pytest.TestReport]) -> tuple[str, str | None]:
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


class Reporter:
    """Gathers entries, writes the report, compares with ``--hw-compare``'s base, summarizes."""

    def __init__(
        self,
        config: pytest.Config,
        options: HwbenchOptions,
        top_rows: TopRows,
        machine_inventory: Callable[[], dict[str, Any]],
        pinned_devices: str | None,
    ) -> None:
        self.config = config
        self.options = options
        self.top_rows = top_rows
        self.machine_inventory = machine_inventory
        self.worker_id: str | None = getattr(config, "workerinput", {}).get("workerid")
        self.writer: ReportWriter | None = None
        self.entries: list[dict[str, Any]] = []
        self.comparison: Any = None
        self._phases: dict[str, dict[str, pytest.TestReport]] = {}
        self._distributed = False
        # Per run, not per test: the host and this worker's pinned GPUs do not change.
        self._host = platform_module.node()
        self._pinned = pinned_devices

    def test_data(self, item: pytest.Item, platform: str) -> dict[str, Any]:
        """What `item`'s teardown report carries for the report (it travels with it, xdist)."""
        stash = item.stash
        return {
            "platform": platform,
            "memory": stash.get(MEMORY_RESULT_KEY, None),
            "benchmark": stash.get(BENCHMARK_RESULT_KEY, None),
            "worker": self.worker_id,
            "pinned_devices": self._pinned,
            "host": self._host,
        }

    def open(self) -> None:
        """Open the report journal (in the process that writes the report)."""
        path = self.options.report_path
        if path is None or self.worker_id is not None:
            return
        from pytest_hwbench.hardware import host_inventory
        from pytest_hwbench.report.writer import ReportWriter

        self._distributed = self.config.pluginmanager.has_plugin("dsession")
        # The inventory is taken at the end: reading device properties initializes CUDA, which
        # must not happen before tests that fork. Under xdist the controller never touches the
        # hardware at all: each worker sends its own inventory when it finishes.
        self.writer = ReportWriter(path, {"hosts": {}} if self._distributed else host_inventory())

    def add(self, report: pytest.TestReport) -> None:
        """Gather each test's phase reports into one entry once its teardown report arrives."""
        phases = self._phases.setdefault(report.nodeid, {})
        phases[report.when] = report
        if report.when != "teardown":
            return
        del self._phases[report.nodeid]
        data: dict[str, Any] = getattr(report, "hwbench", None) or {}
        outcome, skip_reason = final_outcome(phases)
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

    def finish(self, session: pytest.Session, exitstatus: int) -> None:
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

    def summarize(self, terminalreporter: Any) -> None:
        """The N tests with the highest peak growth per platform, and where the report went."""
        write_untimed_summary(terminalreporter, self.entries)
        rows = self.top_rows.rows() + [
            SummaryRow.of_entry(entry) for entry in self.entries if entry.get("memory")
        ]
        write_peak_summary(terminalreporter, rows, self.options.summary)
        if self.writer is not None:
            terminalreporter.write_line(f"hwbench report: {_display_path(self.writer.path)}")
        if self.comparison is not None:
            terminalreporter.write_sep("-", "hwbench: comparison with --hw-compare")
            for line in self.comparison.format_table().rstrip("\n").splitlines():
                terminalreporter.write_line(line)


class ReportHooks:
    """Hooks that turn each test's phase reports into one entry: for a report, compare, xdist."""

    def __init__(self, reporter: Reporter, platform_of: Callable[[pytest.Item], str]) -> None:
        self.reporter = reporter
        self.platform_of = platform_of

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Put the test's measurements on its teardown report, so they travel with it (xdist)."""
        report = yield
        if call.when == "teardown":
            data = self.reporter.test_data(item, self.platform_of(item))
            report.hwbench = data  # type: ignore[attr-defined]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """See `Reporter.add`."""
        self.reporter.add(report)


def _display_path(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
