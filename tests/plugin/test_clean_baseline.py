"""A test's numbers without the tests before it: warm-up, freed heap, scopes, the process peak."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.hardware.cpu import clear_refs_writable
from pytest_hwbench.metrics.memory import _host

Loader = Callable[[Path], dict[str, Any]]
linux_exact = pytest.mark.skipif(
    not clear_refs_writable(),
    reason="exact CPU peaks need Linux with a writable /proc/self/clear_refs",
)

#: A big test, then a smaller one whose blocks come from the same heap: alone, the small one
#: grows by its size; after the big one, without a trim, glibc hands it the big one's freed and
#: still resident blocks, and it reads +0 B.
HEAP_SUITE = """
import ctypes

_KEPT = []


def test_a_big(memory_profile):
    # Freeing a mapped 16 MiB block raises glibc's mmap threshold to 16 MiB, so the 512 KiB
    # blocks below come from the heap; small blocks kept past the test (a cache) sit between
    # them, so the heap cannot shrink when they are freed: 32 MiB of holes stay resident.
    ctypes.create_string_buffer(16 * 2**20)
    blocks = []
    for _ in range(64):
        blocks.append(ctypes.create_string_buffer(512 * 1024))
        _KEPT.append(ctypes.create_string_buffer(4096))
    del blocks


def test_b_small(memory_profile):
    # 8 MiB, from the heap (below the raised threshold): alone, fresh pages; after test_a_big,
    # its holes, resident already unless they were given back.
    blocks = [ctypes.create_string_buffer(512 * 1024) for _ in range(16)]
    del blocks
"""


def _growth(report: dict[str, Any], name: str) -> int:
    (entry,) = [t for t in report["tests"] if t["nodeid"].endswith(name)]
    return int(entry["memory"]["series"]["rss"]["peak_delta_bytes"])


@linux_exact
@pytest.mark.skipif(_host.heap_trimmer() is None, reason="needs glibc's malloc_trim")
def test_a_small_test_after_a_big_one_grows_as_it_does_alone(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(HEAP_SUITE)
    pytester.runpytest_subprocess(f"--hw-report={report_path}", "-k", "b_small").assert_outcomes(
        passed=1
    )
    alone = _growth(load_valid_report(report_path), "test_b_small")
    pytester.runpytest_subprocess(f"--hw-report={report_path}").assert_outcomes(passed=2)
    after_big = _growth(load_valid_report(report_path), "test_b_small")
    assert alone >= 7 * 2**20
    assert abs(after_big - alone) <= max(0.05 * alone, 2 * 2**20), (alone, after_big)


@linux_exact
def test_without_a_trim_the_entry_says_why_the_growth_can_read_low(
    pytester: pytest.Pytester,
    report_path: Path,
    load_valid_report: Loader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_host, "heap_trimmer", lambda: None)
    pytester.makepyfile(HEAP_SUITE)
    pytester.runpytest(f"--hw-report={report_path}").assert_outcomes(passed=2)
    for entry in load_valid_report(report_path)["tests"]:
        assert _host.NO_TRIM_REASON in entry["memory"]["warnings"]


def test_the_warm_up_runs_once_per_platform_and_its_cost_is_in_the_report(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        """
        import torch

        def test_one(memory_profile):
            pass

        def test_two(memory_profile):
            pass

        def test_three():
            pass
        """
    )
    pytester.runpytest(f"--hw-report={report_path}").assert_outcomes(passed=3)
    session = load_valid_report(report_path)["session"]
    warmup = session["warmup"]
    assert set(warmup) == {"cpu"}
    assert warmup["cpu"].get("optimizer_step") is True, warmup
    assert warmup["cpu"]["seconds"] > 0
    assert "rss" in warmup["cpu"]["retained_bytes"]
    assert "error" not in warmup["cpu"]


def test_profile_all_warms_up_without_the_optimizer_until_a_test_asks(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        """
        import torch

        def test_implicit():
            pass
        """
    )
    pytester.runpytest("--hw-profile-all", f"--hw-report={report_path}").assert_outcomes(passed=1)
    warmup = load_valid_report(report_path)["session"]["warmup"]
    assert warmup["cpu"]["optimizer_step"] is False


def test_warmup_off_and_a_suite_without_torch_warm_nothing(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile("def test_one(memory_profile):\n    pass\n")
    pytester.runpytest(f"--hw-report={report_path}", "--hw-warmup=off").assert_outcomes(passed=1)
    assert "warmup" not in load_valid_report(report_path)["session"]


def test_a_run_whose_tests_never_import_torch_is_not_warmed_up(
    pytester: pytest.Pytester, report_path: Path
) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_one(memory_profile):
            pass

        def test_last():
            print("torch loaded:", "torch" in sys.modules)
        """
    )
    result = pytester.runpytest_subprocess(f"--hw-report={report_path}", "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*torch loaded: False*"])
    assert '"warmup"' not in report_path.read_text()


#: Three tests of 48, 16 and 32 MiB: the first is the process's peak.
PEAK_SUITE = """
import mmap

def _touch(mib):
    data = mmap.mmap(-1, mib * 2**20)
    for i in range(0, len(data), 4096):
        data[i] = 1
    data.close()

def test_a():
    _touch(48)

def test_b():
    _touch(16)

def test_c():
    _touch(32)
"""


#: Runs argv[1:] as GNU time does and prints what wait4 says of its peak RSS. A child's
#: ru_maxrss starts from its parent's size at fork: this small parent keeps that floor low.
WAIT4 = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _max_rss_of(command: list[str], cwd: Path) -> int:
    """What a parent sees of a command's peak RSS (wait4's ru_maxrss, as GNU time shows it)."""
    done = subprocess.run(
        [sys.executable, "-c", WAIT4, *command], cwd=cwd, capture_output=True, text=True
    )
    status, max_rss = done.stdout.split()[-2:]
    assert status == "0", done.stderr
    return int(max_rss)


@linux_exact
def test_the_process_peak_survives_the_resets_and_is_at_least_every_tests_peak(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(PEAK_SUITE)
    pytester.runpytest_subprocess("--hw-profile-all", f"--hw-report={report_path}")
    report = load_valid_report(report_path)
    peak = report["session"]["process_peak_rss_bytes"]
    assert report["session"]["rss_reset"] == "on"
    assert all(peak >= t["memory"]["series"]["rss"]["peak_bytes"] for t in report["tests"])
    # The first test's peak stood highest; the later resets lowered VmHWM, not this figure.
    first_peak = report["tests"][0]["memory"]["series"]["rss"]["peak_bytes"]
    assert peak >= first_peak >= report["tests"][1]["memory"]["series"]["rss"]["peak_bytes"]


@linux_exact
def test_rss_reset_off_keeps_what_outside_tools_see_and_flags_inexact_peaks(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(PEAK_SUITE)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--hw-profile-all"]
    with_resets = _max_rss_of([*command, f"--hw-report={report_path}"], pytester.path)
    session_on = load_valid_report(report_path)["session"]
    without = _max_rss_of(
        [*command, f"--hw-report={report_path}", "--hw-rss-reset=off"], pytester.path
    )
    report = load_valid_report(report_path)
    assert report["session"]["rss_reset"] == "off"
    # Outside, a reset run reads lower than its true peak; the report's figure does not.
    assert session_on["process_peak_rss_bytes"] >= with_resets
    assert abs(report["session"]["process_peak_rss_bytes"] - without) <= 0.02 * without
    exact = {t["nodeid"].split("::")[1]: t["memory"]["series"]["rss"]["exact_peak"] for t in
             report["tests"]}  # fmt: skip
    # test_a set the process's peak: exact; test_b stayed below it: its peak is only sampled.
    assert exact["test_a"] is True
    assert exact["test_b"] is False


@linux_exact
def test_a_memory_limit_is_checked_on_the_measured_block(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        """
        import mmap
        import pytest

        def _touch(mib):
            data = mmap.mmap(-1, mib * 2**20)
            for i in range(0, len(data), 4096):
                data[i] = 1
            return data

        @pytest.mark.memory_limit(cpu="16MiB")
        def test_first_call_is_dearer(memory_profile):
            cache = _touch(40)  # a one-time cost, kept: the step's first call
            with memory_profile.measure("step"):
                _touch(8).close()

        @pytest.mark.memory_limit(cpu="4MiB")
        def test_step_over(memory_profile):
            with memory_profile.measure("step"):
                _touch(12).close()
        """
    )
    result = pytester.runpytest(f"--hw-report={report_path}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*memory limit exceeded on cpu in measure('step'): peak growth*"])
    tests = {t["nodeid"].split("::")[1]: t for t in load_valid_report(report_path)["tests"]}
    first = tests["test_first_call_is_dearer"]["memory"]
    assert first["primary_scope"] == "step"
    (scope,) = first["scopes"]
    assert 7 * 2**20 <= scope["series"]["rss"]["peak_delta_bytes"] <= 12 * 2**20
    assert first["series"]["rss"]["peak_delta_bytes"] >= 40 * 2**20  # the whole test's own


glibc_heap = pytest.mark.skipif(_host.heap_in_use_reader() is None, reason=_host.NO_HEAP_REASON)


@glibc_heap
@pytest.mark.parametrize("how", ["memory_profile", "--hw-profile-all"])
def test_hw_heap_samples_what_malloc_handed_out_beside_rss(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader, how: str
) -> None:
    fixture = "memory_profile" if how == "memory_profile" else ""
    pytester.makepyfile(
        f"""
        import ctypes
        import time

        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]

        def test_untouched({fixture}):
            block = libc.malloc(64 * 2**20)  # handed out, never touched: heap, not RSS
            time.sleep(0.05)  # sampled: the heap series has no high-water mark
            libc.free(block)

        def test_nothing({fixture}):
            pass
        """
    )
    extra = ["--hw-profile-all"] if how == "--hw-profile-all" else []
    result = pytester.runpytest_subprocess("--hw-heap", f"--hw-report={report_path}", *extra)
    result.assert_outcomes(passed=2)
    tests = {t["nodeid"].split("::")[1]: t for t in load_valid_report(report_path)["tests"]}
    series = tests["test_untouched"]["memory"]["series"]
    assert series["heap"]["peak_delta_bytes"] >= 64 * 2**20
    assert series["rss"]["peak_delta_bytes"] < 16 * 2**20
    assert tests["test_untouched"]["memory"]["primary_series"] == "rss"
    assert "heap" in tests["test_nothing"]["memory"]["series"]


def test_hw_heap_without_mallinfo2_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_host, "heap_in_use_reader", lambda: None)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--hw-heap")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-hwbench: --hw-heap: {_host.NO_HEAP_REASON}*"])
