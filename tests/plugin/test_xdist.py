from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("xdist", reason="pytest-xdist is part of the test extra")


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
