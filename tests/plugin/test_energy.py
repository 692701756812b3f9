"""Energy in real pytest sessions: --hw-energy, energy_profile, energy_limit, reports, compare.

The CPU's counters are a `FakePowercap` tree (RAPL's files, units and wrap-around) that the
inner tests advance by the joules their "work" used; GPUs are `fake_cuda`'s NVML, whose energy
counter integrates its power in the real update steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.report.compare import compare_reports
from pytest_hwbench.report.export import github_action_benchmark
from pytest_hwbench.testing import FakeCudaDevice, FakePowercap, fake_cuda, fake_rocm

#: The inner tests' helper: advance the fake counters as if the test's work used `joules`.
BURN = """
import os
import time
from pytest_hwbench.testing import FakePowercap

def burn(joules, dram=0.0):
    fake = FakePowercap.attach(os.environ["HW_FAKE_POWERCAP"])
    fake.add_joules("package-0", joules)
    if dram:
        fake.add_joules("dram-0", dram)
    time.sleep(0.003)  # longer than RAPL's 1 ms update: the figure is the counter's
"""


@pytest.fixture
def powercap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePowercap:
    """A fake RAPL tree (one package and its DRAM) that the CPU backend reads."""
    fake = FakePowercap(tmp_path / "powercap", start_uj=5_000_000).install(monkeypatch)
    monkeypatch.setenv("HW_FAKE_POWERCAP", str(fake.root))
    return fake


def _entries(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["nodeid"].rpartition("::")[2]: entry for entry in report["tests"]}


def test_hw_energy_gives_every_test_its_joules_per_domain(
    pytester: pytest.Pytester,
    powercap: FakePowercap,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    pytester.makepyfile(
        BURN
        + """
def test_heavy():
    burn(3.5, dram=0.25)

def test_light():
    burn(0.125)

def test_idle():
    pass
"""
    )
    result = pytester.runpytest("--hw-energy", f"--hw-report={report_path}", "--junitxml=j.xml")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*hwbench: energy (device-wide counters)*",
            "cpu: 3.88 J over 3 tests (top 3):",
            "*3.75 J  in *exact  *::test_heavy",
            "*125 mJ  in *exact  *::test_light",
            "*0 J  in *  *::test_idle",
        ]
    )
    report = load_valid_report(report_path)
    tests = _entries(report)
    heavy = tests["test_heavy"]["energy"]
    assert heavy["total_joules"] == pytest.approx(3.75)
    assert heavy["exact"] is True
    assert heavy["domains"]["package-0"]["joules"] == pytest.approx(3.5)
    assert heavy["domains"]["dram-0"]["joules"] == pytest.approx(0.25)
    assert heavy["domains"]["package-0"]["method"] == "counter"
    assert heavy["duration_s"] > 0
    assert heavy["domains"]["package-0"]["mean_watts"] == pytest.approx(
        3.5 / heavy["duration_s"], rel=1e-3
    )
    assert tests["test_light"]["energy"]["total_joules"] == pytest.approx(0.125)
    idle = tests["test_idle"]["energy"]
    assert idle["total_joules"] == 0
    # An empty test ends within RAPL's 1 ms update: its 0 J is a counter that may not have
    # moved yet, and the entry says it is no measurement.
    if idle["duration_s"] < 0.001:
        assert idle["exact"] is False
        assert idle["domains"]["package-0"]["method"] == (
            "counter, window shorter than its update period"
        )
    # What each domain covers is said once, in the session section.
    domains = report["session"]["energy"]["cpu"]["domains"]
    assert set(domains) == {"package-0", "dram-0"}
    assert "every process" in domains["package-0"]["covers"]
    assert domains["package-0"]["update_period_s"] == 0.001
    # junitxml gets each test's joules, as it gets peaks.
    junit = (pytester.path / "j.xml").read_text()
    assert 'name="hw_energy_joules" value="3.75"' in junit
    assert 'name="hw_energy_joules:dram-0" value="0.25"' in junit


def test_hw_energy_without_a_counter_says_why_in_every_entry_and_never_fails(
    pytester: pytest.Pytester,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    from pytest_hwbench.hardware import _rapl

    empty = tmp_path / "no-rapl"
    empty.mkdir()
    monkeypatch.setattr(_rapl, "POWERCAP_ROOT", str(empty))  # a VM without RAPL zones
    pytester.makepyfile(
        """
import pytest

def test_a():
    pass

@pytest.mark.energy_limit("1mJ")
def test_limited():
    pass

def test_fixture(energy_profile):
    assert not energy_profile.available
    energy_profile.stop()
    assert energy_profile.get_metrics()["total_joules"] is None
"""
    )
    result = pytester.runpytest("--hw-energy", f"--hw-report={report_path}", "-W", "error")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*hwbench: energy*",
            "cpu: no energy figure for 3 tests (1 energy limit not checked): no RAPL energy "
            "counters under *",
        ]
    )
    report = load_valid_report(report_path)
    for entry in report["tests"]:
        assert entry["energy"]["total_joules"] is None
        assert "no RAPL energy counters" in entry["energy"]["unavailable"]
    assert _entries(report)["test_limited"]["energy"]["limit_unchecked"] is True
    assert "no RAPL" in report["session"]["energy"]["cpu"]["unavailable"]
    assert report["complete"] is True


def test_energy_limit_fails_the_test_over_budget_with_its_domains(
    pytester: pytest.Pytester,
    powercap: FakePowercap,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    pytester.makepyfile(
        BURN
        + """
import pytest

@pytest.mark.energy_limit("2J")
def test_over():
    burn(2.5, dram=0.5)

@pytest.mark.energy_limit(5)
def test_under():
    burn(4.0)

@pytest.mark.energy_limit(cpu="100mJ", cuda="1kJ")
def test_per_platform():
    burn(0.2)
"""
    )
    # No --hw-energy: the limits alone measure their tests.
    result = pytester.runpytest(f"--hw-report={report_path}")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*energy limit exceeded on cpu: 3.00 J > limit 2.00 J (@pytest.mark.energy_limit)*",
            "  package-0: 2.50 J, * W on average (counter)",
            "  dram-0: 500 mJ, * W on average (counter)",
            "*other processes on the device count too*",
            "*energy limit exceeded on cpu: 200 mJ > limit 100 mJ*",
        ]
    )
    result.stdout.fnmatch_lines(["*3.00 J  in *exact  *::test_over  OVER LIMIT"])
    tests = _entries(load_valid_report(report_path))
    assert tests["test_over"]["failure"]["kind"] == "energy_limit"
    assert tests["test_over"]["failure"]["limit_joules"] == 2.0
    assert tests["test_under"]["outcome"] == "passed"
    assert tests["test_under"]["energy"]["total_joules"] == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("energy_limit()", "give an energy, e.g. (40)"),
        ("energy_limit('5 joules')", "bad energy '5 joules': expected joules as a number"),
        ("energy_limit(-1)", "bad energy -1: must be 0 or more"),
        ("energy_limit('1MJ')", "write megajoules in kJ"),
        ("energy_limit(1, 2)", "takes one energy for every platform, got 2"),
        ("energy_limit(gpu='1J')", "unknown platform 'gpu'; registered platforms: cpu, cuda"),
    ],
)
def test_a_bad_energy_limit_is_a_collection_error_naming_the_valid_forms(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(f"import pytest\n\n@pytest.mark.{marker}\ndef test_a():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*@pytest.mark.energy_limit: *{message}*"])


def test_energy_profile_measures_from_its_setup_and_a_limit_is_judged_at_the_call(
    pytester: pytest.Pytester,
    powercap: FakePowercap,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    pytester.makepyfile(
        BURN
        + """
import pytest

@pytest.fixture
def teardown_burns():
    yield
    burn(100.0)  # after the call: outside a limited test's window

def test_reads_its_own(energy_profile):
    assert energy_profile.available and energy_profile.running
    burn(1.5)
    energy_profile.stop()
    assert energy_profile.get_metrics()["domains"]["package-0"]["joules"] == 1.5

@pytest.mark.energy_limit("1J")
def test_limited(teardown_burns, energy_profile):
    burn(0.5)
"""
    )
    result = pytester.runpytest(f"--hw-report={report_path}")
    result.assert_outcomes(passed=2)  # a limit failing at teardown would be an error
    tests = _entries(load_valid_report(report_path))
    assert tests["test_reads_its_own"]["energy"]["total_joules"] == pytest.approx(1.5)
    assert tests["test_limited"]["energy"]["total_joules"] == pytest.approx(0.5)


def test_a_memory_limit_failing_inside_still_ends_the_energy_window(
    pytester: pytest.Pytester,
    powercap: FakePowercap,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    pytester.makepyfile(
        BURN
        + """
import mmap
import pytest

@pytest.mark.memory_limit("1MiB")
def test_big():
    data = mmap.mmap(-1, 16 * 2**20)
    for i in range(0, len(data), 4096):
        data[i] = 1
    burn(2.0)
"""
    )
    result = pytester.runpytest("--hw-energy", f"--hw-report={report_path}")
    result.assert_outcomes(failed=1)
    (entry,) = load_valid_report(report_path)["tests"]
    assert entry["failure"]["kind"] == "memory_limit"
    assert entry["energy"]["total_joules"] == pytest.approx(2.0)


def test_a_counter_failing_mid_run_costs_no_test_its_outcome(
    pytester: pytest.Pytester, powercap: FakePowercap, report_path: Path
) -> None:
    pytester.makepyfile(
        """
import os
from pathlib import Path

def test_breaks_the_counter():
    # What a reader sees of an attribute gone bad (a driver in trouble): no number.
    (Path(os.environ["HW_FAKE_POWERCAP"]) / "intel-rapl:0" / "energy_uj").write_text("")

def test_after():
    pass
"""
    )
    result = pytester.runpytest("--hw-energy", f"--hw-report={report_path}", "-W", "error")
    result.assert_outcomes(passed=2)
    for entry in json.loads(report_path.read_text())["tests"]:
        assert entry["outcome"] == "passed"
        assert entry["energy"]["total_joules"] is None
        assert "reading failed (ValueError(" in entry["energy"]["unavailable"]


def test_compare_fails_on_energy_and_export_charts_it(
    pytester: pytest.Pytester, powercap: FakePowercap, tmp_path: Path
) -> None:
    test_file = BURN + "\ndef test_step():\n    burn({joules})\n\ndef test_same():\n    burn(1.0)\n"
    pytester.makepyfile(test_energy_plugin=test_file.format(joules=2.0))
    base = tmp_path / "base.json"
    pytester.runpytest("--hw-energy", f"--hw-report={base}").assert_outcomes(passed=2)
    pytester.makepyfile(test_energy_plugin=test_file.format(joules=2.5))
    result = pytester.runpytest(
        "--hw-energy", f"--hw-compare={base}", "--hw-compare-fail=energy:+10%,+100mJ"
    )
    result.stdout.fnmatch_lines(
        [
            "*energy base*energy new*energy change*",
            "*FAILED *::test_step (cpu): energy 2.00 J -> 2.50 J: +25.0%",
            "      and +500 mJ > +10% and +100 mJ (energy:+10%,+100 mJ)",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads(base.read_text())
    same = compare_reports(report, report, ())
    assert all(change.energy_measured and not change.failed for change in same.changes)
    exported = {item["name"]: item for item in github_action_benchmark(report)}
    step = exported["test_energy_plugin.py::test_step (cpu) - energy"]
    assert step["unit"] == "J"
    assert step["value"] == pytest.approx(2.0)
    assert step["extra"].startswith("measured over ")


def test_a_gpu_test_shorter_than_the_counter_update_is_estimated_from_power(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    board = FakeCudaDevice.nvidia((9, 0), power_mw=300_000, energy_update_period_s=0.1)
    fake_cuda(monkeypatch, devices=[board])
    pytester.makepyfile(
        """
import time
import pytest

@pytest.mark.hardware("cuda")
def test_short():
    time.sleep(0.005)

@pytest.mark.hardware("cuda")
def test_long():
    time.sleep(0.45)
"""
    )
    result = pytester.runpytest("--hw-energy", f"--hw-report={report_path}")
    result.assert_outcomes(passed=2)
    report = load_valid_report(report_path)
    tests = _entries(report)
    short = tests["test_short"]["energy"]
    assert short["exact"] is False
    assert short["domains"]["gpu"]["method"] == "power x duration"
    assert short["total_joules"] == pytest.approx(300 * short["duration_s"], rel=1e-4)
    long = tests["test_long"]["energy"]
    assert long["exact"] is True
    assert long["domains"]["gpu"]["method"] == "counter"
    # The counter moves in 0.1 s steps: the window's joules are whole steps of 30 J.
    assert long["total_joules"] in (pytest.approx(120.0, abs=0.01), pytest.approx(150.0, abs=0.01))
    assert report["session"]["energy"]["cuda"]["domains"]["gpu"]["update_period_s"] == 0.1
    # The sampler read the board's power through the long test: a timeline, its peak, and the
    # readings integrated beside the counter's whole steps.
    gpu = long["domains"]["gpu"]
    assert gpu["peak_watts"] == 300.0
    assert gpu["power_joules"] == pytest.approx(300 * long["duration_s"], rel=1e-3)
    power = long["power"]
    assert len(power["t"]) >= 6  # every 50 ms over 0.45 s, give or take a late tick
    assert set(power["watts"]["gpu"]) == {300.0}
    assert "power" not in short  # ended within one sampling interval


def test_under_xdist_each_worker_measures_and_the_controller_sums_up(
    pytester: pytest.Pytester,
    powercap: FakePowercap,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is part of the test extra")
    # Workers are processes of their own: they find the fake tree through the environment.
    pytester.makeconftest(
        """
import os
from pytest_hwbench.hardware import _rapl

_rapl.POWERCAP_ROOT = os.environ["HW_FAKE_POWERCAP"]
"""
    )
    pytester.makepyfile(
        BURN
        + """
import pytest

@pytest.mark.parametrize("i", range(4))
def test_step(i):
    burn(1.0)

@pytest.mark.energy_limit("1J")
def test_over():
    burn(3.0)
"""
    )
    result = pytester.runpytest("-n", "2", "--hw-energy", f"--hw-report={report_path}")
    result.assert_outcomes(passed=4, failed=1)
    # Workers share the package: a test's figure holds what the other ran meanwhile too.
    result.stdout.fnmatch_lines(
        [
            "*hwbench: energy*",
            "tests ran side by side (xdist): each figure holds what the other workers ran on *",
            "cpu: * over 5 tests (top 5):",
        ]
    )
    result.stdout.fnmatch_lines(["*::test_over  OVER LIMIT"])
    report = load_valid_report(report_path)
    assert all(entry["energy"]["total_joules"] >= 1.0 for entry in report["tests"])
    workers = report["session"]["workers"].values()
    assert [set(w["energy"]["cpu"]["domains"]) for w in workers] == [{"package-0", "dram-0"}] * 2


def test_hw_benchmark_under_hw_energy_gives_joules_per_call_and_flop_per_joule(
    pytester: pytest.Pytester,
    powercap: FakePowercap,
    report_path: Path,
    tmp_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("pytest_benchmark")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # else it disables itself
    pytester.makepyfile(
        """
import os
from pytest_hwbench.testing import FakePowercap

FAKE = FakePowercap.attach(os.environ["HW_FAKE_POWERCAP"])

def step():
    FAKE.add_joules("package-0", 0.02)  # what one call of the "kernel" uses
    FAKE.add_joules("dram-0", 0.005)

def test_step(hw_benchmark):
    hw_benchmark.pedantic(step, rounds=3, flops=1e9)
"""
    )
    bench_json = tmp_path / "bench.json"
    result = pytester.runpytest(
        "--hw-energy", f"--hw-report={report_path}", f"--benchmark-json={bench_json}"
    )
    result.assert_outcomes(passed=1)
    (entry,) = load_valid_report(report_path)["tests"]
    energy = entry["benchmark"]["energy"]
    assert energy["joules_per_call"] == pytest.approx(0.025)
    assert energy["domains"] == {"package-0": pytest.approx(0.02), "dram-0": pytest.approx(0.005)}
    assert energy["flops_per_joule"] == pytest.approx(1e9 / 0.025)
    assert energy["exact"] is True
    assert energy["window_s"] >= 0.1  # at least ENERGY_WINDOW_MIN_S of calls back to back
    assert energy["calls"] >= 2
    assert energy["mean_watts"] == pytest.approx(
        energy["calls"] * 0.025 / energy["window_s"], rel=1e-3
    )
    result.stdout.fnmatch_lines(
        [
            "*hwbench: benchmark throughput*",
            "*FLOP/s, 25.0 mJ/call, 40.0 GFLOP/J  *::test_step (cpu)",
        ]
    )
    extra = json.loads(bench_json.read_text())["benchmarks"][0]["extra_info"]
    assert extra["energy"]["joules_per_call"] == pytest.approx(0.025)
    assert extra["flops_per_joule"] == pytest.approx(4e10)
    # The test's own window holds the timed rounds and the energy calls too.
    assert entry["energy"]["total_joules"] >= energy["calls"] * 0.025


def test_hw_benchmark_without_a_counter_says_why_in_extra_info(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytest_benchmark")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # else it disables itself
    from pytest_hwbench.hardware import _rapl

    monkeypatch.setattr(_rapl, "POWERCAP_ROOT", str(tmp_path / "absent"))
    pytester.makepyfile("def test_step(hw_benchmark):\n    hw_benchmark(lambda: None)\n")
    bench_json = tmp_path / "bench.json"
    result = pytester.runpytest("--hw-energy", f"--benchmark-json={bench_json}")
    result.assert_outcomes(passed=1)
    extra = json.loads(bench_json.read_text())["benchmarks"][0]["extra_info"]
    assert "no RAPL energy counters" in extra["energy"]["unavailable"]


def test_an_amd_gpu_test_is_measured_through_amd_smi(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    cuda = fake_rocm(monkeypatch, amdsmi=True)
    cuda.amdsmi.set_power_w(cuda.gpus[0], 400)
    pytester.makepyfile(
        """
import time
import pytest

@pytest.mark.hardware("rocm")
def test_kernel():
    time.sleep(0.2)  # long enough for the sampler's power ticks (every 50 ms)
"""
    )
    result = pytester.runpytest("--hw-energy", f"--hw-report={report_path}")
    result.assert_outcomes(passed=1)
    report = load_valid_report(report_path)
    (entry,) = report["tests"]
    gpu = entry["energy"]["domains"]["gpu"]
    assert gpu["method"] == "counter"
    assert gpu["mean_watts"] == pytest.approx(400, rel=0.05)  # within one 1 ms refresh
    assert gpu["peak_watts"] == 400.0
    covers = report["session"]["energy"]["rocm"]["domains"]["gpu"]["covers"]
    assert covers.endswith("the whole board, every process on it")
