from __future__ import annotations

from pathlib import Path

import pytest

from pytest_hwbench.hardware.cpu import clear_refs_writable

linux_exact = pytest.mark.skipif(
    not clear_refs_writable(),
    reason="comparing peaks needs exact CPU peaks (Linux, writable /proc/self/clear_refs)",
)

SUITE = """
import mmap

def allocate(mib):
    # Fresh pages (an anonymous mapping): malloc may reuse heap memory that is resident already.
    data = mmap.mmap(-1, mib * 2**20)
    for i in range(0, len(data), 4096):
        data[i] = 1
    return data

def test_step(memory_profile):
    allocate({mib})

def test_other(memory_profile):
    pass
"""


@linux_exact
def test_in_session_compare_fails_the_run_on_a_crossed_threshold(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    base = tmp_path / "base.json"
    pytester.makepyfile(test_suite=SUITE.format(mib=8))
    pytester.runpytest(f"--hw-report={base}").assert_outcomes(passed=2)

    pytester.makepyfile(test_suite=SUITE.format(mib=48))
    result = pytester.runpytest(f"--hw-compare={base}", "--hw-compare-fail=peak:+16MiB")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*hwbench: comparison with --hw-compare*",
            "*2 compared, 0 new, 0 removed, 0 skipped; 1 crossed a threshold*",
            "*FAILED test_suite.py::test_step*peak growth*",
        ]
    )

    result = pytester.runpytest(f"--hw-compare={base}", "--hw-compare-fail=peak:+256MiB")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*2 compared*; no test crossed*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hw-compare-fail=peak:10%"], "*--hw-compare-fail needs --hw-compare=BASE.json*"),
        (["--hw-compare=missing.json"], "*--hw-compare: *missing.json: cannot read*"),
        (["--hw-compare={base}", "--hw-compare-fail=speed:10%"], "*--hw-compare-fail: *speed*"),
    ],
)
def test_bad_compare_input_is_a_usage_error_before_the_run(
    pytester: pytest.Pytester, tmp_path: Path, args: list[str], message: str
) -> None:
    base = tmp_path / "base.json"
    pytester.makepyfile("def test_a(): pass")
    pytester.runpytest(f"--hw-report={base}").assert_outcomes(passed=1)
    pytester.makepyfile("def test_a(): raise AssertionError('must not run')")
    result = pytester.runpytest(*(a.format(base=base) for a in args))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
