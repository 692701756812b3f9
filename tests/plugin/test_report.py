from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.hardware.cpu import clear_refs_writable
from pytest_hwbench.report import recover_partial

Loader = Callable[[Path], dict[str, Any]]
linux_exact = pytest.mark.skipif(
    not clear_refs_writable(),
    reason="exact CPU peaks need Linux with a writable /proc/self/clear_refs",
)

SUITE = """
import mmap

import pytest

def test_profiled(memory_profile):
    # An anonymous mapping gets fresh pages: malloc may hand back heap memory already resident.
    data = mmap.mmap(-1, 24 * 2**20)
    for i in range(0, len(data), 4096):
        data[i] = 1
    memory_profile.record_memory("allocated")
    del data
    memory_profile.record_memory("freed")

def test_plain():
    pass

@pytest.mark.hardware("cuda")
def test_gpu():
    pass

def test_fails(memory_profile):
    assert False
"""


@linux_exact
@pytest.mark.usefixtures("cpu_only_machine")
def test_report_has_one_entry_per_test_with_timelines(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest(f"--hw-report={report_path}", "--hw-interval=5ms")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    report = load_valid_report(report_path)
    assert report["schema"] == "pytest-hwbench/2"
    assert report["complete"] is True
    assert [b["name"] for b in report["machine"]["backends"]][:2] == ["cpu", "cuda"]
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    assert set(tests) == {"test_profiled", "test_plain", "test_gpu", "test_fails"}

    profiled = tests["test_profiled"]
    assert profiled["outcome"] == "passed"
    assert profiled["platform"] == "cpu"
    rss = profiled["memory"]["series"]["rss"]
    assert rss["exact_peak"] is True
    assert rss["peak_delta_bytes"] >= 24 * 2**20
    timeline = profiled["memory"]["timeline"]
    assert timeline["interval_s"] == pytest.approx(0.005)
    assert [m["label"] for m in timeline["marks"]] == ["allocated", "freed"]
    assert len(timeline["t"]) == len(timeline["series"]["rss"]) >= 4

    assert tests["test_plain"]["memory"] is None  # not profiled without the fixture
    assert tests["test_gpu"]["outcome"] == "skipped"
    assert tests["test_gpu"]["skip_reason"] == "cuda: torch was built without CUDA"
    assert tests["test_fails"]["outcome"] == "failed"
    assert tests["test_fails"]["memory"]["series"]["rss"]["end_bytes"] > 0
    assert tests["test_fails"]["failure"]["kind"] == "exception"
    leftovers = [p.name for p in report_path.parent.iterdir() if p.name != "hw.json"]
    assert leftovers == []
    result.stdout.fnmatch_lines(
        [
            "*hwbench: peak memory growth*",
            "cpu (top 2):",
            "*+2?.? MiB*rss (exact)*test_profiled",
            "hwbench report: *hw.json",
        ]
    )


def test_profile_all_measures_every_test(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass\n")
    pytester.runpytest(f"--hw-report={report_path}", "--hw-profile-all").assert_outcomes(passed=2)
    report = load_valid_report(report_path)
    assert all(t["memory"]["series"]["rss"]["peak_bytes"] > 0 for t in report["tests"])


def test_summary_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(memory_profile): pass")
    result = pytester.runpytest("--hw-summary=0")
    result.assert_outcomes(passed=1)
    assert "peak memory growth" not in result.stdout.str()


def test_peaks_reach_junit_xml_through_user_properties(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(memory_profile): pass")
    pytester.runpytest("--junitxml=junit.xml").assert_outcomes(passed=1)
    xml = (pytester.path / "junit.xml").read_text()
    assert '<property name="hw_peak_bytes:rss" value="' in xml
    assert '<property name="hw_peak_delta_bytes:rss" value="' in xml
    assert "timeline" not in xml


def test_interrupted_run_still_writes_finished_tests(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        """
        def test_first(memory_profile):
            pass

        def test_interrupt():
            raise KeyboardInterrupt

        def test_never():
            pass
        """
    )
    result = pytester.runpytest_subprocess(f"--hw-report={report_path}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    report = load_valid_report(report_path)
    assert report["complete"] is False
    assert [t["nodeid"].split("::")[1] for t in report["tests"]] == ["test_first"]


def test_hard_crash_leaves_a_recoverable_journal(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        """
        import os

        def test_first(memory_profile):
            pass

        def test_second():
            pass

        def test_crash():
            os._exit(137)  # as the OOM killer would end it
        """
    )
    result = pytester.runpytest_subprocess(f"--hw-report={report_path}")
    assert result.ret == 137
    assert not report_path.exists()
    (journal,) = report_path.parent.glob("hw.json.*.partial.jsonl")
    recovered = recover_partial(journal)
    assert recovered["complete"] is False
    assert [t["nodeid"].split("::")[1] for t in recovered["tests"]] == ["test_first", "test_second"]
    assert recovered["tests"][0]["memory"]["series"]["rss"]["peak_bytes"] > 0
    report_path.write_text(json.dumps(recovered))
    load_valid_report(report_path)
    report_path.unlink()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_hwbench",
            "recover",
            str(journal),
            "-o",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "recovered 2 tests" in proc.stdout
    assert load_valid_report(report_path)["tests"] == recovered["tests"]

    # The next run names the leftover journal and how to recover it, and leaves it alone.
    journal_before = journal.read_bytes()
    pytester.makepyfile("def test_again():\n    pass\n")
    again = pytester.runpytest_subprocess(f"--hw-report={report_path}")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(
        [f"hwbench: an earlier run left its journal *{journal.name} (it did not finish); "
         f"to keep its tests: hwbench recover *{journal.name} -o *hw-recovered.json"]
    )  # fmt: skip
    assert journal.read_bytes() == journal_before
    assert [t["nodeid"] for t in load_valid_report(report_path)["tests"]] == [
        "test_hard_crash_leaves_a_recoverable_journal.py::test_again"
    ]


def test_the_report_path_is_shown_as_given_never_as_a_dotdot_path(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytester.makepyfile("def test_one():\n    pass\n")
    outside = tmp_path_factory.mktemp("elsewhere") / "hw.json"
    result = pytester.runpytest(f"--hw-report={outside}")
    result.stdout.fnmatch_lines([f"hwbench report: {outside}"])
    assert "../" not in result.stdout.str()
    inside = pytester.runpytest("--hw-report=out/hw.json")
    inside.stdout.fnmatch_lines(["hwbench report: out/hw.json"])


@pytest.mark.skipif(shutil.which("git") is None, reason="git makes the repository")
def test_the_report_says_which_commit_ci_job_and_machine_it_ran_at(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2026-11-30T10:00:00+0100")
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "first"]):
        subprocess.run([*git, *args], cwd=pytester.path, check=True, capture_output=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=pytester.path, check=True, capture_output=True, text=True
    ).stdout.strip()
    for name in ("CI", "GITHUB_ACTIONS"):  # this suite's own CI must not answer
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("CI_PIPELINE_ID", "991")
    result = pytester.runpytest(f"--hw-report={report_path}", "--hw-machine-label=  A100   runner ")
    result.assert_outcomes(passed=1)
    run = load_valid_report(report_path)["run"]
    assert run["git"] == {
        "commit": head, "branch": "main", "committed": "2026-11-30T09:00:00+00:00"
    }  # fmt: skip
    assert run["ci"] == {"service": "gitlab-ci", "run_id": "991"}
    assert run["machine_label"] == "A100 runner"  # spaces as one
    # Without the option, the label comes from the machine: its CPU here.
    pytester.runpytest(f"--hw-report={report_path}").assert_outcomes(passed=1)
    assert load_valid_report(report_path)["run"]["machine_label"]


@pytest.mark.parametrize(
    ("value", "message"),
    [("   ", "give a label, e.g."), ("x" * 81, "at most 80 characters (got 81)")],
)
def test_a_bad_machine_label_is_a_usage_error(
    pytester: pytest.Pytester, value: str, message: str
) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest(f"--hw-machine-label={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--hw-machine-label*{message}*"])
