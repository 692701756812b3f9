"""`HwbenchSession`: the run's state, built only when a run uses hwbench; its methods are hooks.

It composes the three parts of a run, each in its own module: planning (collection), measuring
(each test's metric, limits and leaks) and reporting (entries, the report, compare, summary). It
registers only the per-test hooks the run needs, and offers the fixtures a small interface.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwbench.plugin.energy import EnergyHooks, EnergyMeter
from pytest_hwbench.plugin.measuring import CallHooks, GuardHooks, Measurer
from pytest_hwbench.plugin.options import HwbenchOptions, is_xdist_controller
from pytest_hwbench.plugin.planning import Planner, TestPlan
from pytest_hwbench.plugin.reporting import DistributedReportHooks, Reporter, ReportHooks
from pytest_hwbench.plugin.summary import SummaryRow, TopRows

if TYPE_CHECKING:
    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.hardware.registry import HardwareRegistry

__all__ = ["HwbenchSession"]


def _pinned_devices() -> str | None:
    """The GPUs this xdist worker was pinned to, if it was (see `xdist.pinned_devices`).

    Only a worker that applied a plan has loaded the xdist module: other runs do not import it.
    """
    xdist = sys.modules.get("pytest_hwbench.plugin.xdist")
    return None if xdist is None else xdist.pinned_devices()


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
        top_rows: TopRows[SummaryRow] = TopRows(options.summary)
        #: Collection: each test's platform, whether it can run, how it is measured.
        self.planning = Planner(options, registry)
        #: Each test's metric, the RSS peak probe, limits and leak checks.
        self.measuring = Measurer(
            config, options, self.planning, registry, top_rows, self.enable_test_hooks
        )
        #: Each test's energy window, energy limits.
        self.energy = EnergyMeter(self.planning, registry, options.summary, options.interval_s)
        #: Entries, the report, compare and the terminal summary.
        self.reporting = Reporter(
            config,
            options,
            top_rows,
            self.machine_inventory,
            _pinned_devices(),
            self.session_facts,
            self.energy,
        )
        self._call_hooks: CallHooks | None = None
        self._energy_hooks: EnergyHooks | None = None
        self._report_hooks: ReportHooks | DistributedReportHooks | None = None
        self._guard_hooks: GuardHooks | None = None
        self._rank_hooks: object | None = None  # RankHooks, where a test is distributed
        controller = is_xdist_controller(config)
        if options.measures_every_test or controller:
            self.enable_test_hooks()
        if options.energy:
            self.enable_energy_hooks()
        # Under xdist every worker reports: the controller gets results only from reports.
        distributed = controller or self.reporting.worker_id is not None
        if options.report_path is not None or options.compare_base is not None or distributed:
            self.enable_report_hooks()
        if options.leak_check:
            self.enable_guard_hooks()

    @property
    def registry(self) -> HardwareRegistry:
        """The run's hardware registry, built on first use (it imports every backend)."""
        return self._registry()

    # -- which hooks run ---------------------------------------------------------------------------

    def enable_test_hooks(self) -> None:
        """Register the per-test measuring hook (once)."""
        if self._call_hooks is None:
            self._call_hooks = CallHooks(self.measuring)
            self.config.pluginmanager.register(self._call_hooks, "hwbench_test_hooks")

    def enable_energy_hooks(self) -> None:
        """Register the energy call wrapper (once)."""
        if self._energy_hooks is None:
            self._energy_hooks = EnergyHooks(self.energy)
            self.config.pluginmanager.register(self._energy_hooks, "hwbench_energy_hooks")

    def enable_report_hooks(self) -> None:
        """Register the hooks that gather one entry per test (a report, compare, xdist; once)."""
        self.enable_test_hooks()
        if self._report_hooks is None:
            self.measuring.keep_results = True
            self.energy.keep_power = True
            distributed = is_xdist_controller(self.config) or self.reporting.worker_id is not None
            hooks = DistributedReportHooks if distributed else ReportHooks
            self._report_hooks = hooks(self.reporting, self.planning.platform_of)
            self.config.pluginmanager.register(self._report_hooks, "hwbench_report_hooks")

    def enable_guard_hooks(self) -> None:
        """Register the setup/teardown hooks: leak checks, --hw-unavailable=fail (once)."""
        if self._guard_hooks is None:
            self._guard_hooks = GuardHooks(self.measuring)
            self.config.pluginmanager.register(self._guard_hooks, "hwbench_guard_hooks")

    # -- what fixtures and the front module ask ----------------------------------------------------

    def plan(self, item: pytest.Item) -> TestPlan:
        """`item`'s plan (see `Planner.plan`)."""
        return self.planning.plan(item)

    def platform_of(self, item: pytest.Item) -> str:
        """The registry name of the platform `item` runs on."""
        return self.planning.platform_of(item)

    def backend_of(self, item: pytest.Item) -> HardwareBackend:
        """The backend of the platform `item` runs on."""
        return self._registry().get(self.planning.platform_of(item))

    def classify_items(self, items: list[pytest.Item], ours: list[pytest.Item]) -> None:
        """Plan every collected test; register the hooks the planned tests need."""
        if self.config.hook.pytest_hwbench_register_backends.get_hookimpls():
            self._registry()  # a conftest collected later adds backends: register them now
        needs = self.planning.classify_items(self.config, items, ours)
        if needs.host_asks:
            self.measuring.hold_heap_thresholds()
        if needs.measure:
            self.enable_test_hooks()
        if needs.energy:
            self.enable_energy_hooks()
        if needs.report:
            self.enable_report_hooks()
        if needs.guard:
            self.enable_guard_hooks()
        if needs.distributed and self._rank_hooks is None:
            from pytest_hwbench.plugin.distributed import RankHooks

            self._rank_hooks = RankHooks(self)
            self.config.pluginmanager.register(self._rank_hooks, "hwbench_rank_hooks")

    def session_facts(self) -> dict[str, Any]:
        """The report's session section: how this process measured memory, and energy."""
        facts = self.measuring.session_facts()
        energy = self.energy.session_facts()
        if energy:
            facts["energy"] = energy
        return facts

    def machine_inventory(self, *, import_torch: bool = False) -> dict[str, Any]:
        """The hardware inventory of the host running tests.

        torch is imported only when asked (the ``hw_info`` fixture): a report of a run whose
        tests never imported it describes the host from the OS instead (a second of start-up
        and a bigger heap for every later garbage collection, saved).
        """
        from pytest_hwbench.hardware import hardware_inventory

        return hardware_inventory(self._registry(), import_torch=import_torch)

    def take_worker_inventory(self, node: Any) -> None:
        """Take the inventory a finished xdist worker sent (a crashed worker sends none)."""
        self.reporting.take_worker_inventory(node)

    # -- session hooks -----------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Open the report journal (in the process that writes the report)."""
        self.reporting.open()

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        """Count deselected tests (-k, -m): a comparison must not call them removed."""
        self.reporting.deselected += len(items)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Compare with --hw-compare's base; write the report (incomplete runs say so)."""
        self.reporting.finish(session, exitstatus)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The N tests with the highest peak growth per platform, and where the report went."""
        self.reporting.summarize(terminalreporter)
