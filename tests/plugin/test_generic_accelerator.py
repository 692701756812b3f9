"""A suite marked ``hardware("npu", "cpu")`` on a machine with a (fake) Ascend NPU.

The fake does what torch_npu does (renames torch's PrivateUse1 type to "npu", registers
``torch.npu``, plugs its allocator into `torch.accelerator`); the rename lasts for the process,
so each run is a subprocess. Nothing of ours is installed for the NPU: the generic backend
measures it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

CONFTEST = """
import pytest
from pytest_hwbench.testing import fake_accelerator

_patch = pytest.MonkeyPatch()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    fake_accelerator(_patch, "npu", count=2, {options})
"""

SUITE = """
import pytest
import torch
from pytest_hwbench.testing import FakeAccelerator

MiB = 2**20


def spike(device, nbytes):
    # Memory taken and given back, as a temporary tensor would.
    if device.type == "cpu":
        block = torch.ones(nbytes, dtype=torch.uint8)
        del block
    else:
        fake = FakeAccelerator.installed("npu")
        fake.free(fake.allocate(device.index or 0, nbytes))


@pytest.mark.hardware("npu", "cpu")
def test_step(hw_device, memory_profile):
    spike(hw_device, 48 * MiB)


@pytest.mark.hardware("npu")
@pytest.mark.memory_limit(npu="32MiB")
def test_over_budget(hw_device):
    spike(hw_device, 64 * MiB)


@pytest.mark.hardware("npu", dtypes=("bfloat16", "float64"))
def test_dtypes(hw_device, hw_dtype):
    assert hw_device.type == "npu"
"""

MiB = 2**20


def _run(pytester: pytest.Pytester, options: str = "") -> tuple[pytest.RunResult, dict[str, Any]]:
    """The suite's run in a subprocess, and its report."""
    pytester.makeconftest(CONFTEST.format(options=options))
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--hw-report=hw.json", "-rs", "-p", "no:cacheprovider")
    report = json.loads((pytester.path / "hw.json").read_text())
    report["by_test"] = {entry["nodeid"].split("::")[1]: entry for entry in report["tests"]}
    return result, report


def test_npu_and_cpu_with_exact_peaks_a_limit_and_dtypes(pytester: pytest.Pytester) -> None:
    result, report = _run(pytester)
    entries = report["by_test"]
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*memory limit exceeded on npu: peak growth 64.0 MiB > limit 32.0 MiB*",
            "npu (top 2):",
            "*+64.0 MiB*allocated (exact)*test_over_budget[[]npu[]]*OVER LIMIT",
            "*+48.0 MiB*allocated (exact)*test_step[[]npu[]]",
            "SKIPPED * npu: float64 needs fp64, which npu:0 lacks",
        ]
    )
    step = entries["test_step[npu]"]
    assert step["memory"]["device"]["device"] == "npu:0"
    (npu,) = [b for b in report["machine"]["backends"] if b["name"] == "npu"]
    assert npu["device_count"] == 2
    assert npu["devices"][0]["properties"]["name"] == "Ascend910B3"
    assert report["machine"]["torch"]["accelerator"] == "npu"
    allocated = step["memory"]["series"]["allocated"]
    assert (allocated["peak_delta_bytes"], allocated["exact_peak"]) == (48 * MiB, True)
    assert entries["test_step[cpu]"]["memory"]["series"]["rss"]["exact_peak"] is True
    assert entries["test_dtypes[npu-bfloat16]"]["outcome"] == "passed"


def test_an_allocator_without_a_peak_reset_is_sampled_and_flagged(
    pytester: pytest.Pytester,
) -> None:
    result, report = _run(pytester, options="peak_reset=False")
    # A spike between two samples is not seen: the limit is not exceeded on what was seen.
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines(["*+0 B*allocated (sampled)*test_over_budget[[]npu[]]"])
    step = report["by_test"]["test_step[npu]"]
    assert step["memory"]["series"]["allocated"]["exact_peak"] is False
    warnings = step["memory"]["warnings"]
    assert any("reset_peak_memory_stats" in w and "sampled" in w for w in warnings), warnings


def test_hwbench_info_lists_the_npu(pytester: pytest.Pytester) -> None:
    script = pytester.makepyfile(
        info="""
        import pytest
        from pytest_hwbench.testing import fake_accelerator

        fake_accelerator(pytest.MonkeyPatch(), "npu", count=2)
        from pytest_hwbench.cli import main

        raise SystemExit(main(["info"]))
        """
    )
    result = pytester.run(sys.executable, str(script))
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(
        [
            "pytest-hwbench * torch * (npu accelerator) *",
            "npu    available, 2 devices",
            "*Huawei Ascend NPU via torch.accelerator*",
            "  [[]0[]] Ascend910B3",
            "      Huawei · 64.0 GiB",
            "      capabilities: bf16, device_memory_info, fp16, memory_stats, multi_device, "
            "peak_memory_reset, synchronize",
            "  [[]1[]] Ascend910B3",
        ]
    )


def test_an_allocator_without_statistics_is_measured_by_what_the_device_reports(
    pytester: pytest.Pytester,
) -> None:
    result, report = _run(pytester, options="allocator_stats=False")
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*+48.0 MiB*device_used (sampled)*test_step[[]npu[]]"])
    memory = report["by_test"]["test_step[npu]"]["memory"]
    assert list(memory["series"]) == ["device_used", "rss"]
    assert memory["primary_series"] == "device_used"
    assert memory["warnings"] == [
        "the npu allocator gives torch.accelerator no statistics: no allocated/reserved series"
    ]


def test_a_device_whose_reading_fails_is_measured_on_the_host(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_hwbench import hardware
    from pytest_hwbench.testing import fake_accelerator

    fake = fake_accelerator(monkeypatch, "hpu")  # a type torch knows: no rename, in-process
    hardware.get_hardware_backend("hpu").capabilities(0)  # probed while the device answers
    fake.memory_info = False  # then its runtime stops reporting free and total memory
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("hpu")
        @pytest.mark.memory_limit(hpu="1MiB")
        def test_step(hw_device, memory_profile):
            held = bytearray(64 * 2**20)  # the host grows: not what the hpu limit is about
            memory_profile.record_memory("here")
        """
    )
    result = pytester.runpytest("--hw-report=hw.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["cpu (top 1):", "*rss (exact)*test_step[[]hpu[]]"])
    (entry,) = json.loads((pytester.path / "hw.json").read_text())["tests"]
    assert entry["platform"] == "hpu"
    assert entry["memory"]["device"]["device"] == "cpu"
    assert entry["memory"]["warnings"] == [
        "hpu memory could not be measured (RuntimeError: hpu runtime does not report device "
        "memory info): measured on the host only",
        "memory limit on hpu not checked: its memory could not be read",
    ]


def test_a_privateuse1_name_nobody_registered_is_a_valid_marker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_hwbench.testing import fake_accelerator

    fake_accelerator(monkeypatch, "maia", count=2)  # torch knows the type: no rename
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("maia", "cpu")
        @pytest.mark.memory_limit(maia="1GiB")
        def test_step(hw_device):
            assert hw_device.type in ("maia", "cpu")
        """
    )
    result = pytester.runpytest("-v", "--hw-devices=maia,cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_step[[]maia[]] PASSED*", "*test_step[[]cpu[]] PASSED*"])


def test_a_device_that_stops_answering_mid_test_keeps_what_was_measured(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_hwbench.testing import fake_accelerator

    fake_accelerator(monkeypatch, "hpu")
    pytester.makepyfile(
        """
        import pytest
        from pytest_hwbench.testing import FakeAccelerator

        @pytest.mark.hardware("hpu")
        def test_step(hw_device, memory_profile):
            fake = FakeAccelerator.installed("hpu")
            fake.allocate(0, 8 * 2**20)
            memory_profile.record_memory("allocated")
            fake.memory_info = False  # the runtime stops reporting free and total memory
        """
    )
    result = pytester.runpytest("--hw-report=hw.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (entry,) = json.loads((pytester.path / "hw.json").read_text())["tests"]
    memory = entry["memory"]
    assert memory["device"]["device"] == "hpu:0"
    assert memory["series"]["allocated"]["peak_delta_bytes"] == 8 * 2**20
    assert memory["warnings"] == [
        "the last hpu memory reading failed (RuntimeError: hpu runtime does not report device "
        "memory info): the results end at the reading before"
    ]


def test_a_leak_check_on_an_unreadable_device_is_skipped_and_said(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_hwbench import hardware
    from pytest_hwbench.testing import fake_accelerator

    fake = fake_accelerator(monkeypatch, "hpu")
    hardware.get_hardware_backend("hpu").capabilities(0)
    fake.memory_info = False
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("hpu")
        @pytest.mark.memory_leak_limit("1MiB")
        def test_step(hw_device):
            pass
        """
    )
    result = pytester.runpytest("--junitxml=junit.xml", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="hw_leak_unchecked"' in junit
    assert "hpu runtime does not report device memory info" in junit
