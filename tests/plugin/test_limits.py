from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.hardware.cpu import clear_refs_writable

pytestmark = pytest.mark.skipif(
    not clear_refs_writable(),
    reason="limit tests rely on exact CPU peaks (Linux, writable /proc/self/clear_refs)",
)

MiB = 2**20

ALLOCATE = """
import mmap

def allocate(mib):
    # Fresh pages (an anonymous mapping): malloc may reuse heap memory that is resident already.
    data = mmap.mmap(-1, mib * 2**20)
    for i in range(0, len(data), 4096):
        data[i] = 1
    return data
"""


def test_exceeding_the_limit_is_a_failure_with_peak_limit_series_and_marks(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        ALLOCATE
        + """
import pytest

@pytest.mark.memory_limit("8MiB")
def test_too_big(memory_profile):
    memory_profile.record_memory("before")
    data = allocate(40)
    memory_profile.record_memory("after alloc")
    del data

@pytest.mark.memory_limit("200MiB")
def test_fits():
    allocate(16)
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*memory limit exceeded on cpu: peak growth 4?.? MiB > limit 8.0 MiB "
            "(@pytest.mark.memory_limit)",
            # The process's RSS sets the unit: past 1 GiB (a CUDA context, say) it is GiB.
            "*series 'rss': start * ?iB, peak * ?iB (exact)",
            "*mark 'before' at *s: +*",
            "*mark 'after alloc' at *s: +4?.? MiB",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_limit_without_the_fixture_profiles_the_test_itself(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ALLOCATE
        + """
import pytest

@pytest.mark.memory_limit("4MiB")
def test_too_big():
    allocate(32)
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*memory limit exceeded on cpu: peak growth*> limit 4.0 MiB*"])


def test_per_platform_limit_applies_to_the_test_platform(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ALLOCATE
        + """
import pytest

@pytest.mark.memory_limit(cuda="1MiB", cpu="300MiB")
def test_cpu_budget_is_generous():
    allocate(32)

@pytest.mark.memory_limit(cuda="1MiB")
def test_no_cpu_limit():
    allocate(32)
"""
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_ini_default_limit_and_marker_override(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhw_memory_limit = 4MiB\n")
    pytester.makepyfile(
        ALLOCATE
        + """
import pytest

def test_default_limit(memory_profile):
    allocate(32)

@pytest.mark.memory_limit("1GiB")
def test_overridden(memory_profile):
    allocate(32)

def test_not_profiled():
    allocate(32)
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*> limit 4.0 MiB (ini hw_memory_limit)*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('memory_limit("2 gigs")', "memory_limit: bad size '2 gigs'*512MB (10^6), 512MiB (2^20)*"),
        ('memory_limit(tpu="1GiB")', "memory_limit: unknown platform 'tpu'; registered platforms*"),
        ("memory_limit()", "memory_limit: give a size*"),
        ('memory_leak_limit("x")', "memory_leak_limit: bad size 'x'*"),
    ],
)
def test_bad_limit_is_a_collection_error(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_x():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*@pytest.mark.{message}"])


def test_leak_limit_fails_a_test_that_keeps_memory(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ALLOCATE
        + """
import pytest

KEEP = []

@pytest.mark.memory_leak_limit("4MiB")
def test_leaks():
    KEEP.append(allocate(32))

@pytest.mark.memory_leak_limit("4MiB")
def test_clean():
    data = allocate(32)
    del data
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*memory leak on cpu: 'rss' grew by 3?.? MiB over the test*tolerance 4.0 MiB*"]
    )


def test_leak_check_flag_applies_to_every_test(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhw_leak_tolerance = 8MiB\n")
    pytester.makepyfile(
        ALLOCATE
        + """
KEEP = []

def test_leaks():
    KEEP.append(allocate(32))
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
    result = pytester.runpytest("--hw-leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*tolerance 8.0 MiB*"])


@pytest.mark.usefixtures("cpu_only_machine")
def test_leak_check_leaves_absent_hardware_skipped(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("cuda")
        @pytest.mark.memory_leak_limit("1MiB")
        def test_gpu():
            pass
        """
    )
    result = pytester.runpytest("--hw-leak-check", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * cuda: torch was built without CUDA"])


def test_a_failed_entry_says_why_everywhere(
    pytester: pytest.Pytester,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
    tmp_path: Path,
) -> None:
    pytester.makepyfile(
        ALLOCATE
        + """
import pytest

KEEP = []

@pytest.mark.memory_limit("8MiB")
def test_over_limit(memory_profile):
    data = allocate(40)
    del data

@pytest.mark.memory_leak_limit("4MiB")
def test_leaks(memory_profile):
    KEEP.append(allocate(32))

def test_raises(memory_profile):
    raise ValueError("a plain failure")

def test_fine(memory_profile):
    pass
"""
    )
    result = pytester.runpytest(f"--hw-report={report_path}")
    result.assert_outcomes(passed=2, failed=2, errors=1)  # the leak errs at teardown
    result.stdout.fnmatch_lines(["*MiB*rss (exact)*::test_over_limit  OVER LIMIT"])
    report = load_valid_report(report_path)
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    over = tests["test_over_limit"]["failure"]
    assert (over["kind"], over["limit_bytes"], over["series"]) == ("memory_limit", 8 * MiB, "rss")
    assert over["message"].startswith("memory limit exceeded on cpu: peak growth ")
    assert "> limit 8.0 MiB (@pytest.mark.memory_limit)" in over["message"]
    leak = tests["test_leaks"]["failure"]
    assert (leak["kind"], leak["limit_bytes"]) == ("leak", 4 * MiB)
    raised = tests["test_raises"]["failure"]
    assert raised == {"kind": "exception", "message": "ValueError: a plain failure"}
    assert "failure" not in tests["test_fine"]

    # The page says why, and has the limit to draw; the export leaves failures out of history.
    from pytest_hwbench.cli import main

    page = tmp_path / "r.html"
    assert main(["html", str(report_path), "-o", str(page), "--no-charts"]) == 0
    text = page.read_text()
    assert "failed (memory limit)" in text
    assert "error (leak)" in text
    assert '"kind":"memory_limit"' in text  # the page's data: the script draws the limit
    assert f'"limit_bytes":{8 * MiB}' in text
    exported = tmp_path / "e.json"
    assert main(["export", str(report_path), "--format", "github-action-benchmark",
                 "-o", str(exported)]) == 0  # fmt: skip
    assert _exported_tests(exported) == {"test_fine"}
    assert main(["export", str(report_path), "--format", "github-action-benchmark",
                 "-o", str(exported), "--include-failed"]) == 0  # fmt: skip
    assert _exported_tests(exported) == set(tests)


def _exported_tests(path: Path) -> set[str]:
    return {figure["name"].split("::")[1].split(" ")[0] for figure in json.loads(path.read_text())}
