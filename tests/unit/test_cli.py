from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pytest_hwbench.cli import main


@pytest.mark.usefixtures("cpu_only_machine")
def test_info_lists_every_builtin_with_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cpu    available, 1 device" in out
    assert "cuda   unavailable: torch was built without CUDA" in out
    for name in ("rocm", "mps", "xpu"):
        assert f"\n{name:<6} unavailable: " in out
    assert "capabilities: " in out


@pytest.mark.usefixtures("cpu_only_machine")
def test_info_json_is_the_inventory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    inventory = json.loads(capsys.readouterr().out)
    by_name = {b["name"]: b for b in inventory["backends"]}
    assert set(by_name) == {"cpu", "cuda", "rocm", "mps", "xpu", "xla"}
    assert by_name["cpu"]["devices"][0]["properties"]["total_memory_bytes"] > 0
    assert by_name["cuda"]["available"] is False
    assert by_name["cuda"]["reason"]


def test_module_entry_point_runs_info() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_hwbench", "info"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cpu    available" in proc.stdout


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main([])
    assert excinfo.value.code == 2
    assert "COMMAND" in capsys.readouterr().err
