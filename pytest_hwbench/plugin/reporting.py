"""Reporting: one entry per test from its phase reports, the ``--hw-report`` writer, compare.

Each test's measurements travel on its teardown report (`ReportHooks`), so under xdist the
controller gathers every worker's tests without measuring anything itself. `Reporter` turns the
phase reports into entries, journals them, and at the end writes the report, then compares,
then summarizes. Nothing here stops the run or changes an outcome: each failure of ours becomes
a warning, a line in the terminal and an ``errors`` item of a report marked incomplete.
"""

from __future__ import annotations

import contextlib
import json
import platform as platform_module
import warnings
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwbench.names import (
    BENCHMARK_RESULT_KEY,
    DTYPE_FIXTURE,
    ENERGY_RESULT_KEY,
    FAILURE_KEY,
    MEMORY_RESULT_KEY,
    RANKS_RESULT_KEY,
    STRETCH_RESULT_KEY,
)
from pytest_hwbench.plugin.summary import (
    SummaryRow,
    TopRows,
    write_peak_summary,
    write_throughput_summary,
    write_untimed_summary,
)
from pytest_hwbench.report.model import (
    benchmark_median_s,
    entry_label,
    finite_json,
    machine_label,
    primary_stats,
    throughput_text,
)

if TYPE_CHECKING:
    from pytest_hwbench.metrics.memory.stretch import StretchResult
    from pytest_hwbench.plugin.energy import EnergyMeter
    from pytest_hwbench.plugin.options import HwbenchOptions
    from pytest_hwbench.report.writer import ReportWriter

__all__ = ["DistributedReportHooks", "ReportHooks", "ReportWarning", "Reporter", "final_outcome"]

#: Lines of a failure's message kept in its entry.
FAILURE_LINES = 8
#: Benchmarks whose throughput the terminal summary shows (the report has every one).
THROUGHPUT_ROWS = 50
#: A JSON string, as the report's compact encoder writes one (ASCII, escapes included).
_json_string = json.encoder.encode_basestring_ascii


def _dtype_of(item: pytest.Item) -> str | None:
    """The dtype `item` computes in (its hw_dtype parameter), or None."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    dtype = callspec.params.get(DTYPE_FIXTURE)
    return None if dtype is None else str(dtype)


class ReportWarning(UserWarning):
    """Something of ours failed while journaling or writing; the run went on without it."""


def warn_report(message: str) -> None:
    """Emit a `ReportWarning`, even where warnings are errors: it must never stop the run."""
    # Raised by an "error" filter, it is still in the terminal summary and the report's errors.
    with contextlib.suppress(ReportWarning):
        warnings.warn(message, ReportWarning, stacklevel=2)


def final_outcome(phases: dict[str, pytest.TestReport]) -> tuple[str, str | None]:
    """One outcome per test from its phase reports, the way pytest's summary counts them."""
    setup, call, teardown = phases.get("setup"), phases.get("call"), phases.get("teardown")
    if (
        setup is not None
        and call is not None
        and teardown is not None
        and setup.outcome == call.outcome == teardown.outcome == "passed"
        and not hasattr(call, "wasxfail")
    ):
        return "passed", None  # nearly every test: the checks below, answered at once
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


def _first_lines(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    kept = "\n".join(lines[:FAILURE_LINES])
    return kept[:2000] + (" …" if len(lines) > FAILURE_LINES or len(kept) > 2000 else "")


def _exception_failure(phases: Mapping[str, pytest.TestReport]) -> dict[str, Any]:
    """The failure of a test that raised: the failing phase's error, in its first lines."""
    failing = next(r for r in phases.values() if r.failed)
    crash = getattr(failing.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None) or failing.longreprtext or str(failing.longrepr)
    return {"kind": "exception", "message": _first_lines(str(message))}


class Reporter:
    """Gathers entries, writes the report, compares with ``--hw-compare``'s base, summarizes."""

    def __init__(
        self,
        config: pytest.Config,
        options: HwbenchOptions,
        top_rows: TopRows[SummaryRow],
        machine_inventory: Callable[[], dict[str, Any]],
        pinned_devices: str | None,
        session_facts: Callable[[], dict[str, Any]],
        energy: EnergyMeter | None = None,
    ) -> None:
        self.config = config
        #: The run's energy meter: its summary, and the totals of workers' tests under xdist.
        self.energy = energy
        self.options = options
        self.top_rows = top_rows
        self.machine_inventory = machine_inventory
        #: The report's session section: how this process measured (warm-ups, its peak).
        self.session_facts = session_facts
        self.worker_id: str | None = getattr(config, "workerinput", {}).get("workerid")
        self.writer: ReportWriter | None = None
        #: Every entry, kept only for --hw-compare: a report of thousands of tests keeps its
        #: entries as JSON text in the writer, and the summary keeps bounded rows.
        self.entries: list[dict[str, Any]] = []
        self._keep_entries = options.compare_base is not None
        #: Benchmarks that ran untimed: tests per reason.
        self.untimed: dict[str, int] = {}
        #: Benchmarks that gave flops= or bytes_moved=: (node id, median s, rates), the first
        #: THROUGHPUT_ROWS of them.
        self.throughput: list[tuple[str, float | None, str]] = []
        self.comparison: Any = None
        #: What the terminal summary says went wrong (and what to do), one line each.
        self.problems: list[str] = []
        self._written: Path | None = None
        #: Tests that -k, -m or a plugin deselected: a comparison must not call them removed.
        self.deselected = 0
        self._phases: dict[str, dict[str, pytest.TestReport]] = {}
        self._distributed = False
        self._crashed = False
        # Per run, not per test: the host and this worker's pinned GPUs do not change.
        self._host = platform_module.node()
        self._pinned = pinned_devices

    def test_data(self, item: pytest.Item, platform: str) -> dict[str, Any]:
        """What `item`'s entry needs of its measurements, as plain data (it travels on reports)."""
        stash = item.stash
        memory = stash.get(MEMORY_RESULT_KEY, None)
        if memory is None:
            stretch = stash.get(STRETCH_RESULT_KEY, None)
            if stretch is not None:
                memory = stretch.to_memory()  # type: ignore[attr-defined]
        return {
            "platform": platform,
            "dtype": _dtype_of(item),
            "memory": memory,
            "benchmark": stash.get(BENCHMARK_RESULT_KEY, None),
            "energy": stash.get(ENERGY_RESULT_KEY, None),
            "ranks": stash.get(RANKS_RESULT_KEY, None),
            "failure": stash.get(FAILURE_KEY, None),
            "worker": self.worker_id,
            "pinned_devices": self._pinned,
            "host": self._host,
        }

    def note_problem(self, message: str) -> None:
        """Record `message` for the terminal summary, and warn (never raising)."""
        self.problems.append(message)
        warn_report(f"pytest-hwbench: {message}")

    def open(self) -> None:
        """Open the report journal (in the process that writes the report)."""
        path = self.options.report_path
        if path is None or self.worker_id is not None:
            return
        from pytest_hwbench.hardware import host_inventory
        from pytest_hwbench.report.writer import ReportWriter, leftover_journals

        for journal in leftover_journals(path):
            self.problems.append(
                f"an earlier run left its journal {_display_path(journal)} (it did not finish); "
                f"to keep its tests: hwbench recover {_display_path(journal)} -o "
                f"{_display_path(path.with_name(path.stem + '-recovered' + path.suffix))}"
            )
        self._distributed = self.config.pluginmanager.has_plugin("dsession")
        # The inventory is taken at the end: reading device properties initializes CUDA, which
        # must not happen before tests that fork. Under xdist the controller never touches the
        # hardware at all: each worker sends its own inventory when it finishes.
        from pytest_hwbench.provenance import run_identity

        machine = {"hosts": {}} if self._distributed else host_inventory()
        self.writer = ReportWriter(path, machine, run_identity(self.config.rootpath))
        self._report_writer_errors(0)

    def _report_writer_errors(self, seen: int) -> None:
        writer = self.writer
        if writer is not None:
            for error in writer.errors[seen:]:
                self.note_problem(f"--hw-report: {error}")

    def add(self, report: pytest.TestReport) -> None:
        """Gather each test's phase reports into one entry once its teardown report arrives.

        The test's measurements come on its teardown report (xdist); `add_test` takes a test
        whose item is at hand.
        """
        when = report.when
        if when not in ("setup", "call", "teardown"):
            self._add_crashed(report)
            return
        nodeid = report.nodeid
        phases = self._phases.get(nodeid)
        if phases is None:
            phases = self._phases[nodeid] = {}
        phases[when] = report
        if when == "teardown":
            del self._phases[nodeid]
            self.add_test(nodeid, phases)

    def add_test(
        self,
        nodeid: str,
        phases: dict[str, pytest.TestReport],
        item: pytest.Item | None = None,
        platform: str | None = None,
    ) -> None:
        """Keep the entry of a test whose phase reports are all in (teardown's last).

        `item` (and its `platform`): the test itself, whose stash holds its measurements, in a
        run without xdist; without it, the measurements its teardown report carries (xdist).
        """
        outcome, skip_reason = final_outcome(phases)
        # Sub-100 ns digits of pytest's durations are noise, and bytes in every entry.
        duration_s = round(sum(r.duration for r in phases.values()), 7)
        if item is not None:
            stash = item.stash
            stretch: StretchResult | None = stash.get(STRETCH_RESULT_KEY, None)  # type: ignore[assignment]
            if (
                (stretch is None or stretch.long_form is None)
                and outcome not in ("failed", "error")
                and MEMORY_RESULT_KEY not in stash
                and BENCHMARK_RESULT_KEY not in stash
                and self.worker_id is None
                and self._pinned is None
                and _dtype_of(item) is None
                and RANKS_RESULT_KEY not in stash
            ):
                energy = stash.get(ENERGY_RESULT_KEY, None)
                self._keep_short(
                    nodeid, outcome, platform, duration_s, stretch, skip_reason, energy
                )
                return
            data = self.test_data(item, platform or "?")
        else:
            data = getattr(phases["teardown"], "hwbench", None) or {}
            energy = data.get("energy")
            if energy is not None and self.energy is not None:  # a worker's: count it here
                platform = data.get("platform") or "?"
                self.energy.keep(nodeid, platform, energy)
                if energy.get("limit_unchecked"):
                    unchecked = self.energy.unchecked_limits
                    unchecked[platform] = unchecked.get(platform, 0) + 1
                failure = data.get("failure") or {}
                if failure.get("kind") == "energy_limit":
                    self.energy.top_rows.over_limit.add(nodeid)
        memory = data.get("memory")
        entry: dict[str, Any] = {
            "nodeid": nodeid,
            "outcome": outcome,
            "platform": data.get("platform"),
            "device": (memory or {}).get("device", {}).get("device"),
            "duration_s": duration_s,
            "host": data.get("host"),
            "memory": memory,
        }
        if entry["device"] is None and entry["platform"] is not None:
            entry["device"] = entry["platform"]
        # Absent rather than null: most entries have none of these (a report of thousands).
        for key in ("dtype", "energy", "worker", "pinned_devices", "benchmark", "ranks"):
            if data.get(key) is not None:
                entry[key] = data[key]
        if skip_reason is not None:
            entry["skip_reason"] = skip_reason
        if outcome in ("failed", "error"):
            entry["failure"] = data.get("failure") or _exception_failure(phases)
        self._keep(entry)

    def _keep_short(
        self,
        nodeid: str,
        outcome: str,
        platform: str | None,
        duration_s: float,
        stretch: StretchResult | None,
        skip_reason: str | None,
        energy: dict[str, Any] | None = None,
    ) -> None:
        """Keep the entry of a test that passed or was skipped, measured short or not at all.

        Most entries of a big run are this one shape: it is encoded straight to its JSON text,
        exactly as `_keep` would write the same entry's dicts, without building them.
        """
        host = self._host
        where = "null" if platform is None else _json_string(platform)
        if stretch is None:
            memory = "null"
        else:
            growth = stretch.peak_delta_bytes
            memory = (
                f'{{"interval_s":{stretch.interval_s!r},"sampler":"thread","samples":2,'
                f'"duration_s":{stretch.duration_s!r},"series":{{"rss":{{'
                f'"start_bytes":{stretch.start_bytes},"end_bytes":{stretch.end_bytes},'
                f'"peak_bytes":{stretch.peak_bytes},"peak_delta_bytes":{growth},'
                f'"exact_peak":{"true" if stretch.exact_peak else "false"}}}}},'
                f'"warnings":[],"primary_series":"rss","timeline":null}}'
            )
            top_rows = self.top_rows
            if top_rows.would_keep(platform or "?", growth):
                top_rows.add(
                    SummaryRow(
                        platform or "?",
                        growth,
                        stretch.peak_bytes,
                        "rss",
                        stretch.exact_peak,
                        nodeid,
                    )
                )
        text = (
            f'{{"nodeid":{_json_string(nodeid)},"outcome":"{outcome}","platform":{where},'
            f'"device":{where},"duration_s":{duration_s!r},'
            f'"host":{"null" if host is None else _json_string(host)},"memory":{memory}'
            + ("" if energy is None else f',"energy":{finite_json(energy)}')
            + ("}" if skip_reason is None else f',"skip_reason":{_json_string(skip_reason)}}}')
        )
        if self._keep_entries:
            self.entries.append(json.loads(text))
        self._write_entry(text)

    def _add_crashed(self, report: pytest.TestReport) -> None:
        """An xdist worker died running this test: it gets an entry; the report is incomplete.

        The worker's measurements of the test died with it.
        """
        node = getattr(report, "node", None)
        worker = getattr(getattr(node, "gateway", None), "id", None)
        phases = self._phases.pop(report.nodeid, {})
        self._crashed = True
        entry: dict[str, Any] = {
            "nodeid": report.nodeid,
            "outcome": "crashed",
            "platform": None,
            "device": None,
            "duration_s": round(sum(r.duration for r in phases.values()), 7),
            "host": None,
            "memory": None,
            "failure": {"kind": "crash", "message": _first_lines(str(report.longrepr))},
        }
        if worker is not None:  # absent rather than null, as in every other entry
            entry["worker"] = worker
        self._keep(entry)

    def _keep(self, entry: dict[str, Any]) -> None:
        if self._keep_entries:
            self.entries.append(entry)
        memory = entry.get("memory")
        if memory:
            top_rows = self.top_rows
            stats: Mapping[str, Any] = primary_stats(entry) or {}
            measured_on = memory.get("platform") or entry["platform"] or "?"
            if top_rows.would_keep(measured_on, stats.get("peak_delta_bytes", 0)):
                top_rows.add(SummaryRow.of_entry(entry))
        failure = entry.get("failure")
        if failure is not None and failure.get("kind") == "memory_limit":
            self.top_rows.over_limit.add(entry["nodeid"])
        benchmark = entry.get("benchmark")
        if benchmark:  # workers' tests too, under xdist
            for warning in benchmark.get("warnings") or ():
                self.untimed[str(warning)] = self.untimed.get(str(warning), 0) + 1
            rates = throughput_text(entry)
            if rates is not None and len(self.throughput) < THROUGHPUT_ROWS:
                label = entry_label(entry["nodeid"], entry.get("device"))
                self.throughput.append((label, benchmark_median_s(entry), rates))
        self._write_entry(entry)

    def _write_entry(self, entry: Mapping[str, Any] | str) -> None:
        """Give the writer a test's entry (its dicts, or its JSON text); report what failed."""
        writer = self.writer
        if writer is not None:
            seen = len(writer.errors)
            if isinstance(entry, str):
                writer.add_encoded_test(entry)
            else:
                writer.add_test(entry)
            self._report_writer_errors(seen)

    def finish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the report, then compare with --hw-compare's base; never raises."""
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None and self.options.report_path is not None:
            workeroutput["hwbench_machine"] = self._inventory()
            workeroutput["hwbench_worker"] = self.worker_id
            workeroutput["hwbench_session"] = self._session_facts()
        if self.writer is not None:
            self._write_report(session, exitstatus)
        if self.options.compare_base is not None and self.worker_id is None:
            self._compare(session)

    def _session_facts(self) -> dict[str, Any]:
        try:
            facts = self.session_facts()
        except Exception as exc:  # as the inventory: never at the report's cost
            self.note_problem(f"the session's facts failed ({type(exc).__name__}: {exc})")
            facts = {}
        if self.deselected:
            facts["deselected"] = self.deselected
        return facts

    def _inventory(self) -> dict[str, Any]:
        try:
            return self.machine_inventory()
        except Exception as exc:  # a broken backend must not cost the report
            self.note_problem(f"the hardware inventory failed ({type(exc).__name__}: {exc})")
            return {}

    def _write_report(self, session: pytest.Session, exitstatus: int) -> None:
        writer = self.writer
        assert writer is not None
        if not self._distributed:
            writer.machine.update(self._inventory())
            writer.session.update(self._session_facts())
        writer.run["machine_label"] = self.options.machine_label or machine_label(writer.machine)
        if self._crashed:
            writer.errors.append("an xdist worker crashed: its test's measurements are lost")
        complete = exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.TESTS_FAILED,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ) and not (session.shouldstop or session.shouldfail)
        try:
            self._written = writer.finish(complete=complete)
        except OSError as exc:
            journal = writer.journal
            keep = (
                f"; its journal keeps the tests: hwbench recover {_display_path(journal)} -o "
                f"{_display_path(writer.path)}"
                if journal is not None and journal.exists()
                else "; the tests' results are lost"
            )
            self.note_problem(
                f"--hw-report: the report could not be written to {_display_path(writer.path)} "
                f"({type(exc).__name__}: {exc.strerror or exc}){keep}"
            )
            return
        if self._written is None:
            self.problems.append(
                f"hwbench report: no test ran, so {_display_path(writer.path)} was not written "
                "(an earlier report there is left as it was)"
            )

    def _compare(self, session: pytest.Session) -> None:
        from pytest_hwbench.report.compare import compare_reports

        try:
            self.comparison = compare_reports(
                self.options.compare_base,  # type: ignore[arg-type]
                {"tests": self.entries, "session": {"deselected": self.deselected}},
                self.options.compare_thresholds,
                base_name=str(self.options.compare_base_path),
                new_name="this run",
            )
        except Exception as exc:  # compare must never cost the run its summary
            self.note_problem(f"--hw-compare failed ({type(exc).__name__}: {exc})")
            return
        if self.comparison.failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def take_worker_inventory(self, node: Any) -> None:
        """Take the inventory a finished xdist worker sent (a crashed worker sends none)."""
        output = getattr(node, "workeroutput", None) or {}
        machine = output.get("hwbench_machine")
        if self.writer is not None and machine:
            worker = output.get("hwbench_worker") or "?"
            self.writer.add_machine(f"{machine.get('host')}/{worker}", machine)
            session = output.get("hwbench_session")
            if session:
                self.writer.session.setdefault("workers", {})[worker] = session

    def summarize(self, terminalreporter: Any) -> None:
        """The top tests by peak growth, where the report went, what went wrong, and compare.

        Each part on its own: one failing never hides the others or pytest's own summary.
        """
        for part in (self._summarize_tests, self._summarize_report, self._summarize_compare):
            try:
                part(terminalreporter)
            except Exception as exc:  # the pass/fail line must always follow
                terminalreporter.write_line(
                    f"hwbench: the summary failed ({type(exc).__name__}: {exc})"
                )

    def _summarize_tests(self, terminalreporter: Any) -> None:
        write_untimed_summary(terminalreporter, self.untimed)
        write_throughput_summary(terminalreporter, self.throughput, THROUGHPUT_ROWS)
        rows = self.top_rows.rows()
        write_peak_summary(terminalreporter, rows, self.options.summary, self.top_rows.over_limit)
        if self.energy is not None:
            from pytest_hwbench.plugin.energy import write_energy_summary
            from pytest_hwbench.plugin.options import is_xdist_controller

            write_energy_summary(
                terminalreporter,
                self.energy,
                self.options.summary,
                concurrent=is_xdist_controller(self.config),
            )

    def _summarize_report(self, terminalreporter: Any) -> None:
        if self._written is not None:
            incomplete = self.writer is not None and self.writer.errors
            terminalreporter.write_line(
                f"hwbench report: {_display_path(self._written)}"
                + (" (incomplete: see its errors)" if incomplete else "")
            )
        for problem in self.problems:
            prefixed = problem if problem.startswith("hwbench") else f"hwbench: {problem}"
            terminalreporter.write_line(prefixed)

    def _summarize_compare(self, terminalreporter: Any) -> None:
        if self.comparison is not None:
            terminalreporter.write_sep("-", "hwbench: comparison with --hw-compare")
            width = self.config.get_terminal_writer().fullwidth
            for line in self.comparison.format_table(width).rstrip("\n").splitlines():
                terminalreporter.write_line(line)


class _EntryHooks:
    """What both kinds of report hooks share: entries from logged reports, never raising."""

    def __init__(self, reporter: Reporter, platform_of: Callable[[pytest.Item], str]) -> None:
        self.reporter = reporter
        self.platform_of = platform_of

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """See `Reporter.add`; a failure of ours is reported, never raised into pytest."""
        try:
            self.reporter.add(report)
        except Exception as exc:
            self.reporter.note_problem(
                f"the report entry of {report.nodeid} failed ({type(exc).__name__}: {exc})"
            )


class ReportHooks(_EntryHooks):
    """Hooks that turn each test's phase reports into one entry, in a run without xdist.

    A test's entry is built from the item itself when its teardown report arrives (under xdist
    the data travels on the report instead: `DistributedReportHooks`).
    """

    def __init__(self, reporter: Reporter, platform_of: Callable[[pytest.Item], str]) -> None:
        super().__init__(reporter, platform_of)
        self._item: pytest.Item | None = None
        #: The running test's phase reports so far (its setup's, its call's).
        self._phases: dict[str, pytest.TestReport] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> None:
        """Note the test now running: its entry reads its stash at its teardown report.

        One plain call a test, where a report wrapper would run for each of its three phases.
        """
        self._item = item
        self._phases = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the running test's phase reports; at its teardown's, its entry (`add_test`).

        Without xdist one test runs at a time: its reports are kept here, not by node id. A
        failure of ours is reported, never raised into pytest.
        """
        try:
            when = report.when
            item = self._item
            if when in ("setup", "call") and item is not None:
                self._phases[when] = report
                return
            if when == "teardown" and item is not None:
                phases, self._phases = self._phases, {}
                phases["teardown"] = report
                nodeid = report.nodeid
                if item.nodeid == nodeid:
                    self.reporter.add_test(nodeid, phases, item, self.platform_of(item))
                    return
            self.reporter.add(report)  # a report of no test we saw start (a plugin's own)
        except Exception as exc:
            self.reporter.note_problem(
                f"the report entry of {report.nodeid} failed ({type(exc).__name__}: {exc})"
            )


class DistributedReportHooks(_EntryHooks):
    """The report hooks under xdist, where each test's data travels on its teardown report.

    A worker puts it there; the controller builds the entry from what arrives.
    """

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Put the test's measurements on its teardown report, so they travel with it."""
        report = yield
        if call.when == "teardown":
            data = self.reporter.test_data(item, self.platform_of(item))
            report.hwbench = data  # type: ignore[attr-defined]
        return report


def _display_path(path: Path) -> str:
    """`path` as a user would have given it: relative below the working directory, else absolute.

    Never a ``../..`` path: one given as /tmp/hw.json from a project directory stays that.
    """
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
