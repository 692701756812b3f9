"""Faults injected into real runs: measuring and reporting never stop a run, change an outcome,
or destroy what was measured before (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.report import recover_partial

Loader = Callable[[Path], dict[str, Any]]

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/fd to find the journal's fd"
)

#: A conftest that makes the disk "fill up" for our files from the FULL_AFTER-th finished test on:
#: os.write and os.posix_fallocate (the journal's lines, or its reserved room) and os.replace (the
#: report) raise ENOSPC as the kernel would. The journal reserves room a page at a time here, so
#: the full disk stops it mid-run rather than after its first 4 MiB.
FULL_DISK_CONFTEST = """
import errno
import os

from pytest_hwbench.report import writer

_finished = [0]
_real_write, _real_replace = os.write, os.replace
_real_fallocate = getattr(os, "posix_fallocate", None)
FULL_AFTER = int(os.environ.get("FULL_AFTER", "0"))
FAIL_REPLACE = os.environ.get("FAIL_REPLACE") == "1"


def _ours(fd):
    try:
        return ".partial.jsonl" in os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False


def _write(fd, data):
    if FULL_AFTER and _finished[0] >= FULL_AFTER and _ours(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    return _real_write(fd, data)


def _fallocate(fd, offset, length):
    if FULL_AFTER and _finished[0] >= FULL_AFTER and _ours(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    return _real_fallocate(fd, offset, length)


def _replace(src, dst, *args, **kwargs):
    if FAIL_REPLACE and str(dst).endswith("hw.json"):
        raise OSError(errno.ENOSPC, "No space left on device")
    return _real_replace(src, dst, *args, **kwargs)


os.write, os.replace = _write, _replace
if _real_fallocate is not None:
    os.posix_fallocate = _fallocate
writer._MappedJournal.RESERVE_BYTES = 4096


def pytest_runtest_teardown(item):
    _finished[0] += 1
"""

MANY_TESTS = """
import pytest

@pytest.mark.parametrize("i", range(40))
def test_many(i, memory_profile):
    memory_profile.record_memory(f"step {i}")
"""


def _journals(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.partial.jsonl"))


# -- turning the report on never stops the suite ---------------------------------------------------


def test_a_label_that_is_not_a_str_fails_its_test_only(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        """
        def test_bytes_label(memory_profile):
            memory_profile.record_memory(b"x")

        def test_nan_label(memory_profile):
            memory_profile.record_memory(float("nan"))

        def test_fine(memory_profile):
            memory_profile.record_memory("fine")
        """
    )
    result = pytester.runpytest_subprocess(f"--hw-report={report_path}")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        ["*TypeError: record_memory() takes a str label (or none), got bytes b'x'"]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    report = load_valid_report(report_path)
    assert report["complete"] is True
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in report["tests"]}
    assert outcomes == {
        "test_bytes_label": "failed",
        "test_nan_label": "failed",
        "test_fine": "passed",
    }


@linux_only
def test_a_full_disk_mid_run_runs_every_test_and_says_what_was_lost(
    pytester: pytest.Pytester,
    report_path: Path,
    load_valid_report: Loader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makeconftest(FULL_DISK_CONFTEST)
    pytester.makepyfile(MANY_TESTS)
    monkeypatch.setenv("FULL_AFTER", "14")
    result = pytester.runpytest_subprocess(f"--hw-report={report_path}")
    result.assert_outcomes(passed=40)  # before: INTERNALERROR after 14 of 40
    result.stdout.fnmatch_lines(
        ["*hwbench: --hw-report: journaling stopped*OSError: No space left on device*"]
    )
    report = load_valid_report(report_path)
    assert len(report["tests"]) == 40  # kept in memory, written at the end
    assert report["complete"] is False
    assert any("No space left on device" in error for error in report["errors"])
    assert _journals(report_path.parent) == []


@linux_only
def test_a_full_disk_at_the_final_write_keeps_the_journal_and_the_old_report(
    pytester: pytest.Pytester, report_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report_path.parent.mkdir(parents=True)
    report_path.write_text("the previous run's report")
    pytester.makeconftest(FULL_DISK_CONFTEST)
    pytester.makepyfile(MANY_TESTS)
    monkeypatch.setenv("FAIL_REPLACE", "1")
    result = pytester.runpytest_subprocess(f"--hw-report={report_path}")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=40)  # pytest's own line is printed
    result.stdout.fnmatch_lines(
        [
            "*hwbench: --hw-report: the report could not be written to *hw.json*No space left "
            "on device*; its journal keeps the tests: hwbench recover *.partial.jsonl -o *hw.json"
        ]
    )
    assert report_path.read_text() == "the previous run's report"
    (journal,) = _journals(report_path.parent)
    assert len(recover_partial(journal)["tests"]) == 40


@linux_only
def test_a_test_that_closes_the_journals_descriptor_loses_nothing(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        """
        import os

        def test_first(memory_profile):
            pass

        def test_closes_descriptors_it_did_not_open():
            for fd in map(int, os.listdir("/proc/self/fd")):
                try:
                    if ".partial.jsonl" in os.readlink(f"/proc/self/fd/{fd}"):
                        os.close(fd)
                except OSError:
                    pass

        def test_reuses_the_number(tmp_path):
            # The lowest free number is the journal's old one: our lines must not land here.
            path = tmp_path / "mine.txt"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT)
            os.write(fd, b"only mine")
            os.close(fd)
            assert path.read_bytes() == b"only mine"

        def test_after(memory_profile):
            pass
        """
    )
    result = pytester.runpytest_subprocess(f"--hw-report={report_path}")
    result.assert_outcomes(passed=4)
    report = load_valid_report(report_path)
    assert [t["nodeid"].split("::")[1] for t in report["tests"]] == [
        "test_first",
        "test_closes_descriptors_it_did_not_open",
        "test_reuses_the_number",
        "test_after",
    ]
    assert report["complete"] is True


def test_a_test_that_deletes_the_report_directory_loses_nothing(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        f"""
        import shutil

        def test_first(memory_profile):
            pass

        def test_deletes_the_directory():
            shutil.rmtree({str(report_path.parent)!r})

        def test_after(memory_profile):
            pass
        """
    )
    result = pytester.runpytest_subprocess(f"--hw-report={report_path}")
    result.assert_outcomes(passed=3)
    assert len(load_valid_report(report_path)["tests"]) == 3


# -- nothing measured before is destroyed ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_report_path_that_is_not_a_regular_file_is_refused_before_any_test(
    pytester: pytest.Pytester, kind: str
) -> None:
    if kind == "fifo":
        path = pytester.path / "pipe"
        os.mkfifo(path)
    else:
        path = Path("/dev/null")
        if not path.exists():
            pytest.skip("no /dev/null on this system")
    pytester.makepyfile("def test_never():\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest_subprocess(f"--hw-report={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--hw-report={path}: is not a regular file*"])
    assert not path.is_file()  # still the FIFO, still the device


@pytest.mark.parametrize("flag", ["--collect-only", "--fixtures"])
def test_a_run_that_ran_no_test_keeps_the_last_report(
    pytester: pytest.Pytester, load_valid_report: Loader, flag: str
) -> None:
    pytester.makeini("[pytest]\nhw_report = hw.json\n")
    pytester.makepyfile("def test_one(memory_profile):\n    pass\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    report = pytester.path / "hw.json"
    before = report.read_bytes()
    result = pytester.runpytest_subprocess(flag)
    assert result.ret == pytest.ExitCode.OK
    assert report.read_bytes() == before
    assert load_valid_report(report)["tests"][0]["nodeid"].endswith("test_one")
    assert _journals(pytester.path) == []


def test_two_runs_sharing_a_report_path_keep_their_own_journals(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    slow = pytester.makepyfile(
        slow="""
        import time
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_slow(i):
            time.sleep(0.3)
        """
    )
    fast = pytester.makepyfile(fast="def test_fast():\n    pass\n")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    long_run = subprocess.Popen(
        [*command, str(slow), f"--hw-report={report_path}"], cwd=pytester.path
    )
    deadline = time.monotonic() + 30
    while not _journals(report_path.parent) and time.monotonic() < deadline:
        time.sleep(0.05)
    (journal,) = _journals(report_path.parent)
    quick = subprocess.run(
        [*command, str(fast), f"--hw-report={report_path}"], cwd=pytester.path, check=False
    )
    assert quick.returncode == 0
    assert journal.exists()  # the quick run finished first and left the other's journal alone
    assert long_run.wait(timeout=60) == 0
    tests = load_valid_report(report_path)["tests"]
    assert len(tests) == 6  # the run that finished last wrote the report
    assert _journals(report_path.parent) == []


# -- the end of the session degrades, never crashes ------------------------------------------------


def test_a_compare_base_with_nan_is_refused_at_start(pytester: pytest.Pytester) -> None:
    base = pytester.path / "base.json"
    base.write_text(
        '{"schema": "pytest-hwbench/1", "created": "x", "pytest_hwbench": "0", "complete": true,'
        ' "machine": {}, "tests": [{"nodeid": "t", "outcome": "passed", "platform": null,'
        ' "device": null, "duration_s": NaN, "memory": null}]}'
    )
    pytester.makepyfile("def test_never():\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest_subprocess(f"--hw-compare={base}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hw-compare: *base.json: not JSON (NaN is not a number*"])


# -- bad markers and ini values are named where they are given -------------------------------------


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('hardware("cpu", requires=None)', "requires must be a capability name or a sequence*"),
        ('memory_limit(cpu="1GiB", CPU="1MiB")', "unknown platform 'CPU'; registered platforms*"),
    ],
)
def test_bad_marker_arguments_are_collection_errors_naming_the_marker(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(f"import pytest\n\n@pytest.mark.{marker}\ndef test_x():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    name = marker.split("(")[0]
    result.stdout.fnmatch_lines([f"*test_x: @pytest.mark.{name}: {message}"])
    assert "Traceback" not in result.stdout.str()


def test_two_marks_of_one_kind_on_a_function_are_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.memory_limit("1GiB")
        @pytest.mark.memory_limit("2GiB")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.memory_limit: given twice on test_x; give one*"])


def test_an_ini_value_pytest_cannot_read_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhw_profile_all = maybe\nhw_devices = gpu\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-hwbench: ini hw_devices=gpu: unknown platform gpu*"])
    pytester.makeini("[pytest]\nhw_profile_all = maybe\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-hwbench: ini hw_profile_all: *maybe*"])


def test_a_report_directory_that_cannot_be_entered_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = pytester.path / "locked"
    real_stat = os.stat

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path).startswith(str(locked)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)  # root enters any directory: simulate a user's view
    result = pytester.runpytest(f"--hw-report={locked}/hw.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hw-report=*locked/hw.json: cannot reach *Permission denied*"])


def test_a_long_report_name_gets_a_journal_the_file_system_takes(
    pytester: pytest.Pytester, load_valid_report: Loader
) -> None:
    report = pytester.path / ("r" * 245 + ".json")
    pytester.makepyfile("def test_one(memory_profile):\n    pass\n")
    result = pytester.runpytest_subprocess(f"--hw-report={report}")
    result.assert_outcomes(passed=1)
    assert len(load_valid_report(report)["tests"]) == 1


# -- tools -----------------------------------------------------------------------------------------


def test_node_ids_that_are_not_utf8_round_trip_through_every_tool(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader, tmp_path: Path
) -> None:
    if sys.platform == "darwin":
        pytest.skip("macOS file systems refuse names that are not UTF-8")
    directory = os.fsencode(pytester.path) + b"/caf\xe9"
    os.mkdir(directory)
    with open(directory + b"/test_name.py", "w") as fh:
        fh.write("def test_x(memory_profile):\n    pass\n")
    # pytest prints the id's bytes as they are: read its output as bytes, not pytester's text.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--hw-report={report_path}"],
        cwd=pytester.path,
        capture_output=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert b"1 passed" in run.stdout
    (entry,) = load_valid_report(report_path)["tests"]
    assert os.fsencode(entry["nodeid"]) == b"caf\xe9/test_name.py::test_x"
    hwbench = [sys.executable, "-m", "pytest_hwbench"]
    for extra in (
        ["html", str(report_path), "-o", str(tmp_path / "r.html"), "--no-charts"],
        ["trace", str(report_path), "-o", str(tmp_path / "t.json")],
        ["export", str(report_path), "--format", "github-action-benchmark"],
        ["compare", str(report_path), str(report_path)],
    ):
        proc = subprocess.run([*hwbench, *extra], capture_output=True, check=False)
        assert proc.returncode == 0, (extra, proc.stderr)
    assert b"caf\xe9/test_name.py" in (tmp_path / "r.html").read_bytes()
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]


def test_recover_keeps_every_readable_line_and_counts_the_rest(tmp_path: Path) -> None:
    journal = tmp_path / "hw.json.1-2.partial.jsonl"
    header = {"schema": "pytest-hwbench/1", "created": "x", "pytest_hwbench": "0",
              "complete": False}  # fmt: skip
    test = {"nodeid": "t", "outcome": "passed", "platform": "cpu", "device": "cpu",
            "duration_s": 0.1, "memory": None}  # fmt: skip
    lines = [json.dumps({"header": header})]  # no machine: a header from an older journal
    for i in range(5):
        lines.append(json.dumps({"test": {**test, "nodeid": f"t{i}"}}))
        if i == 2:
            lines.append('{"test": {"nodeid": "cut sho')  # a damaged line in the middle
    lines.append(json.dumps({"test": {**test, "outcome": "maybe"}}))  # not a valid entry
    journal.write_text("\n".join(lines) + "\n")
    report = recover_partial(journal)
    assert [t["nodeid"] for t in report["tests"]] == [f"t{i}" for i in range(5)]
    assert report["machine"] == {}
    assert report["errors"] == [f"recovered from {journal.name}: 2 unreadable line(s) skipped"]


@pytest.mark.parametrize("length", [180, 200, 215, 245])
def test_a_long_report_names_journal_is_found_as_a_leftover(tmp_path: Path, length: int) -> None:
    from pytest_hwbench.report.writer import journal_path, leftover_journals

    report = tmp_path / ("r" * (length - 5) + ".json")
    journal = journal_path(report, "999999999-20260101T000000-abcd")  # no such process
    journal.write_text("{}\n")
    assert len(journal.name) <= 255
    assert leftover_journals(report) == [journal]
