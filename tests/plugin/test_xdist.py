from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("xdist", reason="pytest-xdist is part of the test extra")


@pytest.mark.usefixtures("cpu_only_machine")
def test_controller_writes_one_report_with_every_worker_test(
    pytester: pytest.Pytester,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            if not hasattr(session.config, "workerinput"):
                # The controller measures nothing: it must never have imported torch.
                assert "torch" not in sys.modules, "controller imported torch"
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(8))
        def test_profiled(i, memory_profile):
            memory_profile.record_memory(f"step {i}")

        @pytest.mark.hardware("cuda")
        def test_gpu():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", f"--hw-report={report_path}")
    result.assert_outcomes(passed=8, skipped=1)
    report = load_valid_report(report_path)
    assert report["complete"] is True
    assert len(report["tests"]) == 9
    workers = {t["worker"] for t in report["tests"]}
    assert workers == {"gw0", "gw1"}
    hosts = report["machine"]["hosts"]
    assert sorted(key.split("/")[1] for key in hosts) == ["gw0", "gw1"]
    assert all(inv["backends"][0]["name"] == "cpu" for inv in hosts.values())
    profiled = [t for t in report["tests"] if t["memory"] is not None]
    assert len(profiled) == 8
    assert all(len(t["memory"]["timeline"]["marks"]) == 1 for t in profiled)
    result.stdout.fnmatch_lines(["cpu (top 8):"])


PIN_SUITE = """
import json
import os
import pytest

@pytest.mark.parametrize("i", range(6))
def test_record_visible_devices(i, tmp_path_factory):
    out = tmp_path_factory.getbasetemp().parent.parent / "seen"
    out.mkdir(exist_ok=True)
    worker = os.environ["PYTEST_XDIST_WORKER"]
    (out / f"{worker}-{i}").write_text(os.environ["CUDA_VISIBLE_DEVICES"])
"""


def _seen(pytester: pytest.Pytester) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for path in pytester.path.rglob("seen/gw*"):
        seen.setdefault(path.name.split("-")[0], set()).add(path.read_text())
    return seen


def test_each_worker_gets_its_own_gpus(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    pytester.makepyfile(PIN_SUITE)
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "--hw-gpus-per-worker=2",
        f"--hw-report={report_path}",
        f"--basetemp={pytester.path / 'tmp'}",
    )
    result.assert_outcomes(passed=6)
    assert _seen(pytester) == {"gw0": {"4,5"}, "gw1": {"6,7"}}
    pinned = {t["worker"]: t["pinned_devices"] for t in load_valid_report(report_path)["tests"]}
    assert pinned == {"gw0": "CUDA_VISIBLE_DEVICES=4,5", "gw1": "CUDA_VISIBLE_DEVICES=6,7"}


def test_more_workers_than_gpus_is_a_usage_error_unless_shared(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    pytester.makepyfile(PIN_SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "--hw-gpus-per-worker=2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--hw-gpus-per-worker=2 with 2 workers needs 4 GPUs, but 3 are visible*--hw-gpus-share*"]
    )
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "--hw-gpus-per-worker=2",
        "--hw-gpus-share",
        f"--basetemp={pytester.path / 'tmp'}",
    )
    result.assert_outcomes(passed=6)
    assert _seen(pytester) == {"gw0": {"0,1"}, "gw1": {"2,0"}}


def test_crashed_worker_loses_no_other_test(
    pytester: pytest.Pytester,
    report_path: Path,
    load_valid_report: Callable[[Path], dict[str, Any]],
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_fine(i, memory_profile):
            pass

        def test_crash():
            os._exit(1)
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", f"--hw-report={report_path}")
    result.assert_outcomes(passed=6, failed=1)
    tests = {t["nodeid"].split("::")[1]: t for t in load_valid_report(report_path)["tests"]}
    assert {n for n, t in tests.items() if t["outcome"] == "passed"} == {
        f"test_fine[{i}]" for i in range(6)
    }
    assert all(tests[f"test_fine[{i}]"]["memory"] is not None for i in range(6))
    # The crashed test has an entry that says so, and the report does not claim to be whole.
    crashed = tests["test_crash"]
    assert crashed["outcome"] == "crashed"
    assert crashed["worker"] in ("gw0", "gw1")
    assert crashed["failure"]["kind"] == "crash"
    assert f"worker '{crashed['worker']}' crashed while running" in crashed["failure"]["message"]
    report = load_valid_report(report_path)
    assert report["complete"] is False
    assert any("worker crashed" in error for error in report["errors"])


def test_a_crashed_workers_replacement_takes_over_its_gpus(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    seen = pytester.mkdir("seen")
    monkeypatch.setenv("SEEN_DIR", str(seen))
    pytester.makeconftest(
        """
        import os

        def pytest_runtest_setup(item):
            # gw1 dies in its first test, once: its replacement then runs the rest.
            marker = os.path.join(os.environ["SEEN_DIR"], "crashed")
            if os.environ["PYTEST_XDIST_WORKER"] == "gw1" and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
        """
    )
    pytester.makepyfile(
        """
        import os
        import time
        import pytest

        @pytest.mark.parametrize("i", range(12))
        def test_record(i):
            # Long enough that gw0 is still busy when the replacement has started, on a busy
            # machine too (at 0.1 s gw0 sometimes finished every test first).
            time.sleep(0.3)
            worker = os.environ["PYTEST_XDIST_WORKER"]
            with open(os.path.join(os.environ["SEEN_DIR"], f"{worker}-{i}"), "w") as fh:
                fh.write(os.environ["CUDA_VISIBLE_DEVICES"])
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "--hw-gpus-per-worker=1")
    result.assert_outcomes(passed=11, failed=1)  # the test gw1 died in
    by_worker: dict[str, set[str]] = {}
    for path in seen.glob("gw*"):
        by_worker.setdefault(path.name.split("-")[0], set()).add(path.read_text())
    # gw1 held GPU 1 when it died: its replacement gw2 took GPU 1, not gw0's GPU 0.
    assert by_worker == {"gw0": {"0"}, "gw2": {"1"}}


def test_a_device_named_twice_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,0,0")
    pytester.makepyfile("def test_never():\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest_subprocess("-n", "2", "--hw-gpus-per-worker=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*CUDA_VISIBLE_DEVICES=0,0,0 names 0 more than once*"])
