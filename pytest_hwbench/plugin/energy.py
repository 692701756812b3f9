"""Energy per test: a window over its device's counters, energy limits, the terminal summary.

`EnergyMeter` opens each platform's counters once a run (or learns once why there are none),
gives each measured test an `EnergyMetric` over them, keeps the results for the test's entry,
and fails a test over its ``energy_limit``. `EnergyHooks` is the call wrapper, registered only
when a run measures energy (``--hw-energy``, or a test with an energy limit). The
``energy_profile`` fixture uses the meter directly. A device without a readable counter gives
its tests a result that says why, never an error: measuring must not change an outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from pytest_hwbench.names import ENERGY_RESULT_KEY, FAILURE_KEY
from pytest_hwbench.plugin.summary import TopRows
from pytest_hwbench.units import format_duration, format_energy

if TYPE_CHECKING:
    from pytest_hwbench.hardware.energy import EnergyCounter
    from pytest_hwbench.hardware.registry import HardwareRegistry
    from pytest_hwbench.metrics.energy.metric import EnergyMetric
    from pytest_hwbench.plugin.planning import Planner
    from pytest_hwbench.plugin.requirements import EnergyLimit

__all__ = ["EnergyHooks", "EnergyMeter", "EnergyRow", "entry_energy", "write_energy_summary"]

_energy_metric_key = pytest.StashKey["EnergyMetric"]()


class EnergyRow(NamedTuple):
    """One test in the terminal summary's energy table (a tuple: the GC stops tracking it)."""

    platform: str
    joules: float
    duration_s: float
    exact: bool
    nodeid: str

    @property
    def score(self) -> float:
        """Rows rank by joules."""
        return self.joules


def _watts(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def entry_energy(results: dict[str, Any], power: dict[str, Any] | None = None) -> dict[str, Any]:
    """A test's energy as its report entry keeps it: figures only, rounded to what they hold.

    What each domain covers and how often its counter updates are the run's facts (the
    report's session section), not repeated per test. `power`: the metric's power timeline,
    kept when a report is written.
    """
    reason = results.get("unavailable")
    if reason is not None:
        return {"total_joules": None, "unavailable": reason}
    domains = {}
    for name, domain in results["domains"].items():
        kept = {
            "joules": round(domain["joules"], 6),  # RAPL counts µJ, NVML mJ
            "mean_watts": _watts(domain["mean_watts"]),
            "exact": domain["exact"],
            "method": domain["method"],
        }
        if "peak_watts" in domain:
            kept["peak_watts"] = _watts(domain["peak_watts"])
        if "power_joules" in domain:
            kept["power_joules"] = round(domain["power_joules"], 6)
        domains[name] = kept
    energy: dict[str, Any] = {
        "total_joules": round(results["total_joules"], 6),
        "duration_s": round(results["duration_s"], 7),
        "exact": results["exact"],
        "domains": domains,
    }
    if power is not None:
        energy["power"] = {
            "t": [round(t, 6) for t in power["t"]],
            "watts": {
                name: [round(w, 3) for w in series] for name, series in power["watts"].items()
            },
        }
    return energy


class EnergyMeter:
    """Each measured test's energy window; the run's counters, limits and summary rows."""

    def __init__(
        self,
        planner: Planner,
        registry: Callable[[], HardwareRegistry],
        summary_size: int,
        interval_s: float | None = None,
    ) -> None:
        self.planner = planner
        self._registry = registry
        #: The summary's top tests by joules per platform, and those over their limit.
        self.top_rows: TopRows[EnergyRow] = TopRows(summary_size)
        #: --hw-interval: power is sampled at it when it is longer than the power default.
        self.interval_s = interval_s
        #: Whether entries keep each test's power timeline (a report is written).
        self.keep_power = False
        #: Each platform's opened counters, or why it has none (opened on first use).
        self._counters: dict[str, list[EnergyCounter] | str] = {}
        #: Tests whose device had no counter, per platform: (the reason, how many tests).
        self.unavailable: dict[str, tuple[str, int]] = {}
        #: Energy limits that could not be checked (no figure), per platform.
        self.unchecked_limits: dict[str, int] = {}
        #: Joules measured per platform, and tests measured there.
        self.totals: dict[str, tuple[float, int]] = {}

    def counters(self, platform: str) -> list[EnergyCounter] | str:
        """`platform`'s energy counters (device 0's), opened once a run; else why there are none."""
        known = self._counters.get(platform)
        if known is not None:
            return known
        from pytest_hwbench.hardware.energy import EnergyUnavailableError

        opened: list[EnergyCounter] | str
        try:
            opened = self._registry().get(platform).energy_counters(0)
        except EnergyUnavailableError as exc:
            opened = str(exc)
        except Exception as exc:  # a broken counter must cost no test its outcome
            opened = f"{platform}: opening its energy counters failed ({type(exc).__name__}: {exc})"
        self._counters[platform] = opened
        return opened

    def session_facts(self) -> dict[str, Any]:
        """What the report's session section says of energy: each platform's counters, or why not.

        Per platform: ``{"domains": {name: {"covers", "update_period_s"}}}`` or
        ``{"unavailable": reason}``; empty when the run measured no energy.
        """
        facts: dict[str, Any] = {}
        for platform, counters in self._counters.items():
            if isinstance(counters, str):
                facts[platform] = {"unavailable": counters}
            else:
                facts[platform] = {
                    "domains": {
                        counter.domain: {
                            "covers": counter.covers,
                            "update_period_s": counter.update_period_s,
                        }
                        for counter in counters
                    }
                }
        return facts

    def metric(self, platform: str, interval_s: float | None = None) -> EnergyMetric | str:
        """An unstarted metric over `platform`'s counters (device 0's), or why there are none.

        `interval_s`: how often it samples power (None: never).
        """
        from pytest_hwbench.metrics.energy.metric import EnergyMetric

        counters = self.counters(platform)
        if isinstance(counters, str):
            return counters
        backend = self._registry().get(platform)
        label = backend.device_label(0)
        return EnergyMetric(
            label, backend=backend, index=0, counters=counters, interval_s=interval_s
        )

    def start(self, item: pytest.Item) -> EnergyMetric:
        """Start `item`'s energy window on its platform (a metric saying why, without counters)."""
        from pytest_hwbench.metrics.energy.metric import DEFAULT_POWER_INTERVAL_S, EnergyMetric

        platform = self.planner.platform_of(item)
        metric = self.metric(platform, max(self.interval_s or 0.0, DEFAULT_POWER_INTERVAL_S))
        if not isinstance(metric, str):
            try:
                metric.start()
            except Exception as exc:  # a counter gone mid-run: this test says so, and runs
                metric = f"reading failed ({exc!r})"
        if isinstance(metric, str):
            backend = self._registry().get(platform)
            metric = EnergyMetric(
                backend.device_label(0),
                backend=backend,
                index=0,
                counters=[],
                unavailable_reason=metric,
            ).start()
        item.stash[_energy_metric_key] = metric
        return metric

    def finish(self, item: pytest.Item) -> dict[str, Any] | None:
        """Stop `item`'s window; keep its entry's energy, junitxml properties and summary row.

        Returns the entry's energy (None when nothing measured `item`). Never raises for a
        counter that fails mid-run: the entry says what failed.
        """
        metric = item.stash.get(_energy_metric_key, None)
        if metric is None:
            return None
        del item.stash[_energy_metric_key]
        platform = metric.backend.name
        try:
            results = metric.stop().get_metrics()
            energy = entry_energy(results, metric.get_power_timeline() if self.keep_power else None)
        except Exception as exc:  # a counter that fails mid-run: the entry says so
            energy = {"total_joules": None, "unavailable": f"reading failed ({exc!r})"}
        item.stash[ENERGY_RESULT_KEY] = energy
        self.keep(item.nodeid, platform, energy)
        joules = energy["total_joules"]
        if joules is not None:
            properties = item.user_properties
            properties.append(("hw_energy_joules", joules))
            for name, domain in energy["domains"].items():
                properties.append((f"hw_energy_joules:{name}", domain["joules"]))
        return energy

    def keep(self, nodeid: str, platform: str, energy: dict[str, Any]) -> None:
        """Count `energy` in the run's totals and, if it ranks, the summary's top rows."""
        joules = energy.get("total_joules")
        if joules is None:
            reason, count = self.unavailable.get(platform, (energy.get("unavailable") or "?", 0))
            self.unavailable[platform] = (reason, count + 1)
            return
        total, tests = self.totals.get(platform, (0.0, 0))
        self.totals[platform] = (total + joules, tests + 1)
        if self.top_rows.would_keep(platform, joules):
            row = EnergyRow(platform, joules, energy["duration_s"], energy["exact"], nodeid)
            self.top_rows.add(row)

    def check_limit(self, item: pytest.Item, limit: EnergyLimit, platform: str) -> None:
        """Fail `item` when the energy its device used exceeds `limit` on `platform`.

        A test whose device has no readable counter is not failed: its entry says why there is
        no figure, and the summary that its limit went unchecked.
        """
        limit_joules = limit.for_platform(platform)
        energy = item.stash.get(ENERGY_RESULT_KEY, None)
        if limit_joules is None or energy is None or energy["total_joules"] is None:
            if limit_joules is not None and energy is not None:
                energy["limit_unchecked"] = True
                self.unchecked_limits[platform] = self.unchecked_limits.get(platform, 0) + 1
            return
        joules = energy["total_joules"]
        if joules <= limit_joules:
            return
        lines = [
            f"energy limit exceeded on {platform}: {format_energy(joules)} > limit "
            f"{format_energy(limit_joules)} ({limit.source}) in "
            f"{format_duration(energy['duration_s'])}"
            + ("" if energy["exact"] else " (estimated: shorter than a counter's update period)")
        ]
        for name, domain in energy["domains"].items():
            watts = domain["mean_watts"]
            lines.append(
                f"  {name}: {format_energy(domain['joules'])}"
                + ("" if watts is None else f", {watts:.1f} W on average")
                + f" ({domain['method']})"
            )
        lines.append("  (device-wide counters: other processes on the device count too)")
        message = "\n".join(lines)
        self.top_rows.over_limit.add(item.nodeid)
        item.stash[FAILURE_KEY] = {
            "kind": "energy_limit",
            "message": message,
            "limit_joules": limit_joules,
        }
        pytest.fail(message, pytrace=False)


class EnergyHooks:
    """The energy call wrapper, registered only when a run measures energy.

    Outermost of our call wrappers, so a memory limit failing inside still ends the window.
    """

    def __init__(self, meter: EnergyMeter) -> None:
        self.meter = meter

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        """Measure the call of tests planned for energy; enforce their energy limit after it."""
        meter = self.meter
        plan = meter.planner.plan(item)
        if not plan.energy_by_hook:
            if plan.energy_limit is None:
                return (yield)
            # energy_profile's window: its limit is judged at the call's end, as a test's
            # failure (at teardown it would be an error), so the window ends there.
            result = yield
            if meter.finish(item) is not None:
                meter.check_limit(item, plan.energy_limit, plan.platform)
            return result
        meter.start(item)
        try:
            result = yield
        finally:
            meter.finish(item)
        if plan.energy_limit is not None:
            meter.check_limit(item, plan.energy_limit, plan.platform)
        return result


def write_energy_summary(
    terminalreporter: Any, meter: EnergyMeter, top_n: int, *, concurrent: bool = False
) -> None:
    """Each platform's measured energy and its top tests; where none could be read, why.

    `concurrent`: tests ran side by side (xdist workers), so their windows overlap.
    """
    if not meter.totals and not meter.unavailable:
        return
    terminalreporter.write_sep("-", "hwbench: energy (device-wide counters)")
    if concurrent:
        terminalreporter.write_line(
            "tests ran side by side (xdist): each figure holds what the other workers ran on "
            "the device meanwhile, and the sums count overlapping windows more than once"
        )
    by_platform: dict[str, list[EnergyRow]] = {}
    for row in meter.top_rows.rows():
        by_platform.setdefault(row.platform, []).append(row)
    for rows in by_platform.values():
        rows.sort(key=lambda row: row.joules, reverse=True)
    over_limit = meter.top_rows.over_limit
    for platform, (joules, tests) in sorted(meter.totals.items()):
        terminalreporter.write_line(
            f"{platform}: {format_energy(joules)} over {tests} test{'s' if tests != 1 else ''}"
            + (f" (top {min(top_n, len(by_platform.get(platform, [])))}):" if top_n > 0 else "")
        )
        for row in by_platform.get(platform, [])[:top_n]:
            terminalreporter.write_line(
                f"  {format_energy(row.joules):>10}  in {format_duration(row.duration_s):>9}  "
                f"{'exact' if row.exact else 'estimated'}  {row.nodeid}"
                + ("  OVER LIMIT" if row.nodeid in over_limit else "")
            )
    for platform, (reason, tests) in sorted(meter.unavailable.items()):
        unchecked = meter.unchecked_limits.get(platform, 0)
        terminalreporter.write_line(
            f"{platform}: no energy figure for {tests} test{'s' if tests != 1 else ''}"
            + (
                f" ({unchecked} energy limit{'s' if unchecked != 1 else ''} not checked)"
                if unchecked
                else ""
            )
            + f": {reason}"
        )
